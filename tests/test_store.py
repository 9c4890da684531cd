"""The run store: read before train, one file per run, keys, clear errors (hwlib.study.store, hwlib.study.obtain)."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from hwlib.study import arms, codes, detection, keypointing, obtain
from hwlib.vision import detector
from hwlib.study import store as st
from hwlib.config import load_profile


@pytest.fixture(scope="module")
def smoke():
    return load_profile("smoke")


def _count_training(monkeypatch):
    """Patch the two trainers to count their calls (and still train)."""
    calls = []
    det, kpt = detection._train_detector, keypointing._train_keypoint_model

    def d(cfg, seed, ckpt, name, *a):
        calls.append(name)
        return det(cfg, seed, ckpt, name, *a)

    def k(method, cfg, seed, ckpt, name, *a):
        calls.append(name)
        return kpt(method, cfg, seed, ckpt, name, *a)

    monkeypatch.setattr(obtain, "_train_detector", d)            # where the runs call them
    monkeypatch.setattr(obtain, "_train_keypoint_model", k)
    return calls


def _detectors(P, store, run_dir=None, **kw):
    return arms.run_detectors(P.detector, {"baseline": {}, "wide": {"width": 0.5}}, 2, run_dir=run_dir, split="test",
                            n_eval=8, validate=True, store=store, progress=False, precision="fp32", **kw)


def test_stored_runs_are_not_trained_again_and_give_the_same_records(smoke, tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    first = _detectors(smoke, tmp_path / "store")
    assert len(calls) == 4
    files = sorted(p.name for p in (tmp_path / "store").glob("*.json"))
    assert len(files) == 4
    calls.clear()
    again = _detectors(smoke, tmp_path / "store")
    assert calls == []                                      # nothing trained, nothing loaded
    assert again.models == {}
    assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(first.to_json(), sort_keys=True)
    assert sorted(again.records["baseline"].extra["runs"] + again.records["wide"].extra["runs"]) == files
    assert again.histories["baseline"][0].evals == first.histories["baseline"][0].evals


def test_deleting_one_run_retrains_exactly_that_run(smoke, tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    _detectors(smoke, tmp_path / "store")
    victim = next((tmp_path / "store").glob("wide_s1.*.json"))
    victim.unlink()
    calls.clear()
    _detectors(smoke, tmp_path / "store")
    assert calls == ["wide_s1"]
    assert len(list((tmp_path / "store").glob("*.json"))) == 4


def test_a_new_evaluation_is_made_from_the_checkpoint_not_by_training(smoke, tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    _detectors(smoke, tmp_path / "store", run_dir=tmp_path / "ckpt")
    calls.clear()
    # another evaluation of the same runs (another image count: another evaluation key)
    runs = arms.run_detectors(smoke.detector, {"baseline": {}, "wide": {"width": 0.5}}, 2, run_dir=tmp_path / "ckpt",
                            split="test", n_eval=6, validate=True, store=tmp_path / "store", progress=False,
                            precision="fp32")
    assert calls == []
    rec = runs.stored[("baseline", 0)]
    assert len(rec.data["evaluations"]) == 2
    # without the checkpoints the stale evaluation needs the weights again: that run is retrained
    for p in (tmp_path / "ckpt").glob("baseline_s0.*"):
        p.unlink()
    arms.run_detectors(smoke.detector, {"baseline": {}}, 1, run_dir=tmp_path / "ckpt", split="test", n_eval=5,
                     validate=True, store=tmp_path / "store", progress=False, precision="fp32")
    assert calls == ["baseline_s0"]


def test_the_training_key_changes_with_the_config_seed_and_code_only(smoke):
    cfg, code = smoke.detector, codes.training_code("detector")
    k = st.training_key("detector", "detector", cfg, 0, code)
    assert k == st.training_key("detector", "detector", dataclasses.replace(cfg), 0, code)
    assert k != st.training_key("detector", "detector", dataclasses.replace(cfg, lr=cfg.lr * 2), 0, code)
    assert k != st.training_key("detector", "detector", cfg, 1, code)
    assert k != st.training_key("detector", "detector", cfg, 0, "0" * 16)
    assert k != st.training_key("detector", "detector", cfg, 0, code, world_size=2)
    kc = smoke.keypoint                       # a field the method does not read leaves its key alone
    other = dataclasses.replace(kc, regression_lr=0.123)
    assert (st.training_key("keypoint", "heatmap", kc, 0, code, ignore=kc.unread_by("heatmap"))
            == st.training_key("keypoint", "heatmap", other, 0, code, ignore=other.unread_by("heatmap")))
    assert (st.training_key("keypoint", "regression", kc, 0, code, ignore=kc.unread_by("regression"))
            != st.training_key("keypoint", "regression", other, 0, code, ignore=other.unread_by("regression")))


def test_code_hash_ignores_docstrings_and_comments_but_not_code():
    base = "def f(x):\n    y = x + 1\n    return y\n"
    same = 'def f(x):\n    """What f does."""\n    # a comment\n    y = x + 1  # another\n\n    return y\n'
    other = "def f(x):\n    y = x + 2\n    return y\n"
    assert st._normalized_source(base) == st._normalized_source(same)
    assert st._normalized_source(base) != st._normalized_source(other)
    # the training path hashes its functions' code: a function of it swapped for another changes the hash
    assert st.closure_digest([detection.detection_batches]) != st.closure_digest([keypointing.keypoint_batches])


_PKG_A = """
from . import b
from .b import helper

