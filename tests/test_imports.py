"""The package's layout is its architecture, and its imports keep to it: the science (``hwlib.vision``) imports
nothing of the study (``hwlib.study``); ``config`` and ``io`` beneath both import no other hwlib module; the
public surface at the top (the API modules SPEC names and the commands) only re-exports; no import cycle; within
the study, the run store and the experiment layer import nothing of the commands' layer; no file over 650 lines."""

import ast
from pathlib import Path

import pytest

import hwlib

HWLIB = Path(hwlib.__file__).parent
SHARED = {"config", "io"}                                          # beneath every layer
API = {"data", "boxes", "metrics", "detector", "keypoints"}        # SPEC's public API, facades of hwlib.vision
COMMANDS = {"bench", "equivalence", "evaluate", "pipeline", "readme", "recipe", "run", "stages", "verify", "zoo"}
TOP = {"study.pipeline", "study.bench", "study.zoo", "study.evaluate", "study.recipe", "study.launch", "study.verify",
       "study.readme", "study.equivalence", "study.stages"}
LOW = {"study.store", "study.accepted", "study.lock", "study.machine", "study.checkpoints", "study.splits",
       "study.detection", "study.keypointing", "study.codes", "study.obtain", "study.arms"}


def module_name(path: Path, root: Path = HWLIB) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph(root: Path = HWLIB) -> dict:
    """``{module: {hwlib modules it imports}}`` (names relative to the package: ``"vision.detector"``), imports
    inside functions included; ``from hwlib.vision import detector`` imports ``vision.detector``."""
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    graph = {}
    for p in root.rglob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{p}: relative import (hwlib imports absolutely): {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hwlib."):
                mod = node.module[len("hwlib."):]
                subs = {f"{mod}.{a.name}" for a in node.names} & modules
                deps |= subs or {mod}
            elif isinstance(node, ast.Import):
                deps |= {a.name[len("hwlib."):] for a in node.names if a.name.startswith("hwlib.")}
        graph[module_name(p, root)] = deps - {module_name(p, root)}
    return graph


def find_cycle(graph: dict) -> list | None:
    """One cycle of ``graph`` as a list of nodes, or ``None`` (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def _layer(module: str) -> str:
    return module.split(".")[0] if "." in module else ("shared" if module in SHARED else "surface")


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None       # a diamond is no cycle


def test_no_import_cycle_in_hwlib():
    assert find_cycle(import_graph()) is None


def test_the_graph_sees_package_and_function_level_imports(tmp_path):
    pkg = tmp_path / "hwlib"
    (pkg / "vision").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "vision" / "__init__.py").write_text("")
    (pkg / "vision" / "a.py").write_text("def f():\n    from hwlib.study import b\n")
    (pkg / "vision" / "c.py").write_text("from hwlib.vision import a\nfrom hwlib.config import X\n")
    g = import_graph(pkg)
    assert g["vision.a"] == {"study"} and g["vision.c"] == {"vision.a", "config"}
    (pkg / "vision" / "d.py").write_text("from .a import f\n")
    with pytest.raises(AssertionError, match="relative import"):
        import_graph(pkg)


def test_the_science_imports_nothing_of_the_study():
    for mod, deps in import_graph().items():
        if _layer(mod) == "vision":
            bad = {d for d in deps if _layer(d) not in ("vision", "shared")}
            assert not bad, f"hwlib.{mod} imports {sorted(bad)}"


def test_config_and_io_import_no_other_hwlib_module():
    g = import_graph()
    for mod in SHARED:
        assert not g[mod], f"hwlib.{mod} imports {sorted(g[mod])}"


def test_the_study_imports_nothing_of_the_public_surface():
    for mod, deps in import_graph().items():
        if _layer(mod) == "study":
            bad = {d for d in deps if _layer(d) == "surface"}
            assert not bad, f"hwlib.{mod} imports the facades or commands {sorted(bad)}"


def test_the_public_surface_only_re_exports_its_one_module():
    g = import_graph()
    for mod in API:
        assert g[mod] == {f"vision.{mod}"}, (mod, g[mod])
    for mod in COMMANDS:
        assert len(g[mod]) == 1 and _layer(next(iter(g[mod]))) == "study", (mod, g[mod])
    top = {module_name(p) for p in HWLIB.glob("*.py")} - {""}
    assert top == API | COMMANDS | SHARED, sorted(top ^ (API | COMMANDS | SHARED))


def test_the_public_api_is_where_spec_names_it():
    from hwlib.boxes import batched_nms, box_iou
    from hwlib.config import load_profile
    from hwlib.data import make_detection_data, make_keypoint_data
    from hwlib.detector import MultiScaleDetector
    from hwlib.keypoints import HeatmapNet, RegressionNet, decode_heatmaps, encode_heatmaps
    from hwlib.metrics import evaluate_detections, pck, voc_ap
    from hwlib.vision import boxes, detector
    assert box_iou is boxes.box_iou and batched_nms is boxes.batched_nms and MultiScaleDetector is detector.MultiScaleDetector
    assert all(callable(f) for f in (load_profile, make_detection_data, make_keypoint_data, HeatmapNet, RegressionNet,
                                      decode_heatmaps, encode_heatmaps, evaluate_detections, pck, voc_ap))


def test_store_and_experiments_import_nothing_of_the_commands_layer():
    g = import_graph()
    for low in LOW | {"vision.train"}:
        assert not (g[low] & TOP), f"hwlib.{low} imports {sorted(g[low] & TOP)}"
    assert not (g["study.store"] & {"study.codes", "study.obtain", "study.arms"})


def test_no_file_is_over_650_lines():
    long = {module_name(p): n for p in HWLIB.rglob("*.py") if (n := len(p.read_text().splitlines())) > 650}
    assert not long, long
