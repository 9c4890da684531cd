"""The run store: one small committed JSON file per training run, so that training accumulates.

A run is identified by its **training key**: the sha256 of its task, method, seed, config and a hash of the
code on the training path (:func:`closure_digest` of :data:`hwlib.study.codes.TRAINING_PATH`: every hwlib function,
class and value that the task's training reaches). Its file (``results/runs/<name>.<key[:12]>.json``) holds what the
notebooks read of it, so that a report can be rebuilt without its weights::

    {"format": 1, "task": "detector" | "keypoint", "method": "detector" | "heatmap" | "regression" | "integral",
     "name": "02_seed_exact_s0", "seed": 0, "config": {...}, "world_size": 1, "code": "<training code hash>",
     "training_key": "<sha256>",
     "machine": {"cpu", "cpu_kind", "threads", "torch", ...}, "device": "cpu" | "cuda: <GPU>", "precision": "bf16",
     "train_seconds": 596.0, "train_images": 12800, "steps": 1600, "finished": "2026-12-05T22:00:00Z",
     "history": {...},                        # hwlib.vision.train.History, per-step lists thinned to <= HISTORY_POINTS
     "evaluations": {"<evaluation key>": {"spec": {...}, "metrics": {...}, "predictions": {name: packed array},
                                          "machine": {...}, "precision": "bf16"}}}

An **evaluation key** is the sha256 of an evaluation's spec (its kind, split, images, decoding) and a hash of the
evaluation code (:data:`hwlib.study.codes.EVAL_PATH`): a stored run whose evaluation key is stale is evaluated again from its
local checkpoint, or retrained where there is none.

Where the store is for a profile: :attr:`hwlib.config.Profile.store` (``results/runs/`` for ``cpu`` and ``paper``,
committed; ``runs/smoke/store/`` for ``smoke``, never committed).

Errors: a file that is truncated or not JSON, written by a newer format, missing a field, hand-edited so that its
content no longer gives its training key, or two files with one training key and different results: each a
:class:`StoreError` naming the file(s).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import datetime
import functools
import hashlib
import importlib
import inspect
import json
import re
import sys
import textwrap
import zlib
from pathlib import Path, PurePath

import numpy as np
import torch

from hwlib.config import STORE_DIR, ZOO_DIR, ZOO_MANIFEST
from hwlib.io import atomic_write_text, to_jsonable

FORMAT = 1
HISTORY_POINTS = 256       # per-step loss points kept in a stored history (evaluations are all kept)

# The training and evaluation paths (the roots whose code closure is hashed) are named in
# hwlib.study.codes (TRAINING_PATH, EVAL_PATH), which hashes them with closure_digest and passes the hash in.
# Config fields added after the store's first format are left out of the training key while they hold the value
# that reproduces the code before them (so adding an option does not orphan every stored run): {field: value}.
KEY_NEUTRAL: dict = {"ignore_iou": 0.0, "regression_output": "sigmoid", "regression_fp32_head": False,
                     "regression_norm": False}
REQUIRED = ("format", "task", "method", "name", "seed", "config", "code", "training_key", "history", "evaluations")


class StoreError(ValueError):
    """A store file that cannot be used as it is: the message names the file and what is wrong."""


# ----------------------------------------------------------------------------- keys
def _normalized_source(src) -> str:
    """The parsed code of ``src`` (text, or a parsed tree) without docstrings (:func:`_dump`): comments, docstrings
    and layout do not count."""
    tree = ast.parse(src) if isinstance(src, str) else src
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return _dump(tree)


def _dump(node) -> str:
    """A parsed tree as text, the same on every Python version that parses it alike: each node's class and its
    named fields, leaving out the empty ones (``None``, ``[]``), which Python releases add or drop (3.12's
    ``type_params=[]``; 3.13 omits empty fields from ``ast.dump``); line numbers are not fields, so not here."""
    if isinstance(node, ast.AST):
        fields = ((f, getattr(node, f, None)) for f in node._fields)
        return type(node).__name__ + "(" + ",".join(f"{f}={_dump(v)}" for f, v in fields
                                                     if v is not None and v != []) + ")"
    if isinstance(node, list):
        return "[" + ",".join(_dump(x) for x in node) + "]"
    return repr(node)


def _source_of(obj, namespace: dict | None = None, package: str = "hwlib", ambiguous=frozenset()) -> str:
    """Normalized source of a function or class, decorators included (``@torch.no_grad()`` changes what runs);
    of a config dataclass (:func:`_is_config_class`) only its methods: its fields are in the training key by value.

    With ``namespace`` (the globals ``obj`` reads), the source is also made **location-free**
    (:class:`_Unlocate`): ``mod.name`` of an imported ``package`` module reads as ``@name``, and the module a
    function-level ``from .x import name`` names is dropped; so a function moved to another module, or a module
    renamed, hashes as before. Names in ``ambiguous`` (two different objects of the closure go by them) keep their
    module. Without ``namespace``, the source as written (the store's first key scheme)."""
    src = textwrap.dedent(inspect.getsource(obj))
    tree = ast.parse(src)
    if _is_config_class(obj, located=namespace is None):
        tree.body = [n for n in tree.body[0].body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if namespace is not None:
        tree = _Unlocate(_namespace_with_local_imports(tree, namespace, package, obj.__module__), package,
                         ambiguous, _local_names(tree)).visit(tree)
    return _normalized_source(tree)


class _Unlocate(ast.NodeTransformer):
    """Takes out of a parsed function or class where the package's code lives: ``mod.attr`` of a package module
    ``mod`` becomes ``attr`` (``@attr``, a name no Python code can spell, where the code also has a local ``attr``,
    which the bare name would then read as); a function-level ``from <package module> import a, b`` keeps its names but not its module (and drops the names
    that are modules); ``import <package module>`` goes. What the names then mean is hashed where they resolve
    (:func:`code_closure` follows them), so nothing that runs is lost. A name in ``ambiguous`` (two different
    objects of the closure have it) is left as written, module and all: there, where it lives is what it is."""

    def __init__(self, namespace: dict, package: str, ambiguous=frozenset(), local=frozenset()):
        self.ns, self.package, self.ambiguous, self.local = namespace, package, ambiguous, local

    def _module(self, node) -> bool:
        return (isinstance(node, ast.Name) and inspect.ismodule(self.ns.get(node.id))
                and _in_package(self.ns[node.id], self.package))

    def visit_Attribute(self, node):
        if self._module(node.value) and node.attr not in self.ambiguous:
            name = "@" + node.attr if node.attr in self.local else node.attr
            return ast.copy_location(ast.Name(id=name, ctx=node.ctx), node)
        return self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if not _imports_package(node, self.package) or any(a.name in self.ambiguous for a in node.names):
            return node
        names = [a for a in node.names if not inspect.ismodule(self.ns.get(a.asname or a.name))]
        return ast.ImportFrom(module=None, names=names, level=0) if names else ast.Pass()

    def visit_Import(self, node):
        keep = [a for a in node.names if not (a.name == self.package or a.name.startswith(self.package + "."))]
        return ast.Import(names=keep) if keep else ast.Pass()


def _local_names(tree) -> frozenset:
    """Names the parsed code binds itself: arguments, assignment and loop targets, nested definitions, ``except``
    names and imported aliases (a bare name in it may mean one of these rather than a module's attribute)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not tree.body[0]:
            out.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(out)


def _imports_package(node, package: str) -> bool:
    """Whether an ``ImportFrom`` node imports from ``package`` (a relative import always does)."""
    return bool(node.level) or node.module == package or (node.module or "").startswith(package + ".")


def _is_config_class(obj, located: bool = False) -> bool:
    """A config dataclass (its fields are in the training key by value): a dataclass named ``*Config``, wherever
    it lives (``located``: the first scheme's rule, a dataclass of a module named ``config``)."""
    return (isinstance(obj, type) and dataclasses.is_dataclass(obj)
            and (obj.__module__.endswith(".config") if located else obj.__name__.endswith("Config")))


def _in_package(obj, package: str) -> bool:
    mod = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
    return isinstance(mod, str) and (mod == package or mod.startswith(package + "."))


def _namespace_with_local_imports(tree, namespace: dict, package: str, here: str) -> dict:
    """``namespace`` plus the ``package`` names that the parsed code ``tree`` imports inside its functions."""
    ns = dict(namespace)
    for node in ast.walk(tree):                                   # imports inside function bodies
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                own = here.split(".") + (["__init__"] if hasattr(sys.modules.get(here), "__path__") else [])
                parts = own[:len(own) - node.level]                 # a package's __init__ imports from itself
                base = ".".join(parts + ([node.module] if node.module else []))
            if not (base == package or base.startswith(package + ".")):
                continue
            mod = importlib.import_module(base)
            for a in node.names:
                ns[a.asname or a.name] = (getattr(mod, a.name) if hasattr(mod, a.name)
                                          else importlib.import_module(f"{base}.{a.name}"))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == package or a.name.startswith(package + "."):
                    ns[a.asname or a.name.split(".")[0]] = importlib.import_module(a.asname and a.name or a.name.split(".")[0])
    return ns


def _names_used(tree, namespace: dict, package: str, here: str) -> list:
    """``(label, object)`` of every global name (and ``module.attribute`` of an imported ``package`` module) that the
    parsed code ``tree`` reads, resolved in ``namespace``, plus the names it imports inside its functions."""
    ns = _namespace_with_local_imports(tree, namespace, package, here)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod = ns.get(node.value.id)
            if inspect.ismodule(mod) and _in_package(mod, package) and hasattr(mod, node.attr):
                out.append((f"{mod.__name__}.{node.attr}", getattr(mod, node.attr)))
        elif isinstance(node, ast.Name) and node.id in ns:
            out.append((f"{here}.{node.id}", ns[node.id]))
    return out


def code_closure(roots, package: str = "hwlib", located: bool = False) -> dict:
    """``{name: sha256[:12] of its normalized source or value}`` of every function, class and module-level value of
    ``package`` that the callables ``roots`` reach by name, followed transitively: globals read, attributes of
    imported package modules, imports inside functions, and the callables inside module-level registries (dicts,
    tuples, dataclass instances). Code outside the package (torch, numpy) is not followed: the run's machine record
    names its torch. A change to code that no root reaches -- another method, a new metric, a plot -- leaves the
    closure as it was; so do docstrings and comments. A config dataclass counts by its methods only (its fields are
    in the training key by value).

    The closure follows what the code **is**, not where it lives: a function or class is named by its qualified
    name inside its module (``DetectionLoss.forward``'s class ``DetectionLoss``), a value by the name its reader
    uses, sources are location-free (:func:`_source_of`); so moving a function to another module or renaming a
    module leaves the closure as it was. A name that two different objects of the closure share (two modules'
    ``helper``) is where location is meaning: those objects, and every reference to them, keep their module.
    ``located=True``: the store's first scheme (names with their module, sources as
    written), which only :func:`rekey` reads, to carry runs stored under it over to this one."""
    seen: set = set()
    objects: list = []               # (module, qualname, function or class) in the order reached
    values: dict = {}                # (reader module, name) -> value
    ambiguous: set = set()           # names of two different objects: they keep their module (filled below)
    todo = list(roots)

    def where(module: str, name: str) -> str:
        return f"{module}.{name}" if located or name in ambiguous else name

    def value_text(v, label) -> str:
        if callable(v) and hasattr(v, "__wrapped__"):
            v = inspect.unwrap(v)
        if callable(v) and _in_package(v, package):
            if inspect.isfunction(v) or inspect.isclass(v):
                todo.append(v)
                return (f"<{v.__module__[len(package):]}.{v.__qualname__}>" if located  # package-relative
                        else f"<{where(v.__module__[len(package):], v.__qualname__)}>")
        if isinstance(v, dict):
            return "{" + ", ".join(f"{value_text(k, label)}: {value_text(x, label)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple, set, frozenset)):
            items = sorted(v, key=repr) if isinstance(v, (set, frozenset)) else v
            return f"{type(v).__name__}(" + ", ".join(value_text(x, label) for x in items) + ")"
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            if _in_package(type(v), package):
                todo.append(type(v))
            return f"{type(v).__qualname__}(" + ", ".join(
                f"{f.name}={value_text(getattr(v, f.name), label)}" for f in dataclasses.fields(v)) + ")"
        if isinstance(v, functools.partial):
            return f"partial({value_text(v.func, label)}, {value_text(v.args, label)}, {value_text(v.keywords, label)})"
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray):                         # by its bytes: repr summarises and follows print options
            return f"array{v.dtype}{tuple(v.shape)}:{hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]}"
        if isinstance(v, PurePath):
            return type(v).__name__                            # where files go does not change what trains
        if _in_package(type(v), package) and not isinstance(v, type):
            todo.append(type(v))                               # an instance of a package class: its class's code too
        if isinstance(v, (bool, int, float, str, bytes, type(None), complex)) or isinstance(v, torch.dtype):
            return repr(v)
        r = repr(v)
        return type(v).__qualname__ if " at 0x" in r else r

    # 1. what the roots reach: functions and classes, and the module-level values they read
    while todo:
        obj = inspect.unwrap(todo.pop())                          # functools.lru_cache and other wrappers
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or not _in_package(obj, package):
            continue
        objects.append((obj.__module__, obj.__qualname__, obj))
        namespace = getattr(obj, "__globals__", None) or vars(sys.modules[obj.__module__])
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        for name, v in _names_used(tree, namespace, package, obj.__module__):
            v = inspect.unwrap(v) if callable(v) and hasattr(v, "__wrapped__") else v
            if inspect.ismodule(v):
                continue
            if inspect.isfunction(v) or inspect.isclass(v):
                if _in_package(v, package):
                    todo.append(v)
                continue
            module, bare = name.rsplit(".", 1)
            if (module, bare) not in values and (module == obj.__module__
                                                 or _in_package(sys.modules.get(module), package)):
                if callable(v) and not _in_package(v, package) and not isinstance(v, functools.partial):
                    continue                                      # torch.nn.functional.relu and the like
                values[(module, bare)] = v
                value_text(v, name)                               # the callables of registries join the closure

    # 2. names that two different objects share keep their module
    if not located:
        owners: dict = {}
        for _, name, obj in objects:
            owners.setdefault(name, set()).add(("code", id(obj)))
        for (_, name), v in values.items():
            owners.setdefault(name, set()).add(("value", value_text(v, name)))
        ambiguous.update(n for n, o in owners.items() if len(o) > 1)

    # 3. the digests
    parts: dict = {}
    for module, qualname, obj in objects:
        namespace = getattr(obj, "__globals__", None) or vars(sys.modules[obj.__module__])
        src = _source_of(obj, None if located else namespace, package, frozenset(ambiguous))
        _add_part(parts, where(module, qualname), hashlib.sha256(src.encode()).hexdigest()[:12])
    for (module, bare), v in values.items():
        _add_part(parts, where(module, bare), hashlib.sha256(value_text(v, f"{module}.{bare}").encode()).hexdigest()[:12])
    return {k: "+".join(sorted(set(v))) for k, v in sorted(parts.items())}


def _add_part(parts: dict, name: str, digest: str) -> None:
    """One more object of the closure under ``name``: its digest joins those of other objects of that name."""
    parts.setdefault(name, []).append(digest)


def parts_digest(parts: dict) -> str:
    """Hash (16 hex digits) of a :func:`code_closure`: the ``code`` of training keys and evaluation specs."""
    return _sha(parts)[:16]


def closure_digest(roots, package: str = "hwlib", located: bool = False) -> str:
    """:func:`parts_digest` of the :func:`code_closure` of ``roots``."""
    return parts_digest(code_closure(roots, package, located))


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def config_dict(cfg, ignore=frozenset()) -> dict:
    """The config as the key sees it: JSON values, without the fields in ``ignore`` (those the run's training
    does not read, :meth:`~hwlib.config.KeypointConfig.unread_by`) and without later fields at their neutral value
    (:data:`KEY_NEUTRAL`)."""
    d = to_jsonable(dataclasses.asdict(cfg)) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return {k: v for k, v in d.items()
            if k not in ignore and not (k in KEY_NEUTRAL and v == to_jsonable(KEY_NEUTRAL[k]))}


def training_key(task: str, method: str, cfg, seed: int, code: str, world_size: int = 1,
                 ignore=frozenset()) -> str:
    """What makes two runs the same run: task, method, seed, config (:func:`config_dict`), the number of processes
    it trained in (one: left out) and the training code (``code``, :func:`closure_digest`). Machine and precision are not part of
    it: a run trained on a GPU or another CPU joins the store as the same run (its record says where it trained)."""
    return _sha(_key_fields(task, method, config_dict(cfg, ignore), seed, world_size, code))


def _key_fields(task, method, config: dict, seed, world_size, code) -> dict:
    out = {"task": task, "method": method, "seed": int(seed), "config": config, "code": code}
    if world_size != 1:
        out["world_size"] = int(world_size)
    return out


def evaluation_key(spec: dict) -> str:
    """The sha256 of an evaluation's spec; the spec names the evaluation code's hash (``"code"``)."""
    return _sha(spec)


# ----------------------------------------------------------------------------- packed arrays
def pack(t) -> dict:
    """A float32 array (``Tensor`` or ndarray) as JSON: ``{"dtype", "shape", "zlib_b64"}``; :func:`unpack` is exact."""
    a = np.ascontiguousarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t),
                             dtype=np.float32)
    return {"dtype": "float32", "shape": list(a.shape),
            "zlib_b64": base64.b64encode(zlib.compress(a.tobytes(), 9)).decode("ascii")}


def unpack(d: dict) -> torch.Tensor:
    if not isinstance(d, dict) or d.get("dtype") != "float32" or "zlib_b64" not in d:
        raise ValueError(f"not a packed float32 array: {str(d)[:80]}")
    a = np.frombuffer(zlib.decompress(base64.b64decode(d["zlib_b64"])), dtype=np.float32)
    return torch.from_numpy(a.reshape(d["shape"]).copy())


def untimed_evals(evals: list) -> list:
    """A validation log's evaluations without their ``seconds`` (timings): what two trainings of one run share."""
    return [{k: v for k, v in e.items() if k != "seconds"} for e in evals]


def thin_history(h: dict, points: int = HISTORY_POINTS) -> dict:
    """A history dict with its per-step lists (``steps``, ``loss``, ``seconds``) cut to about ``points`` evenly
    spaced entries and the last; ``evals`` and the totals unchanged."""
    n = len(h.get("steps", []))
    if n <= points:
        return dict(h)
    idx = sorted(set(np.linspace(0, n - 1, points).round().astype(int).tolist()) | {n - 1})
    return {**h, **{k: [h[k][i] for i in idx] for k in ("steps", "loss", "seconds") if len(h.get(k, [])) == n}}


# ----------------------------------------------------------------------------- files
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


@dataclasses.dataclass
class RunRecord:
    """One stored run (the file's dict in ``data``) and where it lives."""

    data: dict
    path: Path | None = None

    @property
    def key(self) -> str:
        return self.data["training_key"]

    @property
    def name(self) -> str:
        return self.data["name"]

    def history(self):
        from hwlib.vision.train import History

        return History.from_dict(self.data["history"])

    def evaluation(self, spec: dict) -> dict | None:
        """The stored evaluation of ``spec`` (current evaluation code), or ``None``."""
        return self.data["evaluations"].get(evaluation_key(spec))

    def results(self) -> dict:
        """The run's outcome, what two copies of one run must agree on: history and every evaluation's metrics."""
        return {"history": self.data["history"],
                "evaluations": {k: e.get("metrics") for k, e in self.data["evaluations"].items()}}


def validate_record(data, path) -> dict:
    """``data`` (a parsed store file) checked: format, fields, and that its content gives its training key."""
    if not isinstance(data, dict):
        raise StoreError(f"run store file {path} is not a JSON object")
    fmt = data.get("format")
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise StoreError(f"run store file {path} has format {fmt!r}; this code reads format <= {FORMAT} "
                         "(written by a newer version of hwlib?)")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise StoreError(f"run store file {path} lacks {missing}")
    key = _sha(_key_fields(data["task"], data["method"], data["config"], data["seed"], data.get("world_size", 1),
                           data["code"]))
    if key != data["training_key"]:
        raise StoreError(f"run store file {path}: its task, method, seed, config and code give training key "
                         f"{key[:12]}, not the {str(data['training_key'])[:12]} it records (hand-edited?)")
    return data


def read_record(path) -> RunRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"run store file {path} is truncated or not JSON ({type(e).__name__}: {str(e)[:120]})") from None
    return RunRecord(validate_record(data, path), path)


