"""The training-recipe study (hwlib.study.recipe): images to the goal from validation curves, records per arm."""

import math

import pytest

from hwlib.study import recipe


@pytest.fixture
def tiny(monkeypatch):
    """A heatmap study at the smoke profile: 4 steps, validated every 2; one goal every model reaches at its
    first evaluation (0), one none can reach (above 1)."""
    tasks = {
        "heatmap": {"metric": "pck_0.05", "goal": 0.0, "model": "heatmap", "base": {"steps": 4, "eval_every": 2},
                    "arms": {"base": {}, "batch 8": {"batch_size": 8}}},
        "regression": {"metric": "pck_0.05", "goal": 1.5, "model": "regression",
                       "base": {"steps": 4, "regression_steps": 4, "eval_every": 2}, "arms": {"base": {}}},
    }
    monkeypatch.setattr(recipe, "RECIPES", tasks)
    return tasks


def test_images_to_goal_is_the_first_validated_step_times_the_batch(tiny, tmp_path):
    records, hists = recipe.run_recipe("heatmap", seeds=2, run_dir=tmp_path, profile="smoke", progress=False)
    assert set(records) == {"base", "batch 8"}
    for arm, batch in (("base", 16), ("batch 8", 8)):          # the smoke profile's keypoint batch is 16
        r = records[arm].to_json()
        assert r["seeds"] == [0, 1] and r["train_images"] == [4 * batch] * 2
        assert r["per_seed"]["images_to_goal"] == [2 * batch] * 2        # reached at the first evaluation (step 2)
        assert [e["step"] for e in hists[arm][0].evals] == [2, 4]
        assert r["per_seed"]["final"] == [h.evals[-1]["pck_0.05"] for h in hists[arm]]
        assert r["plateau"]["reached"] in (True, False)
    # a resumed study loads the finished runs instead of training them again
    again, _ = recipe.run_recipe("heatmap", arms=["base"], seeds=2, run_dir=tmp_path, profile="smoke", progress=False)
    assert again["base"].to_json()["per_seed"] == records["base"].to_json()["per_seed"]


def test_seed_ids_train_those_seeds_streams_only(tiny, tmp_path):
    """``seeds=[1]`` trains seed 1 alone (the stream of one headline seed) and records it as seed 1: its run is the
    very run that ``seeds=2`` trains as its second seed, so the two studies share it."""
    one, hists = recipe.run_recipe("heatmap", arms=["base"], seeds=[1], run_dir=tmp_path, profile="smoke",
                                   progress=False)
    r = one["base"].to_json()
    assert r["seeds"] == [1] and len(r["per_seed"]["final"]) == 1 and len(hists["base"]) == 1
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["heatmap_base_s1.pt"]
    both, _ = recipe.run_recipe("heatmap", arms=["base"], seeds=2, run_dir=tmp_path, profile="smoke", progress=False)
    assert both["base"].to_json()["per_seed"]["final"][1] == r["per_seed"]["final"][0]
    for bad in ([], [1, 1], [-1]):
        with pytest.raises(ValueError, match="seeds must be"):
            recipe.run_recipe("heatmap", arms=["base"], seeds=bad, run_dir=tmp_path, profile="smoke")


def test_a_goal_never_reached_is_nan_and_the_table_says_so(tiny, tmp_path):
    records, _ = recipe.run_recipe("regression", seeds=1, run_dir=tmp_path, profile="smoke", progress=False)
    r = records["base"].to_json()
    assert math.isnan(r["per_seed"]["images_to_goal"][0])
    header, rows = recipe.recipe_table({"profile": "smoke", "regression": {"arms": {"base": r}}})
    assert rows[0][2] == "0/1" and len(header) == len(rows[0])


def test_unknown_task_or_arm():
    with pytest.raises(ValueError, match="task must be one of"):
        recipe.run_recipe("nope")
    with pytest.raises(ValueError, match="unknown heatmap arms"):
        recipe.run_recipe("heatmap", arms=["nope"])
    assert recipe.main(["--task", "heatmap", "--arms", "nope", "--profile", "smoke"]) == 2


