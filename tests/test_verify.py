"""hwlib.verify: a stored run retrained is bit-identical on the machine that trained it; a changed number is found."""

import dataclasses
import json

import pytest

from hwlib import experiments as ex
from hwlib import verify
from hwlib.config import load_profile
from hwlib.store import RunStore


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A smoke-size detector and heatmap run, each with a test-split evaluation, in a scratch store."""
    P, root = load_profile("smoke"), tmp_path_factory.mktemp("store")
    runs = ex.run_detectors(P.detector, {"seed_exact": {}}, 1, prefix="02_", n_eval=6, validate=True, store=root,
                            progress=False, precision="fp32")
    # an analysis stored with the run (another evaluation kind): verify makes it again too
    runs.analysis("seed_exact", 0, ex.positives_spec(P.detector, n=4), ex.evaluate_positives)
    ex.run_keypoint_methods(P.keypoint, ("heatmap",), 1, prefix="04_", n_eval=6, store=root, progress=False,
                            precision="fp32")
    return root


def test_verify_retrains_bit_identical_here(stored, capsys):
    assert verify.main(["02_seed_exact_s0", "04_heatmap_s0", "--store", str(stored), "--no-progress",
                        "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.count(": identical") == 2
    assert "evaluations: " in out and "values on one side only" not in out
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