class RunStore:
    """The run store in folder ``root``: read on first use, indexed by training key; writes are atomic."""

    def __init__(self, root):
        self.root = Path(root)
        self._index: dict | None = None
        self._seen = None           # the folder's (file, mtime, size) listing the index was read from

    def _listing(self):
        if not self.root.exists():
            return ()
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(self.root.glob("*.json")))

    def __repr__(self) -> str:
        return f"RunStore({self.root})"

    def _load(self) -> dict:
        listing = self._listing()
        if self._index is None or listing != self._seen:       # files added, removed or changed by someone else
            index: dict = {}
            for p in sorted(self.root.glob("*.json")) if self.root.exists() else []:
                rec = read_record(p)
                other = index.get(rec.key)
                if other is not None and other.results() != rec.results():
                    raise StoreError(f"run store files {other.path} and {p} hold the same run (training key "
                                     f"{rec.key[:12]}) with different results: keep one of them")
                index.setdefault(rec.key, rec)
            self._index, self._seen = index, listing
        return self._index

    def records(self) -> list[RunRecord]:
        return list(self._load().values())

    def get(self, key: str) -> RunRecord | None:
        return self._load().get(key)

    def find(self, name: str) -> list[RunRecord]:
        """Stored runs whose name is ``name`` (several where configs or code differ), newest first."""
        return sorted((r for r in self._load().values() if r.name == name),
                      key=lambda r: r.data.get("finished", ""), reverse=True)

    def put(self, data: dict) -> RunRecord:
        """Write (or replace) the run ``data`` (validated first); returns its record."""
        data = to_jsonable(data)
        path = self.root / f"{_slug(data['name'])}.{data['training_key'][:12]}.json"
        validate_record(data, path)
        old = self._load().get(data["training_key"])
        if old is not None and old.path is not None and old.path != path and old.path.exists():
            old.path.unlink()                                   # the same run under another name: one file
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        rec = RunRecord(data, path)
        self._index[rec.key] = rec
        self._seen = self._listing()
        return rec

    def add_evaluation(self, rec: RunRecord, spec: dict, metrics: dict, predictions: dict | None = None,
                       machine: dict | None = None, precision: str = "") -> RunRecord:
        ev = {"spec": spec, "metrics": metrics, "machine": machine or {}, "precision": precision}
        if predictions:
            ev["predictions"] = {k: pack(v) for k, v in predictions.items()}
        data = {**rec.data, "evaluations": {**rec.data["evaluations"], evaluation_key(spec): ev}}
        return self.put(data)

    def delete(self, key: str) -> None:
        rec = self._load().pop(key, None)
        if rec is not None and rec.path is not None and rec.path.exists():
            rec.path.unlink()
        self._seen = self._listing()