def test_cli_writes_record_table_and_figure_and_keeps_other_arms(tiny, tmp_path):
    import json

    out, runs = tmp_path / "out", tmp_path / "runs"
    common = ["--task", "heatmap", "--seeds", "1", "--profile", "smoke", "--run-dir", str(runs), "--out", str(out)]
    assert recipe.main(common + ["--arms", "base"]) == 0
    assert recipe.main(common + ["--arms", "batch 8"]) == 0
    res = json.loads((out / "recipe.json").read_text())
    assert set(res["heatmap"]["arms"]) == {"base", "batch 8"}                # the second run kept the first arm
    assert "paired_diff" in res["heatmap"]["arms"]["batch 8"]                 # run alone, still paired with the base
    curves = json.loads((out / "recipe_curves.json").read_text())["heatmap"]
    assert curves["batch 8"]["batch"] == 8 and curves["base"]["batch"] == 16  # x axis in images, per arm's batch
    table = (out / "recipe_table.tex").read_text()
    assert "batch_size" not in table and "batch 8 & 32 & 1/1" in table     # 4 steps x batch 8: 32 images; no bare underscore
    assert (out / "recipe_curves.pdf").exists() and (out / "recipe.tex").exists()
    # --redraw rebuilds table and figure from the JSON alone: nothing is trained (the run folder may be gone)
    for p in runs.rglob("*"):
        if p.is_file():
            p.unlink()
    (out / "recipe_table.tex").unlink()
    (out / "recipe_curves.pdf").unlink()
    assert recipe.main(["--redraw", "--profile", "smoke", "--out", str(out)]) == 0
    assert (out / "recipe_table.tex").read_text() == table and (out / "recipe_curves.pdf").exists()
    assert not [p for p in runs.rglob("*") if p.is_file()]
    with pytest.raises(SystemExit):
        recipe.main(["--profile", "smoke"])                                  # neither --task nor --redraw


def test_arm_labels_use_the_readers_words():
    assert recipe.arm_label("first-round arm setting (width 0.5)") == "initial arm setting (width 0.5)"
    assert recipe.arm_label("profile (lr 4e-3, batch 32)") == "initial (lr 4e-3, batch 32)"
    assert recipe.arm_label("batch 8, 400 steps, anchor_t 3") == "batch 8, 400 steps, side ratio 3"
    assert set(recipe.TASK_TITLES) >= set(recipe.RECIPES)                    # every task has a printed title
    for arms in (r["arms"] for r in recipe.RECIPES.values()):
        assert not [a for a in map(recipe.arm_label, arms) if "_" in a or "first-round" in a or "profile" in a]


def test_an_arm_is_paired_with_its_named_control(tiny, tmp_path):
    tiny["heatmap"]["arms"]["batch 8, lr 1e-3"] = {"batch_size": 8, "lr": 1e-3, "vs": "batch 8"}
    assert recipe.control_of("heatmap", "batch 8, lr 1e-3") == "batch 8"
    assert recipe.control_of("heatmap", "batch 8") == "base" == recipe.control_of("heatmap", "base")
    assert recipe.arm_config("heatmap", "batch 8, lr 1e-3", recipe.base_config("heatmap", "smoke")).lr == 1e-3
    # asked for alone, it brings its control and the control's control, and is paired with its own
    records, _ = recipe.run_recipe("heatmap", arms=["batch 8, lr 1e-3"], seeds=2, run_dir=tmp_path, profile="smoke",
                                   progress=False)
    assert list(records) == ["base", "batch 8", "batch 8, lr 1e-3"]
    r, c = (records[a].to_json() for a in ("batch 8, lr 1e-3", "batch 8"))
    diffs = [a - b for a, b in zip(r["per_seed"]["final"], c["per_seed"]["final"])]
    assert r["paired_diff"]["final"]["mean"] == pytest.approx(sum(diffs) / 2)
    header, rows = recipe.recipe_table({"heatmap": {"arms": {a: x.to_json() for a, x in records.items()}}})
    assert rows[2][0] == "heatmap: batch 8, lr 1e-3" and rows[2][-1].endswith("\\\\vs batch 8\\end{tabular}")
    assert "vs" not in rows[1][-1]                                           # paired with the first arm: no note


def test_a_control_that_is_not_an_arm_is_refused(tiny):
    tiny["heatmap"]["arms"]["lost"] = {"lr": 1e-3, "vs": "nope"}
    with pytest.raises(ValueError, match="not an arm of heatmap"):
        recipe.control_of("heatmap", "lost")
    assert recipe.main(["--task", "heatmap", "--arms", "lost", "--profile", "smoke"]) == 2


