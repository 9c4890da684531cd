"""hwlib.study.verify: a stored run retrained is bit-identical on the machine that trained it; a changed number is found."""

import dataclasses
import json

import pytest

from hwlib.study import arms, codes, detection
from hwlib.study import verify
from hwlib.config import load_profile
from hwlib.study.store import RunStore


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A smoke-size detector and heatmap run, each with a test-split evaluation, in a scratch store."""
    P, root = load_profile("smoke"), tmp_path_factory.mktemp("store")
    runs = arms.run_detectors(P.detector, {"seed_exact": {}}, 1, prefix="02_", n_eval=6, validate=True, store=root,
                            progress=False, precision="fp32")
    # an analysis stored with the run (another evaluation kind): verify makes it again too
    runs.analysis("seed_exact", 0, codes.positives_spec(P.detector, n=4), detection.evaluate_positives)
    arms.run_keypoint_methods(P.keypoint, ("heatmap",), 1, prefix="04_", n_eval=6, store=root, progress=False,
                            precision="fp32")
    return root


def test_verify_retrains_bit_identical_here(stored, capsys):
    assert verify.main(["02_seed_exact_s0", "04_heatmap_s0", "--store", str(stored), "--no-progress",
                        "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.count(": identical") == 2
    assert "validation curve" in out and "values on one side only" not in out
    assert "test map_standard" in out and "test pck_0.05" in out and "stored" in out and "retrained" in out


def test_verify_finds_a_changed_number(stored, tmp_path, capsys):
    f = next(stored.glob("04_heatmap_s0.*.json"))
    data = json.loads(f.read_text())
    ev = next(iter(data["evaluations"].values()))
    ev["metrics"]["pck_0.05"] += 0.25                   # an evaluation that is not what the weights give
    (tmp_path / f.name).write_text(json.dumps(data))
    rec = RunStore(tmp_path).find("04_heatmap_s0")[0]
    r = verify.verify(rec, progress=False, precision="fp32")
    assert r["verdict"] == "differs" and r["max_abs"] == pytest.approx(0.25, abs=1e-6)
    assert r["evaluations"][next(iter(data["evaluations"]))]["worst"] == "pck_0.05"
    assert verify.main(["--store", str(tmp_path), "--no-progress", "--profile", "smoke", "04_heatmap_s0"]) == 1


def test_verify_lists_and_rejects_unknown_names(stored, capsys):
    assert verify.main(["--store", str(stored), "--list", "--profile", "smoke"]) == 0
    assert "2 runs in" in capsys.readouterr().out
    assert verify.main(["--store", str(stored), "nope", "--profile", "smoke"]) == 2


def test_compare_counts_nan_as_equal_and_names_the_worst():
    c = verify.compare({"a": 1.0, "b": {"x": float("nan"), "y": 2.0}}, {"a": 1.0, "b": {"x": float("nan"), "y": 2.5}})
    assert c == {"n": 3, "equal": False, "max_abs": 0.5, "worst": "b.y", "missing": []}
    assert verify.compare({"a": [1, 2]}, {"a": [1, 2]})["equal"]
    # a rank (a count of boxes) is compared for equality, never against the metrics' tolerance
    c = verify.compare({"all": {"iou": 0.8, "object_rank": 865}}, {"all": {"iou": 0.81, "object_rank": 870}})
    assert not c["equal"] and c["worst"] == "all.iou" and c["max_abs"] == pytest.approx(0.01)


def test_config_of_rebuilds_the_dataclass():
    P = load_profile("smoke")
    data = {"task": "detector", "name": "x", "config": json.loads(json.dumps(dataclasses.asdict(P.detector)))}
    assert verify.config_of(data) == P.detector


def _moved(stored, tmp_path, name, delta, kind="another-cpu-kind"):
    """A copy of the stored run ``name`` as if trained on ``kind``, its reported test metric moved by ``delta``."""
    f = next(stored.glob(f"{name}.*.json"))
    data = json.loads(f.read_text())
    data["machine"]["cpu_kind"] = kind
    ev = next(e for e in data["evaluations"].values() if e["spec"]["kind"] == "keypoint")
    ev["metrics"]["pck_0.05"] += delta
    if len(data["history"]["evals"]) > 1:                # a mid-curve value apart: shown, never judged
        data["history"]["evals"][0]["pck_0.05"] += 0.3
    (tmp_path / f.name).write_text(json.dumps(data))
    return RunStore(tmp_path).find(name)[0]


def test_a_run_from_another_cpu_kind_is_judged_by_what_it_reports(stored, tmp_path, capsys):
    """Stored on another CPU kind: reported values within their tolerance -> "reproduced within tolerance" (exit 0);
    one beyond it -> "differs" (exit 1). On the same kind, the same small difference is "differs": bits expected."""
    (tmp_path / "near").mkdir()
    near = _moved(stored, tmp_path / "near", "04_heatmap_s0", 0.01)
    r = verify.verify(near, progress=False, precision="fp32")
    assert r["verdict"] == "within tolerance" and r["max_abs"] == pytest.approx(0.01, abs=1e-6)
    assert all(t == pytest.approx(verify.TOLERANCE) for _, a, b, t in r["reported"] if a <= 1)   # one seed: default
    assert verify.main(["--store", str(tmp_path / "near"), "--no-progress", "--profile", "smoke", "04_heatmap_s0"]) == 0
    out = capsys.readouterr().out
    assert "reproduced within tolerance" in out and "validation curve" in out
    (tmp_path / "far").mkdir()
    far = _moved(stored, tmp_path / "far", "04_heatmap_s0", 0.05)
    assert verify.verify(far, progress=False, precision="fp32")["verdict"] == "differs"
    assert verify.main(["--store", str(tmp_path / "far"), "--no-progress", "--profile", "smoke", "04_heatmap_s0"]) == 1
    (tmp_path / "same").mkdir()
    f = next(stored.glob("04_heatmap_s0.*.json"))
    same = _moved(stored, tmp_path / "same", "04_heatmap_s0", 0.01, kind=json.loads(f.read_text())["machine"]["cpu_kind"])
    assert verify.verify(same, progress=False, precision="fp32")["verdict"] == "differs"


def test_the_tolerance_is_the_seed_to_seed_spread(stored, tmp_path):
    """With three seeds of one config stored, a reported value's tolerance is their standard deviation."""
    import statistics

    f = next(stored.glob("04_heatmap_s0.*.json"))
    base = json.loads(f.read_text())
    store = RunStore(tmp_path)
    vals = [0.50, 0.56, 0.62]
    for seed, v in enumerate(vals):
        d = json.loads(json.dumps(base))
        d["seed"], d["name"] = seed, f"04_heatmap_s{seed}"
        next(e for e in d["evaluations"].values() if e["spec"]["kind"] == "keypoint")["metrics"]["pck_0.05"] = v
        from hwlib.study.store import _key_fields, _sha
        d["training_key"] = _sha(_key_fields(d["task"], d["method"], d["config"], seed, 1, d["code"]))
        store.put(d)
    tol = verify.seed_tolerance(store.find("04_heatmap_s1")[0].data, store)
    key = next(k for k in tol if k.startswith("test pck_0.05"))
    assert tol[key] == pytest.approx(statistics.stdev(vals))
    assert all(t >= verify.MIN_TOLERANCE for t in tol.values())
