"""The benchmark: which settings a CPU kind measures, and the quick mode end to end on the no-native-bf16
path that an AVX2-only CPU takes (forced with HWLIB_BF16_NATIVE=0, so the test is the same on every CPU).
Speeds are not asserted: CI machines vary."""

import json
import os
import subprocess
import sys

import pytest

from hwlib.bench import SETTINGS, bench_settings
from hwlib.config import REPO_ROOT, load_profile
from hwlib.train import BF16_ENV, bf16_native, cpu_flags, cpu_kind, resolve_precision


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("group", ["default", "glibc"])
def test_no_native_bf16_measures_no_bf16_setting(quick, group):
    settings, skipped = bench_settings(False, quick, group)
    assert settings and all(prec == "fp32" for _, prec, _ in settings)
    assert set(skipped) == {"bf16", "bf16+channels_last"} and all("native bf16" in why for why in skipped.values())
    assert settings[0][0] == "fp32"                       # the baseline every speed-up is measured against


@pytest.mark.parametrize("quick", [False, True])
def test_native_bf16_measures_bf16_and_skips_nothing(quick):
    settings, skipped = bench_settings(True, quick, "default")
    assert skipped == {} and [s[0] for s in settings] == [s[0] for s in SETTINGS]
    settings, _ = bench_settings(True, quick, "glibc")
    names = [s[0] for s in settings]
    assert names[0] == "fp32" and "bf16+channels_last" in names
    assert len(names) == (2 if quick else len(SETTINGS))


def test_forcing_no_native_bf16_takes_the_fp32_path(monkeypatch):
    import torch

    monkeypatch.setenv(BF16_ENV, "0")
    assert not bf16_native() and cpu_kind() == "fp32-only"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.delenv(BF16_ENV)
    assert (cpu_kind() == "fp32-only") == (not {"avx512_bf16", "amx_bf16"} & cpu_flags())


@pytest.mark.slow
def test_quick_benchmark_on_the_fp32_path_writes_valid_json():
    env = {**os.environ, BF16_ENV: "0"}
    r = subprocess.run([sys.executable, "-m", "hwlib.bench", "--quick", "--profile", "smoke"], cwd=REPO_ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:]
    data = json.loads((load_profile("smoke").generated_dir / "benchmark.json").read_text())
    assert data["profile"] == "smoke" and data["quick"] is True
    assert data["cpu_kind"] == "fp32-only" and data["bf16_native"] is False
    assert set(data["skipped"]) == {"bf16", "bf16+channels_last"}
    for w in ("detector_train", "heatmap_train", "regression_train"):
        entry = data[w]
        assert not any("bf16" in s for s in entry["settings"]), entry["settings"]   # nothing emulated was timed
        assert entry["fp32_eager_img_s"] == entry["settings"]["fp32"] > 0
        assert entry["best_img_s"] == max(entry["settings"].values())
        assert entry["speedup"] == pytest.approx(entry["best_img_s"] / entry["fp32_eager_img_s"])
        assert "channels_last+glibc" in entry["settings"]                 # the allocator worker ran too
    for w in ("data_detection", "data_keypoint", "detector_infer", "evaluate_ap_1000", "evaluate_pck_10000"):
        assert data[w]["best_img_s"] > 0
    assert data["detector_train"]["gflop_per_img"] > 1.0
    assert data["peak_used"] == "fp32" and "bf16_matmul_gflops" not in data["peak"]
    assert 0 < data["detector_train"]["share_of_peak"]
    assert set(data["time_to_accuracy"]) == {"detector_map50_0.85_s", "rf_aware_map50_0.95_s", "heatmap_pck05_0.95_s"}
    assert "cpu" in data["machine"] and data["machine"]["bf16_native"] is False
    for w in ("detector_train", "heatmap_train"):                      # the profiler's breakdown of a step
        groups = data["profile_breakdown"][w]["groups"]
        assert abs(sum(groups.values()) - 1) < 1e-6 and groups["convolution"] > 0
        assert data["profile_breakdown"][w]["precision"] == "fp32"
    assert "skipped" in data["accuracy_check"]                         # default == fp32: nothing to compare
