"""The benchmark's quick mode runs and writes valid JSON (its speed is not asserted: CI machines vary)."""

import json
import subprocess
import sys

import pytest

from hwlib.config import REPO_ROOT, load_profile


@pytest.mark.slow
def test_quick_benchmark_writes_valid_json():
    r = subprocess.run([sys.executable, "-m", "hwlib.bench", "--quick", "--profile", "smoke"], cwd=REPO_ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    data = json.loads((load_profile("smoke").generated_dir / "benchmark.json").read_text())
    assert data["profile"] == "smoke" and data["quick"] is True
    for w in ("detector_train", "heatmap_train", "regression_train", "data_detection", "data_keypoint",
              "detector_infer", "evaluate_ap_1000", "evaluate_pck_10000"):
        entry = data[w]
        assert entry["fp32_eager_img_s"] > 0 and entry["best_img_s"] >= entry["fp32_eager_img_s"]
        assert entry["best_setting"] in entry["settings"]
    assert data["detector_train"]["gflop_per_img"] > 1.0
    assert data["peak"]["bf16_matmul_gflops"] > 0 and data["peak"]["fp32_matmul_gflops"] > 0
    assert set(data["time_to_accuracy"]) == {"detector_map50_0.85_s", "rf_aware_map50_0.95_s", "heatmap_pck05_0.95_s"}
    assert "cpu" in data["machine"]
    for w in ("detector_train", "heatmap_train"):                      # the profiler's breakdown of a step
        groups = data["profile_breakdown"][w]["groups"]
        assert abs(sum(groups.values()) - 1) < 1e-6 and groups["convolution"] > 0
    acc = data["accuracy_check"]                                         # fp32 against the default precision
    for key in ("detector_map50", "heatmap_pck05"):
        assert len(acc[key]["fp32_runs"]) == len(acc[key]["default_runs"]) == acc["seeds"]
        assert isinstance(acc[key]["within_noise"], bool)
