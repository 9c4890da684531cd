"""hwlib.study.stages: the training sets a notebook asks for, callable without it (no training in these tests)."""

import json
from pathlib import Path

import pytest

from hwlib.study import stages
from hwlib.config import load_profile

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_list_names_every_set_and_its_arms(capsys):
    assert stages.main(["list", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "part1-arms:" in out and "part2-ablations:" in out
    assert stages.BEST_ANCHOR in out and stages.ABLATION_BASE in out and "MSE, sigma 4" in out


def test_an_unknown_arm_is_refused_before_anything_trains(capsys):
    assert stages.main(["train", "part1-arms", "--profile", "smoke", "--arms", "no such arm"]) == 2
    assert "unknown arm" in capsys.readouterr().err


def test_arm_sets_follow_the_ablation_setting():
    P = load_profile("cpu")
    part1 = stages.part1_arm_overrides(P.det_ablation)
    assert part1["S2 [48,56,72]"]["anchors"][0] == P.det_ablation.anchors[0]     # only S2 changes
    assert stages.part2_arm_overrides(P.kp_ablation)[stages.ABLATION_LONGER] == {"steps": 2 * P.kp_ablation.steps}


def test_the_notebooks_train_through_the_stages():
    """One definition of each set: the notebooks call the stage functions, they do not repeat the arms."""
    calls = {"02_detector_training.ipynb": ["stages.headline_detectors(P)"],
             "03_scale_specialization.ipynb": ["stages.part1_arms(P)", "stages.any_size_probe(P)",
                                               "stages.any_size_detectors(P)", "stages.class_tied_on_any_size(P)"],
             "04_keypoint_training.ipynb": ["stages.keypoint_methods(P)"],
             "05_ablations.ipynb": ["stages.part2_ablations(P)"],
             "06_failure_cases.ipynb": ["stages.keypoint_methods(P)"]}
    for nb, wanted in calls.items():
        src = "".join("".join(c["source"]) for c in json.loads((NOTEBOOKS / nb).read_text())["cells"])
        for call in wanted:
            assert call in src, (nb, call)
        assert '"assignment": "best_anchor"' not in src and '"heatmap_loss": "mse"' not in src, nb
        assert "run_keypoint_methods(" not in src and "run_keypoint_arms(" not in src, nb


def test_a_set_trained_whole_refuses_arms(capsys):
    for stage in ("part1-headline", "part1-any-size", "part2-methods"):
        assert stages.main(["train", stage, "--profile", "smoke", "--arms", "x"]) == 2
        assert "trained whole" in capsys.readouterr().err


def test_under_shards_the_run_s_own_shard_makes_its_analyses(monkeypatch):
    from types import SimpleNamespace

    from hwlib.study import obtain

    runs = SimpleNamespace(stored={("a", 0): SimpleNamespace(key="0" * 64), ("b", 0): None})
    monkeypatch.delenv(obtain.SHARD_ENV, raising=False)
    assert stages._own(runs, "a", 0)
    owner = obtain.shard_of("0" * 64, 2)
    monkeypatch.setenv(obtain.SHARD_ENV, f"{owner}/2")
    assert stages._own(runs, "a", 0) and stages._own(runs, "b", 0)      # no store record: nothing to split
    monkeypatch.setenv(obtain.SHARD_ENV, f"{1 - owner}/2")
    assert not stages._own(runs, "a", 0)


def test_best_anchor_tests_are_paired_with_the_best_anchor_arm_per_class():
    from types import SimpleNamespace

    from hwlib.study.results import Record

    def rec(maps, squares):
        return Record([0, 1, 2], [{"map_standard": m, "map_seed": 0.0, "ap_standard": {"circle": 0.0, "square": q},
                                   "ap_seed": {"circle": 0.0, "square": 0.0}} for m, q in zip(maps, squares)],
                      [1.0] * 3, [1] * 3)

    runs = SimpleNamespace(records={stages.BEST_ANCHOR: rec([0.05, 0.05, 0.05], [0.0, 0.0, 0.0]),
                                    stages.BEST_ANCHOR_DEEP: rec([0.13, 0.14, 0.12], [0.04, 0.04, 0.03]),
                                    "baseline": rec([0.9, 0.9, 0.9], [0.98, 0.98, 0.98])})
    out = stages.best_anchor_tests(runs)
    assert list(out) == [stages.BEST_ANCHOR_DEEP]
    d = out[stages.BEST_ANCHOR_DEEP].paired_diff
    assert d["map_standard"]["mean"] == pytest.approx(0.08)
    assert d["ap_standard"]["square"]["mean"] == pytest.approx(0.11 / 3)
    assert stages.best_anchor_tests(SimpleNamespace(records={})) == {}
