"""One run, obtained the cheapest way: read from the run store, a finished local checkpoint of the same config, or
trained (one at a time per machine) and stored; sharded across processes; its weights found again for figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from hwlib.config import DetectorConfig, KeypointConfig
from hwlib.study.codes import training_code, training_parts
from hwlib.study.detection import _train_detector
from hwlib.study.keypointing import _train_keypoint_model
from hwlib.vision import keypoints as kp
from hwlib.vision.detector import build_detector
from hwlib.vision.train import pick_device, resolve_precision


REUSE_ENV = "HWLIB_REUSE_CHECKPOINTS"   # "1": a complete checkpoint of the same config is loaded, not retrained


def _reuse_default() -> bool:
    return os.environ.get(REUSE_ENV, "0") == "1"


def _history_path(ckpt: Path) -> Path:
    return ckpt.with_suffix(".history.json")


def same_config(stored: dict | None, cfg, ignore=frozenset()) -> bool:
    """Whether a checkpoint's stored config (JSON) is ``cfg``'s. A field added to the config class after the
    checkpoint was written counts as equal when ``cfg`` holds the behaviour the code had before the field existed:
    the field's default, or its entry in :data:`hwlib.config.BEFORE_FIELD_EXISTED` where the default has changed
    since (so adding an option does not orphan every finished run). Fields in ``ignore`` (those the run's training
    does not read, :meth:`~hwlib.config.KeypointConfig.unread_by`) are not compared."""
    from hwlib.config import before_field_existed
    from hwlib.io import to_jsonable

    if not isinstance(stored, dict):
        return False
    now = to_jsonable(dataclasses.asdict(cfg))
    if set(stored) - set(now):
        return False
    defaults = {**{f.name: f.default for f in dataclasses.fields(cfg)}, **before_field_existed(type(cfg))}
    return all(stored[k] == v if k in stored else v == to_jsonable(defaults.get(k, dataclasses.MISSING))
               for k, v in now.items() if k not in ignore)


def finished_meta(meta: dict, cfg, steps: int, ignore=frozenset()) -> bool:
    """Whether a run's stored metadata (a checkpoint's payload, or the ``<name>.json`` written beside it) says it
    finished with this config: its ``"config"`` is ``cfg`` (:func:`same_config`, ``ignore`` as there) and it was
    written at the last step, ``steps``."""
    return same_config(meta.get("config"), cfg, ignore) and meta.get("extra", {}).get("step") == steps


def finished_checkpoint(ckpt, cfg, steps: int, need_history: bool, ignore=frozenset()):
    """``(payload, history)`` of a finished training run at ``ckpt`` with this config, or ``None``.

    Finished: the checkpoint loads (``weights_only``), its stored config is ``cfg`` (:func:`same_config`) and it was
    written at the last step (``steps``); checkpoints written at an intermediate evaluation of a killed run do not
    count. With ``need_history`` the validation log written beside it at the end of training
    (``<name>.history.json``) must exist too. The training code is not checked: reuse is for resuming the runs of
    one version of the code (the pipeline turns it on, ``--force`` turns it off)."""
    from hwlib.vision.train import CheckpointError, History, load_checkpoint

    if ckpt is None or not Path(ckpt).exists():
        return None
    try:
        payload = load_checkpoint(ckpt)
    except CheckpointError:
        return None
    if not finished_meta(payload, cfg, steps, ignore):
        return None
    hp = _history_path(Path(ckpt))
    if hp.exists():
        history = History.from_dict(json.loads(hp.read_text()))
    elif need_history:
        return None
    else:
        history = History(train_seconds=float(payload["extra"].get("train_seconds", float("nan"))))
    return payload, history


RETRAIN_ENV = "HWLIB_RETRAIN"            # "1": stored runs are trained again (and replaced), as on a machine without them


def _retrain_default() -> bool:
    return os.environ.get(RETRAIN_ENV, "0") == "1"


SHARD_ENV = "HWLIB_SHARD"                # "i/N": this process trains the missing runs of shard i of N (hwlib.study.pipeline)
SHARD_WAIT_ENV = "HWLIB_SHARD_WAIT"      # seconds to wait for another shard's run (default: a day)


def shard_of(key: str, n: int) -> int:
    """The shard (0 .. n - 1) that trains the run of training key ``key`` when the missing runs are split n ways."""
    return int(key[:12], 16) % n


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``; anything else is a ``ValueError`` that says what is expected."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"a shard is 'i/N' with integers 0 <= i < N, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"a shard is 'i/N' with 0 <= i < N, got {text!r}")
    return i, n


def _wait_for_shard(st, key: str, name: str, owner: int, n: int):
    """Block until the run store ``st`` holds training key ``key`` (trained by shard ``owner``); return its record."""
    import time

    limit = float(os.environ.get(SHARD_WAIT_ENV, 86400))
    t0 = time.monotonic()
    print(f"{name}: shard {owner}/{n}'s run; waiting for its store file", flush=True)
    while (rec := st.get(key)) is None:
        if time.monotonic() - t0 > limit:
            raise TimeoutError(f"{name}: shard {owner}/{n} has not written this run to {st.root} within {limit:.0f} s "
                               f"({SHARD_WAIT_ENV}); is that shard running, on this store folder?")
        time.sleep(min(10.0, max(0.05, limit / 20)))
    return rec


def _key_path(ckpt: Path) -> Path:
    return ckpt.with_suffix(".key")


def _checkpoint_of_key(ckpt: Path, key: str) -> Path | None:
    """A local checkpoint of the stored run ``key`` under another name: a ``.key`` file naming it beside ``ckpt``, in
    the folder above, or in that folder's subfolders (another notebook's checkpoints of the same profile)."""
    here = ckpt.parent
    for folder in (here, here.parent):
        for k in [*sorted(folder.glob("*.key")), *sorted(folder.glob("*/*.key"))] if folder.exists() else []:
            if k.with_suffix(".pt") != ckpt and k.with_suffix(".pt").exists() and k.read_text().strip() == key:
                return k.with_suffix(".pt")
    return None


def _link_checkpoint(src: Path, dst: Path) -> None:
    """``dst`` (and its ``.key`` and ``.history.json``) become the files of checkpoint ``src``: hard links where the
    file system allows, else copies; existing files at ``dst`` are replaced."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    for a, b in ((src, dst), (_key_path(src), _key_path(dst)), (_history_path(src), _history_path(dst))):
        if not a.exists():
            continue
        b.unlink(missing_ok=True)
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)


