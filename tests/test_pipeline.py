"""The pipeline: parameter checks, stage keys, reproducibility of two smoke runs, and a run killed
mid-stage that leaves no partial output and resumes at the interrupted stage."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from hwlib.config import REPO_ROOT, load_profile
from hwlib.study.pipeline import check_parameters, notebooks, stage_keys

SMOKE = load_profile("smoke")


def test_unknown_notebook_parameter_is_an_error():
    nb = notebooks()[0]
    check_parameters(nb, {"profile": "smoke", "overrides": {}})
    with pytest.raises(ValueError, match=r"unknown parameter.*valid parameters: \['overrides', 'profile'\]"):
        check_parameters(nb, {"profile": "smoke", "epochs": 3})


def test_stage_keys_depend_on_parameters_and_chain():
    a = stage_keys("smoke", {"profile": "smoke"})
    b = stage_keys("smoke", {"profile": "smoke", "overrides": {"seed": 1}})
    assert list(a) == [nb.stem for nb in notebooks()]
    assert all(a[k] != b[k] for k in a)
    assert a == stage_keys("smoke", {"profile": "smoke"})


def _pipeline(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hwlib.pipeline", "--profile", "smoke", *args], cwd=REPO_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, **kw)


_TIMING = re.compile(r"seconds|per_second|_s$|_ms$|^machine$")


def _strip_timings(obj):
    if isinstance(obj, dict):
        return {k: _strip_timings(v) for k, v in obj.items() if not _TIMING.search(k)}
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return "nan"                                  # NaN != NaN: compare "not reached" as equal
    return obj


TIMING_RECORDS = {"pipeline.json", "benchmark.json"}   # stage times and speeds: timings by nature


def _generated():
    out = {}
    for p in sorted(SMOKE.generated_dir.glob("*.json")):
        if p.name in TIMING_RECORDS:
            continue
        out[p.name] = _strip_timings(json.loads(p.read_text()))
    return out


@pytest.mark.slow
def test_two_smoke_runs_give_identical_results():
    r = _pipeline("--force")
    assert r.returncode == 0, r.stdout[-3000:]
    first = _generated()
    r = _pipeline("--force")
    assert r.returncode == 0, r.stdout[-3000:]
    second = _generated()
    assert set(first) >= {"01_data_generation.json", "02_detector_training.json", "04_keypoint_training.json"}
    assert first == second
    # the second run printed an estimate from the first before its first stage, and recorded it per stage
    out = r.stdout
    assert "expected: about" in out and out.index("expected: about") < out.index("01_data_generation: running")
    record = json.loads((SMOKE.generated_dir / "pipeline.json").read_text())
    estimated = re.findall(r"^  (\d\d_\w+): about ", out, re.M)          # the stages the estimate announced ...
    ran = re.findall(r"^\[\d/\d\] (\d\d_\w+): running", out, re.M)     # ... are the stages that ran
    assert estimated == ran == list(record["stages"])
    assert all(record["estimates"][n] > 0 for n in ran) and set(record["estimate_error"]) == set(ran)
    assert record["one_machine"] is True
    assert {"cpu", "bf16_native", "threads", "precision"} <= set(record["stage_machines"]["02_detector_training"])


@pytest.mark.slow
def test_killed_run_leaves_no_partial_output_and_resumes():
    assert _pipeline("--force").returncode == 0          # a complete run to interrupt the next one against
    before = {p.name: p.read_bytes() for p in SMOKE.generated_dir.glob("*")}
    proc = subprocess.Popen([sys.executable, "-m", "hwlib.pipeline", "--profile", "smoke", "--from", "02"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "02_detector_training: running" in line:
            break
    time.sleep(3.0)                                      # in the middle of notebook 02
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    # every output is either as it was or complete: no temp files, every JSON parses
    outputs = list(SMOKE.generated_dir.glob("*")) + list(SMOKE.figures_dir.glob("*")) + list(SMOKE.run_dir.glob("*.pt"))
    assert not [p for p in outputs if p.name.endswith(".tmp")]
    for p in SMOKE.generated_dir.glob("*.json"):
        json.loads(p.read_text())
    assert set(before) <= {p.name for p in SMOKE.generated_dir.glob("*")}
    # the rerun keeps stage 01 and resumes at the interrupted stage 02
    r = _pipeline()
    assert r.returncode == 0, r.stdout[-3000:]
    assert "01_data_generation: up to date, skipped" in r.stdout
    assert "02_detector_training: running" in r.stdout


# ----------------------------------------------------------------------------- the time estimate
def _reference(probe_det=40.0, probe_kp=100.0, with_probe=True):
    stages = {"01_data_generation": 10.0, "02_detector_training": 600.0, "04_keypoint_training": 1200.0}
    machine = {"cpu": "Ref CPU", "bf16_native": True, "threads": 2, "precision": "bf16"}
    probe = {"detector_img_s": probe_det, "keypoint_img_s": probe_kp} if with_probe else None
    return {"stages": stages, "machine": machine, "stage_machines": {n: {**machine, "probe": probe} for n in stages}}


def test_estimate_scales_training_stages_by_the_probe_ratio():
    from hwlib.study.pipeline import estimate_stages

    names = ["01_data_generation", "02_detector_training", "04_keypoint_training", "05_ablations"]
    est, basis = estimate_stages(_reference(), {"detector_img_s": 10.0, "keypoint_img_s": 50.0}, names)
    assert est["01_data_generation"] == 10.0                       # data generation: not scaled
    assert est["02_detector_training"] == pytest.approx(600.0 * 4)  # 4x slower detector training
    assert est["04_keypoint_training"] == pytest.approx(1200.0 * 2)
    assert est["05_ablations"] is None                             # no reference time for it
    assert "scaled" in basis and "Ref CPU" in basis
    same, basis = estimate_stages(_reference(with_probe=False), {"detector_img_s": 10.0, "keypoint_img_s": 50.0}, names)
    assert same["02_detector_training"] == 600.0 and "unscaled" in basis


def test_stages_to_run_follow_the_keys_and_invalidate_later_stages():
    from hwlib.study.pipeline import _stages_to_run

    nbs = notebooks()
    names = [nb.stem for nb in nbs]
    keys = {n: f"k{i}" for i, n in enumerate(names)}
    state = {n: {"key": keys[n], "seconds": 1.0} for n in names}
    assert _stages_to_run(nbs, state, keys, None, None) == []
    state[names[2]]["key"] = "stale"
    assert _stages_to_run(nbs, state, keys, None, None) == names[2:]
    assert _stages_to_run(nbs, state, keys, "04", None) == names[3:]
    assert _stages_to_run(nbs, state, keys, None, "01") == names[:1]


def test_machines_sentence_says_when_stages_ran_on_different_machines():
    from hwlib.study.pipeline import machines_sentence

    a = {"cpu": "CPU A", "bf16_native": True, "threads": 2, "precision": "bf16"}
    b = {"cpu": "CPU B", "bf16_native": False, "threads": 2, "precision": "fp32"}
    one = machines_sentence({"stage_machines": {"01_x": a, "02_y": a}, "one_machine": True})
    assert one.startswith("Every stage ran on one machine") and "CPU A" in one
    two = machines_sentence({"stage_machines": {"01_x": a, "02_y": b}, "one_machine": False})
    assert "not all run on one" in two and "stage 02: CPU B" in two and "no native bf16" in two
    old = machines_sentence({"stage_machines": {"01_x": {"recorded": False}, "02_y": a}, "one_machine": False})
    assert "stage 01: machine not recorded" in old and "stage 02: CPU A" in old


def test_legacy_probe_comes_from_a_full_benchmark_only(tmp_path):
    from hwlib.study.pipeline import estimate_stages, legacy_probe

    assert legacy_probe(tmp_path) is None
    bench = {"quick": False, "machine": {"bf16_native": True},
             "detector_train": {"settings": {"fp32": 14.0, "bf16+channels_last+glibc": 49.0}},
             "heatmap_train": {"settings": {"fp32": 60.0, "bf16+channels_last+glibc": 150.0}}}
    (tmp_path / "benchmark.json").write_text(json.dumps(bench))
    probe = legacy_probe(tmp_path)
    assert probe["detector_img_s"] == 49.0 and probe["keypoint_img_s"] == 150.0 and probe["precision"] == "bf16"
    ref = {**_reference(with_probe=False), "_legacy_probe": probe}       # an old record: no probe of its own
    est, basis = estimate_stages(ref, {"detector_img_s": 24.5, "keypoint_img_s": 75.0}, ["02_detector_training"])
    assert est["02_detector_training"] == pytest.approx(1200.0) and "scaled" in basis
    (tmp_path / "benchmark.json").write_text(json.dumps({**bench, "quick": True}))   # quick: other batch sizes
    assert legacy_probe(tmp_path) is None


def test_machines_sentence_names_stages_not_rerun():
    from hwlib.study.pipeline import machines_sentence

    a = {"cpu": "CPU A", "bf16_native": True, "threads": 2, "precision": "bf16"}
    s = machines_sentence({"stage_machines": {"01_x": a, "02_y": a, "03_z": a}, "one_machine": True,
                           "up_to_date": {"01_x": True, "02_y": True, "03_z": False}})
    assert "Not rerun with the current code: stage 03 " in s
    s = machines_sentence({"stage_machines": {"01_x": a}, "one_machine": True, "up_to_date": {"01_x": True}})
    assert "Not rerun" not in s


def test_a_stage_whose_last_run_loaded_its_models_is_estimated_with_their_training(tmp_path):
    """The last run's notebook time is the estimate only where that run trained its models; where it loaded them
    (records' training seconds above its notebook seconds), the training is added back, then scaled."""
    from hwlib.study.pipeline import estimate_stages, recorded_training

    ref = {**_reference(), "_training": {"02_detector_training": 5000.0, "04_keypoint_training": 300.0}}
    probe = {"detector_img_s": 10.0, "keypoint_img_s": 50.0}
    est, _ = estimate_stages(ref, probe, ["02_detector_training", "04_keypoint_training"])
    assert est["02_detector_training"] == pytest.approx((600.0 + 5000.0) * 4)    # loaded: 600 s of notebook time
    assert est["04_keypoint_training"] == pytest.approx(1200.0 * 2)             # trained: its time as it was
    (tmp_path / "05_ablations.json").write_text(json.dumps(
        {"arms": {"a": {"train_seconds": [10.0, float("nan")]}, "b": {"train_seconds": [5.0]}}}))
    rec = recorded_training(tmp_path)
    assert rec["05_ablations"] == 15.0 and rec["04_keypoint_training"] == 0.0
