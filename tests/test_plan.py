"""hwlib.study.plan / stages status: each set's plan lists exactly the runs its training asks the store for."""

import json

import pytest

from hwlib.study import stages
from hwlib.config import load_profile
from hwlib.study.obtain import _as_store
from hwlib.study.plan import PlannedRun, status


@pytest.mark.slow
@pytest.mark.parametrize("stage, arms", [("part1-headline", None), ("part1-arms", ["baseline", stages.BEST_ANCHOR]),
                                         ("part1-any-size", None), ("part2-methods", None),
                                         ("part2-ablations", [stages.ABLATION_BASE, stages.ABLATION_LONGER])])
def test_a_trained_set_has_every_planned_run_stored(stage, arms, tmp_path, monkeypatch):
    """Brute force: train the set at smoke into a scratch store, then its plan finds every run stored, none stale
    or missing; a plan that asked for another config (or forgot a ceiling run) would not."""
    monkeypatch.setattr("hwlib.config.Profile.run_dir", property(lambda self: tmp_path / self.name))
    P = load_profile("smoke")
    plan = [r for r in stages.planned_runs(P, stage) if arms is None or r.name.rsplit("_s", 1)[0] in arms
            or r.name.rsplit("_x2_s", 1)[0] in arms]
    store = _as_store(P.store)
    before = status(plan, store)
    assert len(before["missing"]) == len({r.key("") for r in plan}) > 0     # one training asked for twice: once
    stages.STAGES[stage][2](P, arms)
    after = status(plan, store)
    assert not after["missing"] and not after["stale"]
    # every run the training wrote is one the plan names (nothing trained that the plan does not count)
    keys = {r.key(c) for r in plan for c in {rec.data["code"] for rec in store.records()}}
    assert {rec.key for rec in store.records()} <= keys


def test_status_counts_one_run_asked_for_twice_once_and_prints_a_table(tmp_path, monkeypatch, capsys):
    P = load_profile("smoke")
    plan = stages.planned_runs(P, "part2-ablations")
    longer = [r for r in plan if r.name.startswith(stages.ABLATION_LONGER)]
    ceiling = [r for r in plan if "_x2_s" in r.name]
    assert longer and {r.key("c") for r in longer} == {r.key("c") for r in ceiling}   # one training, two names
    monkeypatch.setattr("hwlib.config.Profile.run_dir", property(lambda self: tmp_path / self.name))
    monkeypatch.setattr("hwlib.study.plan.probe", lambda run, seconds=3.0, precision="auto": 100.0)
    assert stages.main(["status", "--profile", "smoke", "part2-ablations", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "part2-ablations" in out and "hours left" in out
    st = json.loads((tmp_path / "s.json").read_text())
    n = len({r.key("c") for r in plan})
    assert st["sets"]["part2-ablations"]["missing"] == n == st["total"]["runs"]
    images = sum(r.images for r in {r.key("c"): r for r in plan}.values())
    assert st["total"]["hours_left"] == pytest.approx(images / 100.0 / 3600)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{stages.README_BEGIN}\nold\n{stages.README_END}\n\nrest\n")
    stages.write_readme_status(st, readme)
    text = readme.read_text()
    assert "old" not in text and "| `part2-ablations` | " in text and text.endswith("rest\n")


def test_a_planned_run_knows_its_images_and_model():
    P = load_profile("cpu")
    r = PlannedRun("keypoint", "regression", "x", P.keypoint, 0)
    assert r.steps == P.keypoint.regression_steps and r.images == r.steps * P.keypoint.batch_size
    assert r.model()[:2] == ("keypoint", "regression")