def _same_training(stored_history: dict, hist) -> bool:
    """Whether a run trained again logged what its stored record holds: the same losses and validation values (not
    its timings)."""
    from hwlib.study.store import thin_history, untimed_evals

    new = thin_history(hist.to_dict())
    return (new.get("loss") == stored_history.get("loss")
            and untimed_evals(new.get("evals", [])) == untimed_evals(stored_history.get("evals", [])))


_STORES: dict = {}


def _as_store(store):
    from hwlib.study.store import RunStore

    if store is None or isinstance(store, RunStore):
        return store
    return _STORES.setdefault(str(Path(store).resolve()), RunStore(store))


def _local_run(ckpt, cfg, steps, validate, key, build, ignore, reuse):
    """``(model, history)`` of the finished checkpoint ``ckpt`` of this run, or ``None``: same config, last step
    (:func:`finished_checkpoint`), the same model class, and, where the checkpoint's ``.key`` file names a training
    key, this one (``key``: one key, or the keys that serve this run: today's and the stored run's). Checkpoints without a ``.key`` file (written before the store) count only with ``reuse``."""
    if ckpt is None:
        return None
    kp_ = _key_path(Path(ckpt))
    stored_key = kp_.read_text().strip() if kp_.exists() else None
    if stored_key is not None and stored_key not in ({key} if isinstance(key, str) else set(key)):
        return None
    if stored_key is None and not reuse:
        return None
    found = finished_checkpoint(ckpt, cfg, steps, need_history=validate, ignore=ignore)
    if found is None:
        return None
    model = build()
    if found[0].get("model") not in (None, type(model).__name__):
        return None                                       # same config, another model class: train it anew
    model.load_state_dict(found[0]["state_dict"])         # the payload already loaded, not a second read
    return model, found[1]