def test_runs_trained_one_by_one_elsewhere_join_the_study_without_their_weights(tiny, tmp_path):
    """``--train`` trains one run and records it in the run store; a run counts from its store file alone (trained on
    a GPU, weights left there: merging is copying files), and the record names a device that is not a CPU. Without a
    store file, the two JSON files written beside a checkpoint still count."""
    import json
    import shutil

    runs, out = tmp_path / "runs", tmp_path / "out"
    for s in (0, 1):
        assert recipe.main(["--task", "heatmap", "--train", "batch 8", "--seed", str(s), "--profile", "smoke",
                            "--run-dir", str(runs), "--out", str(out)]) == 0
    assert not out.exists() and not (runs / "heatmap_base_s0.json").exists()      # no control, no record written
    stored = sorted((runs / "store").glob("heatmap_batch_8_s*.json"))
    assert len(stored) == 2
    elsewhere = tmp_path / "elsewhere"                                             # the GPU machine's copy
    shutil.move(str(runs), str(elsewhere))
    (runs / "store").mkdir(parents=True)
    for f in (elsewhere / "store").glob("*.json"):                                 # only the store files come back
        data = json.loads(f.read_text())
        assert data["device"] == "cpu" and data["history"]["device"] == "cpu"      # where it trained
        data["history"]["device"] = data["device"] = "cuda: Some GPU"
        (runs / "store" / f.name).write_text(json.dumps(data))
    h0 = recipe.recorded_history("heatmap", "batch 8", 0, runs, "smoke")
    assert h0 is not None and h0.device == "cuda: Some GPU"
    assert recipe.recorded_history("heatmap", "base", 0, runs, "smoke") is None    # never trained
    records, _ = recipe.run_recipe("heatmap", arms=["batch 8"], seeds=2, run_dir=runs, profile="smoke", progress=False)
    assert not (runs / "heatmap_batch_8_s0.pt").exists()                           # read from the store, not retrained
    assert records["batch 8"].setting.endswith("trained on cuda: Some GPU")
    assert "trained on" not in records["base"].setting                             # the control trained on a CPU
    # no store file: the JSON files beside a checkpoint, only where they are this arm's finished run
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for suffix in (".json", ".history.json"):
        shutil.copy(elsewhere / f"heatmap_batch_8_s0{suffix}", legacy / f"heatmap_batch_8_s0{suffix}")
    assert recipe.recorded_history("heatmap", "batch 8", 0, legacy, "smoke") is not None
    side, hist = legacy / "heatmap_batch_8_s0.json", legacy / "heatmap_batch_8_s0.history.json"
    meta, log = json.loads(side.read_text()), json.loads(hist.read_text())
    for bad_meta, bad_log in (({**meta, "config": {"batch_size": 4}}, log), ({**meta, "model": "RegressionNet"}, log),
                              ({**meta, "extra": {**meta["extra"], "step": 2}}, log),
                              (meta, {**log, "evals": log["evals"][:1]})):
        side.write_text(json.dumps(bad_meta))
        hist.write_text(json.dumps(bad_log))
        assert recipe.recorded_history("heatmap", "batch 8", 0, legacy, "smoke") is None
    assert recipe.main(["--task", "heatmap", "--train", "nope", "--profile", "smoke", "--run-dir", str(runs)]) == 2


def test_setting_names_the_options_an_arm_turns_on():
    """A record's setting says which keypoint options its arm turns on, so two arms never read alike."""
    from dataclasses import replace

    from hwlib.config import KeypointConfig

    cfg = KeypointConfig(steps=10, regression_steps=20, batch_size=4, lr=1e-3, coord_channels=True)
    assert recipe._setting(cfg, "regression") == "20 steps x batch 4, lr 0.001, warm-up 50, EMA 0, CoordConv"
    assert recipe._setting(cfg, "heatmap") == "10 steps x batch 4, lr 0.001, warm-up 50, EMA 0"
    assert recipe._setting(replace(cfg, ohkm=2), "heatmap").endswith("EMA 0, OHKM 2")


def test_a_detector_study_on_the_arms_config():
    """The ``arms`` task trains notebook 03's detector (``det_ablation``), not a keypoint model: its configs are
    detector configs, its steps are the detector's, its checkpoints hold the detector class."""
    base = recipe.base_config("arms", "cpu")
    assert type(base).__name__ == "DetectorConfig" and base.width == 0.5 and base.balanced_classes
    cfg = recipe.arm_config("arms", "width 1.0, batch 8, 800 steps", base)
    assert (cfg.width, cfg.batch_size, cfg.steps) == (1.0, 8, 800)
    assert recipe._steps(cfg, "arms") == 800 and recipe._model_class("arms") == recipe._model_class("detector")
    assert recipe._setting(cfg, "arms").startswith("800 steps x batch 8, lr 0.002")