CONST = 3
REGISTRY = {"one": helper}


def root(x):
    \"\"\"The root.\"\"\"
    return helper(x) + CONST + b.other(x) + len(REGISTRY)


def unrelated(x):
    return x - 1
"""
_PKG_B = """
SCALE = 2


def helper(x):
    return x * SCALE


def other(x):
    from .c import deep
    return deep(x)


def not_called(x):
    return x
"""
_PKG_C = """
def deep(x):
    return x + 10
"""


def _closure_of(tmp_path, monkeypatch, tag, a=_PKG_A, b=_PKG_B, c=_PKG_C):
    """code_closure of ``root`` in a throw-away package ``pkg_<tag>`` made of modules a, b, c."""
    import importlib

    pkg = tmp_path / f"pkg_{tag}"
    pkg.mkdir()
    for name, src in (("__init__", ""), ("a", a), ("b", b), ("c", c)):
        (pkg / f"{name}.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    root = importlib.import_module(f"pkg_{tag}.a").root
    return st.code_closure([root], package=f"pkg_{tag}")


def test_code_closure_follows_what_the_root_reaches_and_nothing_else(tmp_path, monkeypatch):
    parts = _closure_of(tmp_path, monkeypatch, "base")
    names = set(parts)
    # globals, imported functions, module.attribute, imports inside functions, registries' callables, constants
    assert {"root", "helper", "other", "deep", "CONST", "REGISTRY", "SCALE"} <= names
    assert "unrelated" not in names and "not_called" not in names
    digest = lambda tag, **kw: st.parts_digest(_closure_of(tmp_path, monkeypatch, tag, **kw))
    base = digest("base2")
    # what no root reaches, docstrings and comments: the same code
    assert digest("unrel", a=_PKG_A.replace("x - 1", "x - 2")) == base
    assert digest("notcalled", b=_PKG_B.replace("return x\n", "return -x\n")) == base
    assert digest("doc", a=_PKG_A.replace("The root.", "The root, documented.")) == base
    # a change to anything the root reaches: another code
    assert digest("helper", b=_PKG_B.replace("x * SCALE", "x * SCALE + 0")) != base
    assert digest("scale", b=_PKG_B.replace("SCALE = 2", "SCALE = 3")) != base
    assert digest("const", a=_PKG_A.replace("CONST = 3", "CONST = 4")) != base
    assert digest("deep", c=_PKG_C.replace("x + 10", "x + 11")) != base


def test_training_code_is_per_task_and_deterministic():
    import subprocess
    import sys

    det, kpt = codes.training_code("detector"), codes.training_code("keypoint")
    assert det != kpt and len(det) == 16
    closure = st.code_closure([detection._train_detector])
    assert "assign_targets" in closure and "fit" in closure
    assert "HeatmapNet" not in closure and "KeypointLoss" not in closure    # keypoint code: not a detector's
    assert "detection_samples" not in closure
    # another process (another hash seed) computes the same keys
    out = subprocess.run([sys.executable, "-c", "from hwlib.study import codes; "
                          "print(codes.training_code('detector'), codes.eval_code('keypoint'))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.split() == [det, codes.eval_code("keypoint")]


def test_normalized_source_is_pinned():
    # the text the keys hash must not drift with the Python version (3.12 adds empty type_params, 3.13 omits empty
    # fields from ast.dump): checked equal on 3.10, 3.11, 3.12 and 3.13; decorators count, the docstring does not
    src = '@deco(1)\ndef f(x: int = 2, *a, k=None) -> int:\n    """Doc."""\n    y = [i for i in a if i]\n    return x + 1.5 + len(y)\n'
    import hashlib

    assert hashlib.sha256(st._normalized_source(src).encode()).hexdigest()[:16] == "b5844c34c3ee9aee"
    assert st._normalized_source(src) != st._normalized_source(src.replace("@deco(1)\n", ""))


def test_pack_is_exact():
    t = torch.randn(7, 5, 2) * 100
    assert torch.equal(st.unpack(st.pack(t)), t)
    with pytest.raises(ValueError):
        st.unpack({"dtype": "float16"})


def test_thin_history_keeps_evaluations_and_the_last_step():
    h = {"steps": list(range(1000)), "loss": [float(i) for i in range(1000)], "seconds": list(range(1000)),
         "evals": [{"step": 500}, {"step": 1000}], "train_seconds": 3.0}
    t = st.thin_history(h, 100)
    assert len(t["steps"]) <= 101 and t["steps"][0] == 0 and t["steps"][-1] == 999
    assert t["loss"] == [float(s) for s in t["steps"]] and t["evals"] == h["evals"]
    assert st.thin_history({"steps": [1, 2], "loss": [1, 2], "evals": []}) == {"steps": [1, 2], "loss": [1, 2],
                                                                              "evals": []}


@pytest.fixture
def one_run(smoke, tmp_path):
    obtain.train_detector(dataclasses.replace(smoke.detector, steps=1), name="r_s0", store=tmp_path / "s",
                      progress=False, precision="fp32", validate=False)
    return next((tmp_path / "s").glob("*.json"))


def test_bad_store_files_get_one_clear_error(one_run, tmp_path):
    text = one_run.read_text()
    cases = {
        "truncated": text[: len(text) // 2],
        "newer format": text.replace('"format": 1', '"format": 99'),
        "hand-edited config": text.replace('"lr": 0.002', '"lr": 0.004'),
        "missing field": json.dumps({k: v for k, v in json.loads(text).items() if k != "history"}),
    }
    for what, bad in cases.items():
        one_run.write_text(bad)
        with pytest.raises(st.StoreError, match=one_run.name):
            st.RunStore(one_run.parent).records()
    one_run.write_text(text)
    assert len(st.RunStore(one_run.parent).records()) == 1


def test_two_files_of_one_run_with_different_results_are_an_error(one_run):
    data = json.loads(one_run.read_text())
    copy = one_run.with_name("copy." + one_run.name)
    copy.write_text(json.dumps(data))                       # an identical copy is the same run: fine
    assert len(st.RunStore(one_run.parent).records()) == 1
    data["history"]["train_seconds"] += 1.0
    copy.write_text(json.dumps(data))
    with pytest.raises(st.StoreError, match="different results"):
        st.RunStore(one_run.parent).records()


def test_keypoint_predictions_round_trip_through_the_store(smoke, tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    kw = dict(split="test", n_eval=6, validate=True, store=tmp_path / "s", progress=False, precision="fp32")
    first = arms.run_keypoint_methods(smoke.keypoint, ("heatmap", "regression"), 1, **kw)
    calls.clear()
    again = arms.run_keypoint_methods(smoke.keypoint, ("heatmap", "regression"), 1, **kw)
    assert calls == []
    for d, p in first.extra["predictions"].items():
        assert torch.equal(again.extra["predictions"][d][0], p[0])
    no_timing = lambda r: {m: {k: v for k, v in x.items() if k != "infer_ms"} for m, x in r.to_json().items()}  # noqa: E731
    assert json.dumps(no_timing(again), sort_keys=True) == json.dumps(no_timing(first), sort_keys=True)


def test_weights_of_a_stored_run_without_checkpoint_or_zoo_entry_name_the_run(smoke, tmp_path):
    runs = _detectors(smoke, tmp_path / "store")
    again = _detectors(smoke, tmp_path / "store")
    assert isinstance(runs.model("baseline", 0), torch.nn.Module)        # trained in this process
    with pytest.raises(st.StoreError, match="baseline_s0"):
        again.model("baseline", 0)


def test_shards_split_the_missing_runs_and_wait_for_each_other(smoke, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="i/N"):
        obtain.parse_shard("2/2")
    with pytest.raises(ValueError, match="i/N"):
        obtain.parse_shard("a/b")
    keys = [f"{i:012x}" + "0" * 52 for i in range(12)]
    assert sorted({obtain.shard_of(k, 3) for k in keys}) == [0, 1, 2]
    cfg = dataclasses.replace(smoke.detector, steps=1)
    key = st.training_key("detector", "detector", cfg, 0, codes.training_code("detector"))
    owner = obtain.shard_of(key, 2)
    kw = dict(name="r_s0", store=tmp_path / "s", progress=False, precision="fp32", validate=False)
    monkeypatch.setenv("HWLIB_SHARD", f"{1 - owner}/2")
    monkeypatch.setenv("HWLIB_SHARD_WAIT", "0.3")
    calls = _count_training(monkeypatch)
    with pytest.raises(TimeoutError, match=f"shard {owner}/2"):
        obtain.train_detector(cfg, **kw)                       # not this shard's: not trained here
    assert calls == []
    monkeypatch.setenv("HWLIB_SHARD", f"{owner}/2")
    obtain.train_detector(cfg, **kw)                           # its own shard trains it
    assert calls == ["r_s0"]
    monkeypatch.setenv("HWLIB_SHARD", f"{1 - owner}/2")
    hist, _, model, rec = obtain._detector_run(cfg, 0, None, "r_s0", "auto", "fp32", False, False, None, tmp_path / "s")
    assert calls == ["r_s0"] and rec is not None and model is None   # the other shard reads it from the store
    # a worker shard (not 0) writes its figures and numbers apart from the profile's
    assert smoke.shard_dir == (None if owner == 1 else smoke.run_dir / "shard-1")


def test_changed_code_names_what_differs():
    then = {"code_parts": {"hwlib.a.f": "1", "hwlib.a.g": "2", "hwlib.a.gone": "3"}}
    assert st.changed_code(then, {"hwlib.a.f": "1", "hwlib.a.g": "9", "hwlib.a.new": "4"}) == [
        "hwlib.a.g", "hwlib.a.gone", "hwlib.a.new"]
    assert st.changed_code(then, dict(then["code_parts"])) == []
    assert st.changed_code({}, {"hwlib.a.f": "1"}) == []                  # a record without parts: nothing to name
    parts = codes.training_parts("detector")
    assert codes.training_code("detector") == st.parts_digest(parts) == st.closure_digest([detection._train_detector])


def test_the_committed_store_is_not_git_ignored():
    import shutil
    import subprocess

    from hwlib.config import REPO_ROOT, STORE_DIR

    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # `git check-ignore` exits 1 when the path is not ignored (an ignored store would never be committed)
    r = subprocess.run(["git", "check-ignore", "-q", str(STORE_DIR / "a_run.0123456789ab.json")], cwd=REPO_ROOT)
    assert r.returncode == 1


def test_a_ceiling_trains_each_seed_twice_as_long_into_the_store(smoke, tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    runs = arms.run_detectors(smoke.detector, {"baseline": {}}, 2, split="test", n_eval=8, validate=True,
                            store=tmp_path / "store", progress=False, precision="fp32", ceiling=True)
    assert calls == ["baseline_s0", "baseline_s1", "baseline_x2_s0", "baseline_x2_s1"]
    verdict = runs.records["baseline"].plateau
    assert "doubling" in verdict["criterion"] and len(verdict["doubling_gains"]) == 2
    recs = {r.name: r for r in st.RunStore(tmp_path / "store").records()}
    twice = recs["baseline_x2_s0"]
    assert twice.data["steps"] == 2 * smoke.detector.steps and twice.data["evaluations"] == {}   # validation only
    final = lambda r: r.data["history"]["evals"][-1]["map_standard"]                           # noqa: E731
    assert verdict["doubling_gains"][0] == pytest.approx(final(twice) - final(recs["baseline_s0"]))
    calls.clear()
    arms.run_detectors(smoke.detector, {"baseline": {}}, 2, split="test", n_eval=8, validate=True,
                     store=tmp_path / "store", progress=False, precision="fp32", ceiling=True)
    assert calls == []                                      # the doubled runs are read from the store too


def _executed(fn) -> set:
    """Names (the outermost function or class, as the code closure names it) of every hwlib function that runs
    while ``fn()`` runs: the brute force that the code closure must cover."""
    import sys
    from pathlib import Path

    import hwlib

    root = Path(hwlib.__file__).parent
    for m in sorted(root.rglob("*.py")):                  # import-time code (constants, profiles) is not the run's
        if m.stem != "__main__":
            __import__(".".join(["hwlib", *m.relative_to(root).with_suffix("").parts]).removesuffix(".__init__"))
    seen = set()

    def hook(frame, event, arg):
        if event == "call":
            f = Path(frame.f_code.co_filename)
            if root in f.parents:
                seen.add(frame.f_code.co_qualname.split(".")[0])

    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.parametrize("task", ["detector", "keypoint"])
def test_the_training_closure_covers_every_function_a_training_runs(smoke, tmp_path, task):
    # brute force: trace a smoke training (with validation and a checkpoint) and check that every hwlib function or
    # class it ran is in the closure the training key hashes; module bodies (<module>) run at import, not here
    if task == "detector":
        run = lambda: detection._train_detector(smoke.detector, 0, tmp_path / "d.pt", "d", "cpu", "fp32", False, True)  # noqa: E731
    else:
        run = lambda: keypointing._train_keypoint_model("integral", smoke.keypoint, 0, tmp_path / "k.pt", "k", 3, "cpu",  # noqa: E731
                                               "fp32", False, True)
    ran = {n for n in _executed(run) if not n.endswith("<module>")}
    closure = codes.training_parts(task)
    assert ran and not (ran - set(closure)), sorted(ran - set(closure))


def test_the_evaluation_closure_covers_every_function_an_evaluation_runs(smoke):
    cfg = smoke.detector
    model = detector.build_detector(cfg).eval()
    spec = codes.detector_spec(cfg, "test", 6, analyses=True)
    ran = {n for n in _executed(lambda: detection._evaluate_detector(model, cfg, [spec], "cpu", "fp32"))
           if not n.endswith("<module>")}
    kcfg = smoke.keypoint
    kmodel = __import__("hwlib.vision.keypoints", fromlist=["x"]).build_keypoint_model("heatmap", kcfg).eval()
    kspec = codes.keypoint_spec("heatmap", kcfg, "test", 6, mse=True)
    kran = {n for n in _executed(lambda: keypointing._evaluate_keypoints(kmodel, "heatmap", kcfg, [kspec], "cpu", "fp32"))
            if not n.endswith("<module>")}
    for got, kind, m in ((ran, "detector", model), (kran, "keypoint", kmodel)):
        # the model's own code (its forward and what that calls) is the training's: the run's training key names it
        own = set(st.code_closure([type(x) for x in m.modules()]))
        closure = st.code_closure(codes.EVAL_PATH[kind])
        assert got and not (got - set(closure) - own), (kind, sorted(got - set(closure) - own))


def test_a_ceiling_is_checked_before_anything_trains(smoke, tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    with pytest.raises(ValueError, match="validate"):
        arms.run_detectors(smoke.detector, {"baseline": {}}, 1, split="test", n_eval=4, store=tmp_path, ceiling=True)
    with pytest.raises(ValueError, match="not arms"):
        arms.run_detectors(smoke.detector, {"baseline": {}}, 1, split="test", n_eval=4, validate=True, store=tmp_path,
                         ceiling={"headline"})
    assert calls == []


def test_two_callers_of_one_run_share_it_without_retraining_in_turn(smoke, tmp_path, monkeypatch):
    """One run (one training key) asked for by two notebooks under two names, with different evaluations: the second
    finds the first's checkpoint by its key; with no checkpoint left it trains the run again with the validation the
    stored record had, keeps its stored name, and keeps the first's evaluation (identical training): neither caller
    then trains it again."""
    calls = _count_training(monkeypatch)
    first = lambda: arms.run_detectors(smoke.detector, {"x": {}}, 1, run_dir=tmp_path / "a", split="test", n_eval=8,  # noqa: E731
                                     validate=True, store=tmp_path / "store", progress=False, precision="fp32")
    second = lambda: arms.run_detectors(smoke.detector, {"y": {}}, 1, run_dir=tmp_path / "b", split="test", n_eval=6,  # noqa: E731
                                      validate=False, store=tmp_path / "store", progress=False, precision="fp32")
    a = first()
    assert calls == ["x_s0"]
    b = second()                                            # the checkpoint of x_s0, found by its key
    assert calls == ["x_s0"] and b.records["y"].per_seed_metrics[0]["map_standard"] >= 0
    assert (tmp_path / "b" / "y_s0.pt").read_bytes() == (tmp_path / "a" / "x_s0.pt").read_bytes()   # here too now
    (tmp_path / "b" / "y_s0.pt").unlink()
    for p in (tmp_path / "a").glob("*.pt"):
        p.unlink()
    calls.clear()
    (rec,) = st.RunStore(tmp_path / "store").records()
    rec.data["evaluations"] = {k: e for k, e in rec.data["evaluations"].items() if e["spec"]["n"] == 8}
    st.RunStore(tmp_path / "store").put(rec.data)           # as if the second caller had never evaluated it
    second()
    assert calls == ["y_s0"]                                # no weights anywhere: trained again, once
    (rec,) = st.RunStore(tmp_path / "store").records()
    assert rec.name == "x_s0" and rec.data["history"]["evals"]                        # name and validation kept
    assert sorted(e["spec"]["n"] for e in rec.data["evaluations"].values()) == [6, 8]  # both evaluations kept
    calls.clear()
    again = first()
    assert calls == []
    assert json.dumps(again.to_json()["x"]["per_seed"], sort_keys=True) == json.dumps(a.to_json()["x"]["per_seed"], sort_keys=True)


def test_an_analysis_of_a_stored_run_is_made_once_then_read_from_the_store(smoke, tmp_path, monkeypatch):
    """Runs.analysis: made from the run's weights and stored with the run; a rebuild reads it without weights."""
    calls, made = _count_training(monkeypatch), []

    def evaluate(model, cfg, spec):
        made.append(spec["n"])
        return detection.evaluate_positives(model, cfg, spec)

    runs = _detectors(smoke, tmp_path / "store", run_dir=tmp_path / "ckpt")
    other = _detectors(smoke, tmp_path / "store", run_dir=tmp_path / "ckpt")   # read before the analysis is stored
    spec = codes.positives_spec(smoke.detector, n=4)
    first = runs.analysis("baseline", 0, spec, evaluate)
    assert made == [4] and set(first) == {"circle", "square", "triangle", "all", "image_top_score"}
    # another holder of the same run adds its own analysis without dropping the first (it writes the store's copy)
    other.analysis("baseline", 0, codes.positives_spec(smoke.detector, n=2), evaluate)
    rec = obtain._as_store(tmp_path / "store").find("baseline_s0")[0]
    assert sum(e["spec"]["kind"] == "positives" for e in rec.data["evaluations"].values()) == 2
    made.clear()
    assert other.analysis("baseline", 0, spec, evaluate) == first and made == []   # found, not made again
    made.append(4)
    for p in (tmp_path / "ckpt").glob("*"):
        p.unlink()                                          # no weights left: only the store can answer
    calls.clear()
    again = _detectors(smoke, tmp_path / "store", run_dir=tmp_path / "ckpt")
    assert again.analysis("baseline", 0, spec, evaluate) == first
    assert made == [4] and calls == []
    # another spec is another evaluation: made again (here the weights are gone, so the run is named)
    with pytest.raises(Exception, match="baseline"):
        again.analysis("baseline", 0, codes.positives_spec(smoke.detector, n=3), evaluate)


