"""Experiment helpers: summaries over seeds, and arms that reuse a model trained elsewhere."""

import dataclasses
import math

import pytest

from hwlib.config import load_profile
from hwlib.experiments import run_detector_arms, summarize, train_detector

SMOKE = load_profile("smoke")


def test_summarize_means_stds_and_seed_count_only_at_the_top():
    runs = [{"map": 0.5, "ap": {"circle": 0.4, "square": 0.6}, "tp": [1, 2]},
            {"map": 0.7, "ap": {"circle": 0.6, "square": 0.8}, "tp": [3, 4]}]
    s = summarize(runs)
    assert s["map"] == pytest.approx(0.6) and s["map_std"] == pytest.approx(math.sqrt(0.02))
    assert s["ap"] == pytest.approx({"circle": 0.5, "square": 0.7})
    assert s["ap_std"]["circle"] == pytest.approx(math.sqrt(0.02))
    assert s["tp"] == [2.0, 3.0] and s["seeds"] == 2
    assert "seeds" not in s["ap"] and "seeds" not in s["ap_std"]


def test_pretrained_arm_is_evaluated_not_retrained(tmp_path):
    cfg = SMOKE.det_ablation
    _, hist = train_detector(cfg, seed=0, run_dir=tmp_path, name="given", precision="fp32", progress=False)
    summary, per_run = run_detector_arms(cfg, {"arm": {}}, 1, run_dir=tmp_path / "arms",
                                         pretrained={("arm", 0): tmp_path / "given.pt"}, precision="fp32", progress=False)
    assert not (tmp_path / "arms").exists(), "nothing was trained"
    assert per_run["arm"][0]["train_seconds"] == pytest.approx(hist.train_seconds)
    assert per_run["arm"][0]["map_standard"] == pytest.approx(hist.evals[-1]["map_standard"])
    other = dataclasses.replace(cfg, head="dilated")
    with pytest.raises(ValueError, match="another config"):
        run_detector_arms(other, {"arm": {}}, 1, pretrained={("arm", 0): tmp_path / "given.pt"}, precision="fp32",
                          progress=False)