def obtain_run(task: str, method: str, cfg, seed: int, name: str, steps: int, *, build, train, ckpt=None,
               validate: bool = True, store=None, specs=(), evaluate=None, ignore=frozenset(),
               need_model: bool = False, reuse: bool | None = None, device: str = "auto", precision: str = "auto"):
    """One training run, read from the run store before anything is trained (:mod:`hwlib.study.store`).

    In order: a stored run of this training key (:func:`hwlib.study.store.training_key`: task, method, seed, config,
    training code) with every evaluation in ``specs`` is returned as it is, nothing loaded; a stored run with a stale
    or missing evaluation is evaluated from its local checkpoint; otherwise the finished local checkpoint of this
    run is used (:func:`_local_run`), or it is trained (``train(validate) -> (model, History)``). A stored run
    trained without validation does not serve a call that needs it; a stored run trained again for its weights is
    trained with validation where its record had it, and keeps its stored name. Every new run and every new
    evaluation is written to the store at once (only by rank 0 of a distributed run). With ``HWLIB_RETRAIN=1`` a
    stored run is trained again and its file replaced. With ``HWLIB_SHARD=i/N`` (``python -m hwlib.pipeline --shard``)
    a missing run of another shard (:func:`shard_of`) is not trained here: this process waits until that shard's
    process has written it to the same store folder (its checkpoint too, where an evaluation must be made here).

    Args:
        build: ``() -> model`` (untrained, for loading weights); train: ``() -> (model, History)``.
        ckpt: the local checkpoint path (``None``: none is kept).
        specs: evaluation specs (dicts, :func:`detector_spec` / :func:`keypoint_spec`); evaluate:
            ``(model, [spec]) -> [(metrics, predictions or None)]`` for the specs missing from the store.
        need_model: also return the weights (loaded or trained) where the store alone would do.

    Returns:
        ``(history, [evaluation dict per spec: {"metrics", "predictions"?}], model or None, record or None)``.
    """
    from hwlib.study.lock import training_slot
    from hwlib.study.machine import machine_record
    from hwlib.io import atomic_write_text
    from hwlib.study.store import evaluation_key, new_record, training_key, unpack
    from hwlib.vision.train import distributed

    st = _as_store(store)
    rank, world = distributed()
    key = training_key(task, method, cfg, seed, training_code(task), world, ignore)
    reuse = _reuse_default() if reuse is None else reuse
    retrain = _retrain_default()
    rec = (_stored_record(st, task, lambda code: training_key(task, method, cfg, seed, code, world, ignore))
           if st is not None and not retrain else None)
    if rec is not None and validate and not rec.data["history"].get("evals"):
        print(f"{name}: stored run {rec.path.name} was trained without validation, which this run needs: training it "
              "again with validation, its store file will be replaced", flush=True)
        rec = None                                         # a validated run serves both; an unvalidated one does not
    if rec is not None:
        evs = [rec.evaluation(s) for s in specs]
        if all(e is not None for e in evs) and not need_model:
            return rec.history(), [_unpacked(e, unpack) for e in evs], None, rec
    serving = {key} | ({rec.key} if rec is not None else set())   # a run of an accepted older code: its own key
    local = None if retrain else _local_run(ckpt, cfg, steps, validate, serving, build, ignore,
                                            reuse or rec is not None)
    if local is None and rec is not None and not retrain and ckpt is not None:
        other = _checkpoint_of_key(Path(ckpt), rec.key)    # the stored run's weights, here under another name
        if other is not None:                               # (nothing usable is at ckpt: linking loses nothing)
            _link_checkpoint(other, Path(ckpt))
            local = _local_run(ckpt, cfg, steps, validate, serving, build, ignore, False)
    shard = os.environ.get(SHARD_ENV)
    if rec is None and local is None and st is not None and shard:
        i, n = parse_shard(shard)
        if shard_of(key, n) != i:                          # another shard trains it: wait for its record
            rec = _wait_for_shard(st, key, name, shard_of(key, n), n)
            evs = [rec.evaluation(s) for s in specs]
            if all(e is not None for e in evs) and not need_model:
                return rec.history(), [_unpacked(e, unpack) for e in evs], None, rec
            local = _local_run(ckpt, cfg, steps, validate, key, build, ignore, True)
    if rec is None and local is None and st is not None:
        _say_why_not_stored(st, task, name, key)
    if local is not None:
        model, hist = local
        print(f"{name}: finished run found ({Path(ckpt).name}, step {steps}), loaded instead of retrained", flush=True)
    else:
        keep = rec is not None and bool(rec.data["history"].get("evals"))
        if rec is not None:
            print(f"{name}: stored run {rec.path.name} needs its weights (an evaluation is missing, or the model is "
                  "asked for) and no checkpoint is here: training it again, its store file will be replaced", flush=True)
            name = rec.name                                # the run keeps the name it was stored under
        with training_slot(name, rank, world) as load:     # one training at a time on this machine
            model, hist = train(validate or keep)          # a stored run's validation log is kept, never dropped
        if ckpt is not None and rank == 0:
            atomic_write_text(_history_path(Path(ckpt)), json.dumps(hist.to_dict()))
            atomic_write_text(_key_path(Path(ckpt)), key + "\n")
        # a new training is a new record; the stored run's evaluations stay only where it trained identically
        # (the same losses and validation log: the same weights), else two notebooks that share a run and need
        # different evaluations would retrain it in turn on every rebuild
        kept = rec.data["evaluations"] if rec is not None and _same_training(rec.data["history"], hist) else {}
        rec = None
    if st is not None and rank == 0 and rec is None:
        machine = {**machine_record(), **({"load": load.as_dict()} if local is None else {})}
        rec = st.put({**new_record(task, method, name, cfg, seed, hist, training_code(task), world, ignore,
                                   machine=machine, steps=steps, batch_size=cfg.batch_size,
                                   code_parts=training_parts(task)),
                      "evaluations": kept if local is None else {}})
    elif rec is not None:
        hist = rec.history()                               # the stored run's own log (the checkpoint's is the same)
    missing = [s for s in specs if rec is None or rec.evaluation(s) is None]
    results = dict(zip(map(evaluation_key, missing), evaluate(model, missing))) if missing else {}
    if st is not None and rank == 0:
        prec = resolve_precision(precision, pick_device(device))
        for s in missing:
            metrics, preds = results[evaluation_key(s)]
            rec = st.add_evaluation(rec, s, metrics, preds, machine_record(), prec)
    evs = []
    for s in specs:
        if evaluation_key(s) in results:
            metrics, preds = results[evaluation_key(s)]
            evs.append({"metrics": metrics, **({"predictions": preds} if preds else {})})
        else:
            evs.append(_unpacked(rec.evaluation(s), unpack))
    return hist, evs, model, rec