def test_the_positives_closure_covers_what_it_runs(smoke):
    cfg = smoke.detector
    model = detector.build_detector(cfg).eval()
    spec = codes.positives_spec(cfg, n=3)
    ran = {n for n in _executed(lambda: detection.evaluate_positives(model, cfg, spec)) if not n.endswith("<module>")}
    own = set(st.code_closure([type(x) for x in model.modules()]))
    closure = st.code_closure(codes.EVAL_PATH["positives"])
    assert ran and not (ran - set(closure) - own), sorted(ran - set(closure) - own)


# the same package, its function `helper` moved from module b to module c (b's readers import it from c), and b
# then renamed to d: the code is the same, so is the closure
_PKG_A_MOVED = _PKG_A.replace("from .b import helper", "from .c import helper")
_PKG_B_MOVED = _PKG_B.replace("def helper(x):\n    return x * SCALE\n", "")
_PKG_C_MOVED = "SCALE = 2\n\n\ndef helper(x):\n    return x * SCALE\n" + _PKG_C


def _package(tmp_path, monkeypatch, tag, modules: dict):
    import importlib

    pkg = tmp_path / f"pkg_{tag}"
    pkg.mkdir()
    for name, src in {"__init__": "", **modules}.items():
        (pkg / f"{name}.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(f"pkg_{tag}.a").root, f"pkg_{tag}"


def test_moving_a_function_or_renaming_a_module_keeps_the_key(tmp_path, monkeypatch):
    """Item 'a key follows what the code is': a training-path function moved to another module, and a module
    renamed, in a scratch copy of a package: the closure (so every training key) is unchanged. Under the first
    scheme (names with their module, ``located=True``) the same moves changed it, which orphaned stored runs."""
    def closures(tag, modules):
        root, pkg = _package(tmp_path, monkeypatch, tag, modules)
        return st.code_closure([root], package=pkg), st.code_closure([root], package=pkg, located=True)

    base, base_located = closures("orig", {"a": _PKG_A, "b": _PKG_B, "c": _PKG_C})
    moved, moved_located = closures("moved", {"a": _PKG_A_MOVED, "b": _PKG_B_MOVED, "c": _PKG_C_MOVED})
    assert moved == base and moved_located != base_located
    # module b renamed to d: its readers' `from . import b` / `b.other(x)` now say d
    renamed, renamed_located = closures("renamed", {"a": _PKG_A.replace("from . import b", "from . import d")
                                                    .replace("from .b import", "from .d import")
                                                    .replace("b.other(x)", "d.other(x)"),
                                                    "d": _PKG_B, "c": _PKG_C})
    assert renamed == base and renamed_located != base_located
    # a change of what runs still changes it, wherever the code lives
    changed, _ = closures("changed", {"a": _PKG_A_MOVED, "b": _PKG_B_MOVED,
                                      "c": _PKG_C_MOVED.replace("x * SCALE", "x * SCALE + 1")})
    assert changed != base
    # two different values of one name in two modules: both count, each under its module
    two, _ = closures("two", {"a": _PKG_A.replace("b.other(x)", "b.other(x) + b.CONST"),
                              "b": _PKG_B + "\nCONST = 5\n", "c": _PKG_C})
    assert {"pkg_two.a.CONST", "pkg_two.b.CONST"} <= set(two) and "CONST" not in two


def test_two_codes_that_differ_never_share_a_closure(tmp_path, monkeypatch):
    """Where location is meaning, it stays: two different functions of one name called in swapped order, and a
    module's attribute against a local of the same name, give different closures."""
    b = _PKG_B + "\nSIZE = 5\n"
    c = _PKG_C + "\n\ndef helper(x):\n    return x + 100\n"
    a_swap = "from . import b, c\n\n\ndef root(x):\n    return b.helper(x) - c.helper(x)\n"

    def closure(tag, a):
        root, pkg = _package(tmp_path, monkeypatch, tag, {"a": a, "b": b, "c": c})
        return st.parts_digest(st.code_closure([root], package=pkg))

    assert closure("swap1", a_swap) != closure("swap2", a_swap.replace("b.helper(x) - c.helper(x)",
                                                                      "c.helper(x) - b.helper(x)"))
    shadow = "from . import b\nfrom .b import SIZE\n\n\ndef root(x, SIZE=2):\n    return x * b.SIZE\n"
    assert closure("shadow1", shadow) != closure("shadow2", shadow.replace("x * b.SIZE", "x * SIZE"))
    # function-level imports of two different functions of one name, swapped between two readers
    imp = ("def root(x):\n    return one(x) - two(x)\n\n\n"
           "def one(x):\n    from .{p} import helper\n    return helper(x)\n\n\n"
           "def two(x):\n    from .{q} import helper\n    return helper(x)\n")
    assert closure("imp1", imp.format(p="b", q="c")) != closure("imp2", imp.format(p="c", q="b"))


def test_a_config_class_counts_by_its_methods_wherever_it_lives(tmp_path, monkeypatch):
    """A dataclass named *Config is a config (fields in the key by value) in any module: moving it out of
    `config` keeps the closure; its fields' defaults are not hashed, its methods are."""
    cfg = ("import dataclasses\n\n\n@dataclasses.dataclass(frozen=True)\nclass RunConfig:\n    steps: int = 10\n\n"
           "    def twice(self):\n        return 2 * self.steps\n")
    user = "from .{m} import RunConfig\n\n\ndef root(x):\n    return RunConfig().twice() + x\n"

    def closure(tag, m, src):
        root, pkg = _package(tmp_path, monkeypatch, tag, {"a": user.format(m=m), m: src})
        return st.parts_digest(st.code_closure([root], package=pkg))

    base = closure("cfg1", "config", cfg)
    assert closure("cfg2", "settings", cfg) == base                                   # moved out of `config`
    assert closure("cfg3", "config", cfg.replace("steps: int = 10", "steps: int = 20")) == base   # a field default
    assert closure("cfg4", "config", cfg.replace("2 * self.steps", "3 * self.steps")) != base     # a method


def test_the_training_path_moved_in_a_scratch_copy_keeps_its_key(tmp_path, monkeypatch):
    """The real training path: a copy of hwlib in which ``assign_targets`` moves from ``vision.detector`` to a new
    module (``detector`` importing it from there), ``vision.boxes`` is renamed ``boxops``, and ``vision.detector`` is
    renamed ``detecting`` (its reader imports it under the new name): the detector's and the keypoint models' training
    codes are the same."""
    import re
    import shutil
    import subprocess
    import sys

    import hwlib

    src = Path(hwlib.__file__).parent
    dst = tmp_path / "hwlib"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    vision = dst / "vision"
    det = (vision / "detector.py").read_text()
    m = re.search(r"\ndef assign_targets\(.*?(?=\n\ndef |\n\nclass )", det, re.S)
    assert m, "assign_targets not found"
    helpers = re.findall(r"^(?:from|import) .*$", det, re.M)
    (vision / "assignment.py").write_text(
        "\n".join(helpers) + "\nfrom hwlib.vision.detector import STRIDES, best_anchor_index, _flatten_targets, _grid\n"
        + m.group(0) + "\n")
    det = det.replace(m.group(0), "") + "\nfrom hwlib.vision.assignment import assign_targets  # noqa: E402\n"
    (vision / "detector.py").write_text(det)

    def rewrite(pattern, repl):
        for f in dst.rglob("*.py"):
            t = f.read_text()
            t2 = re.sub(pattern, repl, t)
            if t2 != t:
                f.write_text(t2)

    rewrite(r"\bfrom hwlib\.vision import boxes\b", "from hwlib.vision import boxops as boxes")
    rewrite(r"\bhwlib\.vision\.boxes\b", "hwlib.vision.boxops")
    (vision / "boxes.py").rename(vision / "boxops.py")
    # readers through a module: `det.DetectionLoss` (module alias det) now `detecting.DetectionLoss`, the module
    # imported under its own new name (unlocated, both read `DetectionLoss`)
    reader = dst / "study" / "detection.py"
    t = reader.read_text()
    assert "from hwlib.vision import detector as det\n" in t and "det.DetectionLoss" in t
    reader.write_text(re.sub(r"\bdet\.", "detecting.", t.replace("from hwlib.vision import detector as det\n",
                                                               "from hwlib.vision import detecting\n")))
    rewrite(r"\bfrom hwlib\.vision import detector as", "from hwlib.vision import detecting as")
    rewrite(r"\bhwlib\.vision\.detector\b", "hwlib.vision.detecting")
    (vision / "detector.py").rename(vision / "detecting.py")
    code = ("from hwlib.study import codes, store as st; print(codes.training_code('detector'), "
            "codes.training_code('keypoint'), st.closure_digest(codes.TRAINING_PATH['detector'], located=True))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    here = subprocess.run([sys.executable, "-c", code + "; import hwlib; print(hwlib.__file__)"], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert str(tmp_path) in here.stdout                     # the scratch copy ran, not the installed package
    det_code, kp_code, located = out.stdout.split()
    assert [det_code, kp_code] == [codes.training_code("detector"), codes.training_code("keypoint")]
    assert located != st.closure_digest(codes.TRAINING_PATH["detector"], located=True)   # the moves did happen


def test_an_option_added_at_its_neutral_value_leaves_the_config_part_of_the_key():
    cfg = load_profile("smoke").detector
    assert cfg.ignore_iou == 0.0 and "ignore_iou" not in st.config_dict(cfg)       # as before the option existed
    on = dataclasses.replace(cfg, ignore_iou=0.5)
    assert st.config_dict(on)["ignore_iou"] == 0.5
    assert st.training_key("detector", "detector", on, 0, "c") != st.training_key("detector", "detector", cfg, 0, "c")
