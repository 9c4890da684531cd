"""The package's layers import in one direction: no cycle among hwlib's modules, the run store beneath the
experiment layer, the study layer (pipeline, bench, zoo, evaluate, recipe, run, verify) above it."""

import ast
from pathlib import Path

import hwlib

HWLIB = Path(hwlib.__file__).parent
STUDY = {"pipeline", "bench", "zoo", "evaluate", "recipe", "run", "verify", "readme"}


def import_graph(root: Path = HWLIB) -> dict:
    """``{module: {hwlib modules it imports}}``, imports inside functions included."""
    graph = {}
    for p in root.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hwlib."):
                deps.add(node.module.split(".")[1])
        graph[p.stem] = deps - {p.stem}
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


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None       # a diamond is no cycle


def test_no_import_cycle_in_hwlib():
    assert find_cycle(import_graph()) is None


def test_store_and_experiments_import_nothing_of_the_study_layer():
    g = import_graph()
    for low in ("store", "experiments", "machine", "checkpoints", "train"):
        assert not (g[low] & STUDY), f"hwlib.{low} imports {sorted(g[low] & STUDY)}"
    assert "experiments" not in g["store"]