def _say_why_not_stored(st, task: str, name: str, key: str) -> None:
    """Before a run is trained: where the store holds a run of this name under another training key, say what
    differs (the code it reaches, by name, or the config), so that a retraining is never a surprise."""
    from hwlib.study.store import changed_code

    for other in st.find(name)[:1]:
        if other.data["code"] != training_code(task):
            changed = changed_code(other.data, training_parts(task))
            what = (f"its training code changed since ({', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''})"
                    if changed else "its training code changed since")
        else:
            what = "its config differs"
        print(f"{name}: the store holds {other.path.name}, another run of this name ({what}): training this one",
              flush=True)


def stored_run(task: str, method: str, cfg, seed: int, store, world_size: int = 1):
    """The stored run of this task, method (``"detector"`` for detectors), config and seed under the current
    training code, or ``None``; nothing is trained."""
    from hwlib.study.store import training_key

    st = _as_store(store)
    ignore = cfg.unread_by(method) if task == "keypoint" else frozenset()
    return (_stored_record(st, task, lambda code: training_key(task, method, cfg, seed, code, world_size, ignore))
            if st else None)


def _stored_record(st, task: str, key_of):
    """The stored run of ``st`` that serves the current training code: of its training key (``key_of(code)``), or
    of an older code that :mod:`hwlib.study.equivalence` accepted as equivalent to it (that change was proved to keep
    its runs' results)."""
    from hwlib.study.accepted import stored_under_accepted

    return stored_under_accepted(st, task, training_code(task), key_of)


def _unpacked(ev: dict, unpack) -> dict:
    out = {"metrics": ev["metrics"]}
    if "predictions" in ev:
        out["predictions"] = {k: unpack(v) for k, v in ev["predictions"].items()}
    return out