def test_the_detector_study_keeps_the_data_and_batch_it_began_with():
    """The detector recipe runs were trained at batch 16 on the first round's data; the profile has moved on (batch 8,
    balanced classes), and the study's base pins what its runs used so that they stay valid."""
    base = recipe.base_config("detector", "cpu")
    assert (base.batch_size, base.balanced_classes, base.steps) == (16, False, 200)


def test_range_schedule_rises_geometrically_to_the_peak():
    from hwlib.vision.train import RANGE_DECADES, lr_at

    lrs = [lr_at(s, 9, 0.5, warmup=3, schedule="range") for s in range(9)]      # warm-up plays no part
    assert lrs[0] == pytest.approx(0.5 * 10.0 ** -RANGE_DECADES) and lrs[-1] == pytest.approx(0.5)
    assert all(b / a == pytest.approx(10.0 ** (RANGE_DECADES / 8)) for a, b in zip(lrs, lrs[1:]))


def test_range_summary_by_hand():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    r = recipe.range_summary(lrs, [4.0, 3.0, 2.0, 1.0, 5.0, 50.0], smoothing=0.0)   # no smoothing: the losses
    assert r["smoothed"] == [4.0, 3.0, 2.0, 1.0, 5.0, 50.0]
    assert r["min_loss_lr"] == 1e-1 and r["suggested_lr"] == pytest.approx(1e-2)
    assert r["diverged_lr"] == 1.0                                    # 5 > 4 x the running minimum 1
    # a later, lower loss after divergence does not count
    r = recipe.range_summary(lrs, [4.0, 3.0, 2.0, 1.0, 5.0, 0.5], smoothing=0.0)
    assert r["min_loss_lr"] == 1e-1 and r["diverged_lr"] == 1.0
    # smoothing 0.5, bias-corrected: averages 0.5*2 = 1 and 0.5*1 + 0.5*4 = 2.5, divided by 1 - 0.5 and 1 - 0.25
    r = recipe.range_summary([1.0, 2.0], [2.0, 4.0], smoothing=0.5)
    assert r["smoothed"] == pytest.approx([2.0, 2.5 / 0.75])
    assert recipe.range_summary([1.0, 2.0, 3.0], [3.0, 2.0, 2.5], smoothing=0.0, nonfinite_lr=4.0)["diverged_lr"] == 4.0
    with pytest.raises(ValueError, match="one loss per rate"):
        recipe.range_summary([1.0, 2.0], [1.0])


def test_lr_range_test_runs_the_sweep_and_reads_it(tmp_path):
    r = recipe.lr_range_test("detector", "sgd", steps=5, profile="smoke")
    assert len(r["lr"]) == len(r["loss"]) == 5 and r["batch_size"] == recipe.base_config("detector", "smoke").batch_size
    assert r["lr"][-1] == pytest.approx(recipe.LR_RANGE_MAX["sgd"]) and r["lr"] == sorted(r["lr"])
    assert r["suggested_lr"] == pytest.approx(r["min_loss_lr"] / 10) and r["min_loss_lr"] in r["lr"]
    assert recipe.main(["--task", "regression", "--lr-range", "adamw", "--range-steps", "4", "--profile", "smoke",
                        "--out", str(tmp_path)]) == 0
    assert (tmp_path / "recipe_lr_range.pdf").exists() and (tmp_path / "recipe_lr_range.json").exists()
    import json

    stored = json.loads((tmp_path / "recipe.json").read_text())["lr_range"]["regression"]["adamw"]
    assert stored["steps"] == 4 and stored["suggested_lr"] > 0 and "lr" not in stored     # the curve lives beside it
    curve = json.loads((tmp_path / "recipe_lr_range.json").read_text())["regression"]["adamw"]
    # the sweep replaced the regression model's own steps and rate: 4 steps, ending at the sweep's top
    assert len(curve["loss"]) == 4 and curve["lr"][-1] == pytest.approx(recipe.LR_RANGE_MAX["adamw"])
    assert stored["arm"] == "base"
    assert recipe.main(["--task", "detector", "--lr-range", "sgd", "--arms", "no such arm", "--profile", "smoke",
                        "--out", str(tmp_path)]) == 2