def new_record(task: str, method: str, name: str, cfg, seed: int, history, code: str, world_size: int = 1,
               ignore=frozenset(), machine: dict | None = None, steps: int | None = None,
               batch_size: int | None = None, code_parts: dict | None = None) -> dict:
    """The dict of a freshly finished run (no evaluation yet); ``history`` a :class:`~hwlib.vision.train.History`;
    ``code_parts`` the :func:`code_closure` that ``code`` hashes (kept so that a later change can be named)."""
    from hwlib.study.machine import machine_record

    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    steps = steps if steps is not None else getattr(cfg, "steps", None)
    config = config_dict(cfg, ignore)
    return {"format": FORMAT, "task": task, "method": method, "name": name, "seed": int(seed), "config": config,
            "world_size": int(world_size), "code": code, **({"code_parts": code_parts} if code_parts else {}),
            "training_key": training_key(task, method, cfg, seed, code, world_size, ignore),
            "machine": machine if machine is not None else machine_record(), "device": h.get("device", ""),
            "precision": h.get("precision", ""), "train_seconds": float(h.get("train_seconds", float("nan"))),
            "train_images": int(steps * (batch_size or cfg.batch_size) * world_size) if steps is not None else None,
            "steps": steps, "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "history": thin_history(h), "evaluations": {}}


def changed_code(data: dict, parts_now: dict) -> list[str]:
    """The names of the functions, classes and values whose code differs between a stored run's ``code_parts`` and
    ``parts_now`` (added, removed or changed); ``[]`` where the record keeps no parts."""
    then = data.get("code_parts") or {}
    if not then:
        return []
    return sorted(k for k in set(then) | set(parts_now) if then.get(k) != parts_now.get(k))


def size_bytes(root=STORE_DIR) -> int:
    """Bytes the store's files take on disk."""
    return sum(p.stat().st_size for p in Path(root).glob("*.json"))


def zoo_file_of(training_key: str, out_dir=ZOO_DIR) -> Path | None:
    """The zoo file (``models/<name>.pt``) exported from the run of ``training_key``, or ``None``: how a figure that
    needs a stored run's weights finds them on a machine that did not train it (the manifest, written by
    :mod:`hwlib.study.zoo`, names each model's training key)."""
    try:
        manifest = json.loads((Path(out_dir) / ZOO_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    for entry in manifest.values() if isinstance(manifest, dict) else ():
        if isinstance(entry, dict) and entry.get("training_key") == training_key:
            f = Path(out_dir) / str(entry.get("file", ""))
            return f if f.is_file() else None
    return None