def run_weights(rec, ckpt, build, cfg, steps: int, validate: bool = False, ignore=frozenset()):
    """The weights of a stored run ``rec`` (for a figure): its local checkpoint where there is one (``.key`` file
    of this run, or none), else the model zoo's file of this training key (``models/MANIFEST.json``).

    Raises:
        hwlib.study.store.StoreError: neither is here; the message names the run and how to get its weights."""
    from hwlib.study.store import StoreError, zoo_file_of

    local = _local_run(ckpt, cfg, steps, False, rec.key, build, ignore, True) if ckpt is not None else None
    if local is not None:
        return local[0]
    zoo = zoo_file_of(rec.key)
    if zoo is not None:
        from hwlib.study.checkpoints import load_model

        return load_model(zoo)[0]
    raise StoreError(f"the weights of stored run {rec.name} (training key {rec.key[:12]}, {rec.path}) are not here: "
                     f"no checkpoint {ckpt} and no model of the zoo (models/MANIFEST.json) is of this run. Train it "
                     "again (make report RETRAIN=1, or HWLIB_RETRAIN=1 for one stage), or copy its checkpoint there")


def train_detector(cfg: DetectorConfig, seed: int = 0, run_dir: str | Path | None = None, name: str = "detector",
                   device: str = "auto", precision: str = "auto", progress: bool = True, validate: bool = True,
                   reuse: bool | None = None, store=None):
    """Train one detector; returns ``(model, history)``. With ``validate``, validation mAP (standard
    protocol) every ``cfg.eval_every`` steps and at the end; checkpoint ``<run_dir>/<name>.pt`` with its
    config beside it, its validation history (``<name>.history.json``) and training key (``<name>.key``). With
    ``store`` (a :class:`~hwlib.study.store.RunStore` or its folder) the run is recorded there; with ``reuse`` (default:
    the ``HWLIB_REUSE_CHECKPOINTS`` environment variable) a finished checkpoint of the same config is loaded
    instead (:func:`obtain_run`)."""
    hist, _, model, _ = _detector_run(cfg, seed, run_dir, name, device, precision, progress, validate, reuse,
                                      store, need_model=True)
    return model, hist


def _detector_run(cfg, seed, run_dir, name, device, precision, progress, validate, reuse, store, specs=(),
                  evaluate=None, need_model=False):
    ckpt = Path(run_dir) / f"{name}.pt" if run_dir else None
    return obtain_run("detector", "detector", cfg, seed, name, cfg.steps, build=lambda: build_detector(cfg),
                      train=lambda v: _train_detector(cfg, seed, ckpt, name, device, precision, progress, v),
                      ckpt=ckpt, validate=validate, store=store, specs=specs, evaluate=evaluate,
                      need_model=need_model, reuse=reuse, device=device, precision=precision)


def train_keypoint_model(method: str, cfg: KeypointConfig, seed: int = 0, run_dir: str | Path | None = None,
                         name: str | None = None, device: str = "auto", precision: str = "auto",
                         progress: bool = True, validate: bool = True, reuse: bool | None = None, store=None):
    """Train one keypoint model (``"heatmap"``, ``"regression"`` or ``"integral"``) on the shared data;
    with ``validate``, validation PCK (bbox norm) every ``cfg.eval_every`` steps and at the end; checkpoint,
    validation history, ``store`` and ``reuse`` as in :func:`train_detector`. Returns ``(model, history)``."""
    hist, _, model, _ = _keypoint_run(method, cfg, seed, run_dir, name, device, precision, progress, validate,
                                      reuse, store, need_model=True)
    return model, hist


def _keypoint_run(method, cfg, seed, run_dir, name, device, precision, progress, validate, reuse, store, specs=(),
                  evaluate=None, need_model=False):
    name = name or f"{method}_s{seed}"
    ckpt = Path(run_dir) / f"{name}.pt" if run_dir else None
    steps = cfg.steps_of(method)
    return obtain_run("keypoint", method, cfg, seed, name, steps, build=lambda: kp.build_keypoint_model(method, cfg),
                      train=lambda v: _train_keypoint_model(method, cfg, seed, ckpt, name, steps, device, precision,
                                                           progress, v),
                      ckpt=ckpt, validate=validate, store=store, specs=specs, evaluate=evaluate,
                      ignore=cfg.unread_by(method), need_model=need_model, reuse=reuse, device=device,
                      precision=precision)
