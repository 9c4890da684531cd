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
from hwlib.pipeline import check_parameters, notebooks, stage_keys

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


_TIMING = re.compile(r"seconds|per_second|_s$|^machine$")


def _strip_timings(obj):
    if isinstance(obj, dict):
        return {k: _strip_timings(v) for k, v in obj.items() if not _TIMING.search(k)}
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
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
