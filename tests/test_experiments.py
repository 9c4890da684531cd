"""The experiment layer: records (SPEC §7) built from trained models, arms paired with their baseline,
and the decoding registry that every keypoint result key comes from."""

import dataclasses
import math

import numpy as np
import pytest
import torch

import hwlib.vision.keypoints as kp
from hwlib.config import KEYPOINT_NAMES, load_profile
from hwlib.study.keypointing import decoding_metrics, keypoint_metrics, predict_keypoints
from hwlib.study.arms import run_detectors, run_keypoint_arms, run_keypoint_methods
from hwlib.study.splits import split_seed
from hwlib.vision.metrics import pck

SMOKE = load_profile("smoke")
RECORD_KEYS = {"seeds", "per_seed", "mean", "std", "ci95", "plateau", "train_seconds", "train_images"}


def test_run_detectors_records_pairs_and_decode_arms(tmp_path):
    cfg = dataclasses.replace(SMOKE.det_ablation, steps=2)
    runs = run_detectors(cfg, {"baseline": {}, "wide nms": {"nms_iou": 0.7}}, 2, run_dir=tmp_path, n_eval=8,
                         decode_arms={"S3 conf 0.7": ("baseline", {"s3_conf": 0.7})}, setting="tiny",
                         precision="fp32", progress=False)
    rec = runs.to_json()
    assert set(rec) == {"baseline", "wide nms", "S3 conf 0.7"}
    for name, r in rec.items():
        assert RECORD_KEYS <= set(r) and r["seeds"] == [0, 1] and r["setting"] == "tiny"
        assert r["train_images"] == [cfg.steps * cfg.batch_size] * 2
        assert set(r["mean"]["ap_standard"]) == {"circle", "square", "triangle"}
        assert np.asarray(r["mean"]["tp_share_seed"]).shape == (3, 3)
        assert ("paired_diff" in r) == (name != "baseline")
    # a decode-only arm re-uses the baseline's models: nothing trained for it, same training seconds
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["baseline_s0.pt", "baseline_s1.pt", "wide nms_s0.pt",
                                                               "wide nms_s1.pt"]
    assert rec["S3 conf 0.7"]["train_seconds"] == rec["baseline"]["train_seconds"]
    # paired difference = mean of per-seed differences (seed s with seed s)
    d = np.subtract(rec["wide nms"]["per_seed"]["map_standard"], rec["baseline"]["per_seed"]["map_standard"])
    assert rec["wide nms"]["paired_diff"]["map_standard"]["mean"] == pytest.approx(d.mean())
    # the S3 cut is the seed's proposal for its protocol: the standard protocol keeps every box, so the
    # decode arm's standard mAP is the baseline's exactly, and its difference there is 0
    assert rec["S3 conf 0.7"]["per_seed"]["map_standard"] == rec["baseline"]["per_seed"]["map_standard"]
    assert rec["S3 conf 0.7"]["paired_diff"]["map_standard"]["mean"] == 0
    # evaluation on the held-out test split
    assert runs.images.shape[0] == 8
    with pytest.raises(ValueError, match="val.*test"):
        split_seed("train")


def test_run_detectors_validates_other_seeds_at_quarters(tmp_path):
    """With ``validate_seeds=1`` seed 0 draws the curve (every ``eval_every`` steps) and seed 1 is validated at each
    quarter of the schedule, so the plateau verdict counts both seeds."""
    cfg = dataclasses.replace(SMOKE.det_ablation, steps=4, eval_every=1, n_val=4)
    runs = run_detectors(cfg, {"baseline": {}}, 2, run_dir=tmp_path, n_eval=4, validate=True, validate_seeds=1,
                         precision="fp32", progress=False)
    dense, quarters = runs.histories["baseline"]
    assert [e["step"] for e in dense.evals] == [1, 2, 3, 4] and [e["step"] for e in quarters.evals] == [1, 2, 3, 4]
    cfg8 = dataclasses.replace(cfg, steps=8)
    runs = run_detectors(cfg8, {"baseline": {}}, 2, run_dir=tmp_path, n_eval=4, validate=True, validate_seeds=1,
                         precision="fp32", progress=False)
    dense, quarters = runs.histories["baseline"]
    assert len(dense.evals) == 8 and [e["step"] for e in quarters.evals] == [2, 4, 6, 8]
    assert "validated seeds" not in runs.to_json()["baseline"]["plateau"]["criterion"]     # both seeds count


def _fake_outputs(n=4, seed=0):
    """Raw detector outputs ``(P1, P2, P3)`` of an untrained-looking head: random logits, objectness high enough
    that many boxes of every head pass the seed's 0.5 cut."""
    g = torch.Generator().manual_seed(seed)
    outs = []
    for size in (56, 28, 14):
        o = torch.randn(n, 3, 8, size, size, generator=g)
        o[:, :, 4] += 1.0
        outs.append(o.reshape(n, 24, size, size))
    return tuple(outs)


def test_s3_cut_applies_to_the_seed_protocol_only():
    from hwlib.config import DetectorConfig
    from hwlib.study.detection import decode_detector_outputs

    out = _fake_outputs()
    plain, cut = DetectorConfig(), DetectorConfig(s3_conf=0.9)
    for conf in (None, 0.001):            # standard protocol: identical with and without the S3 cut
        a, b = decode_detector_outputs(out, plain, conf), decode_detector_outputs(out, cut, conf)
        assert all(torch.equal(x["scores"], y["scores"]) for x, y in zip(a, b))
    seed_plain, seed_cut = decode_detector_outputs(out, plain, 0.5), decode_detector_outputs(out, cut, 0.5)
    s3 = lambda ps, lo, hi: sum(int(((p["heads"] == 2) & (p["scores"] >= lo) & (p["scores"] < hi)).sum()) for p in ps)  # noqa: E731
    assert s3(seed_plain, 0.5, 0.9) > 0 and s3(seed_cut, 0.5, 0.9) == 0       # S3 boxes under 0.9 are gone ...
    other = lambda ps: sum(int((p["heads"] != 2).sum()) for p in ps)          # noqa: E731
    assert other(seed_cut) >= other(seed_plain) > 0                           # ... and no other head lost any


def test_decode_arm_errors():
    cfg = dataclasses.replace(SMOKE.det_ablation, steps=1)
    with pytest.raises(ValueError, match="not a trained arm"):
        run_detectors(cfg, {"baseline": {}}, 1, decode_arms={"x": ("nope", {"nms_iou": 0.5})}, progress=False)
    with pytest.raises(ValueError, match="only decoding fields"):
        run_detectors(cfg, {"baseline": {}}, 1, decode_arms={"x": ("baseline", {"lr": 0.1})}, progress=False)


def test_same_config_accepts_fields_added_at_their_default():
    from hwlib.config import DetectorConfig
    from hwlib.study.obtain import same_config
    from hwlib.io import to_jsonable

    stored = to_jsonable(dataclasses.asdict(DetectorConfig()))
    assert same_config(stored, DetectorConfig())
    old = {k: v for k, v in stored.items() if k != "assignment"}     # written before the field existed
    assert same_config(old, DetectorConfig())
    assert not same_config(old, DetectorConfig(assignment="best_anchor"))
    assert not same_config({**stored, "lr": 1.0}, DetectorConfig())
    assert not same_config({**stored, "unknown": 1}, DetectorConfig())
    assert not same_config(None, DetectorConfig())
    # a field whose default changed after it was added: missing means the behaviour before it existed, not today's
    # default (runs on the first round's data are not runs on balanced data)
    pre = {k: v for k, v in stored.items() if k != "balanced_classes"}
    assert DetectorConfig().balanced_classes is True
    assert same_config(pre, DetectorConfig(balanced_classes=False))
    assert not same_config(pre, DetectorConfig())


def test_keypoint_subsets_scored_apart():
    gt = torch.rand(6, 5, 2) * 100 + 10
    pred = gt.clone()
    pred[3:, 2] += 50                       # the right hand wrong on the last three figures only
    mask = np.array([False, False, False, True, True, True])
    m = keypoint_metrics("regression", {"regression": pred}, gt, {"hidden": mask})
    assert m["subsets"]["hidden"]["pck_per_keypoint_0.05"]["right_hand"] == 0
    assert m["subsets"]["not_hidden"]["pck_per_keypoint_0.05"]["right_hand"] == 1
    assert m["subsets"]["not_hidden"]["pck_0.05"] == 1 and m["subsets"]["hidden"]["pck_0.05"] == pytest.approx(0.8)
    empty = keypoint_metrics("regression", {"regression": pred}, gt, {"none": np.zeros(6, bool)})["subsets"]["none"]
    assert math.isnan(empty["pck_0.05"])


def test_run_keypoint_methods_record_with_cost_and_plateau(tmp_path):
    cfg = dataclasses.replace(SMOKE.keypoint, steps=2, eval_every=1)
    runs = run_keypoint_methods(cfg, ("heatmap", "regression"), 2, run_dir=tmp_path, prefix="04_", n_eval=12,
                                precision="fp32", progress=False)
    rec = runs.to_json()
    hm = rec["heatmap"]
    assert RECORD_KEYS | {"params", "gflops", "infer_ms"} <= set(hm)
    assert hm["params"] == sum(p.numel() for p in runs.models[("heatmap", 0)][0].parameters())
    assert hm["gflops"] > 0 and hm["infer_ms"] > 0
    assert set(hm["mean"]["pck_per_keypoint_0.05"]) == set(KEYPOINT_NAMES)
    assert set(hm["mean"]["decodings"]) == {"heatmap_argmax"} and "decodings" not in rec["regression"]["mean"]
    assert hm["plateau"]["reached"] in (True, False) and "last quarter" in hm["plateau"]["criterion"]
    assert (tmp_path / "04_heatmap_s1.pt").exists() and len(runs.histories["heatmap"]) == 2
    assert runs.extra["errors"]["heatmap_dark"].shape == (2 * 12, 5)
    assert decoding_metrics(hm, "heatmap_argmax") is hm["mean"]["decodings"]["heatmap_argmax"]
    assert decoding_metrics(hm, "heatmap_dark") is hm["mean"]


def test_keypoint_arms_paired_with_the_first_arm(tmp_path):
    cfg = dataclasses.replace(SMOKE.kp_ablation, steps=1)
    runs = run_keypoint_arms(cfg, {"base": {}, "res 32": {"heatmap_size": 32}}, 2, run_dir=tmp_path, n_eval=8,
                             precision="fp32", progress=False)
    rec = runs.to_json()
    assert "paired_diff" not in rec["base"] and "pck_0.05" in rec["res 32"]["paired_diff"]
    assert "heatmap_mse" in rec["base"]["mean"]


def test_keypoint_metrics_against_brute_force():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(20, 5, 2, generator=g) * 100 + 10
    pred = gt + torch.randn(20, 5, 2, generator=g) * 3
    m = keypoint_metrics("regression", {"regression": pred}, gt)
    assert m["pck_0.05"] == pytest.approx(pck(pred, gt)[0.05])
    err = (pred - gt).norm(dim=-1)
    assert m["mean_px_error"] == pytest.approx(float(err.mean()), rel=1e-6)
    diag = (gt.amax(1) - gt.amin(1)).norm(dim=-1)
    ok = (err <= 0.05 * diag[:, None] * (1 + 1e-6)).float().mean(0)
    assert [m["pck_per_keypoint_0.05"][k] for k in KEYPOINT_NAMES] == pytest.approx(ok.tolist())


def test_a_registered_decoding_reaches_every_result(monkeypatch):
    """Adding a decoding is one entry in DECODINGS: predictions, metrics and records pick it up."""
    monkeypatch.setitem(kp.DECODINGS, "heatmap_argmax_again", kp.Decoding("heatmap", "argmax"))
    cfg = SMOKE.keypoint
    model = kp.build_keypoint_model("heatmap", cfg)
    images = torch.rand(3, 1, 128, 128)
    preds = predict_keypoints(model, "heatmap", images, cfg, precision="fp32")
    assert set(preds) == {"heatmap_dark", "heatmap_argmax", "heatmap_argmax_again"}
    m = keypoint_metrics("heatmap", preds, torch.rand(3, 5, 2) * 128)
    assert set(m["decodings"]) == {"heatmap_argmax", "heatmap_argmax_again"}
    assert m["decodings"]["heatmap_argmax_again"] == m["decodings"]["heatmap_argmax"]


def test_decoding_registry_headlines():
    assert kp.headline_decoding("heatmap") == "heatmap_dark"
    assert kp.decodings_of("regression") == ["regression"]
    with pytest.raises(ValueError, match="heatmap.*regression.*integral"):
        kp.decodings_of("typo")


def test_a_finished_run_is_loaded_not_retrained(tmp_path, capsys):
    """Reuse loads only a finished run of the very same config (with its validation log when one is needed)."""
    import json

    from hwlib.study.obtain import finished_checkpoint, train_keypoint_model

    cfg = dataclasses.replace(SMOKE.keypoint, steps=2, eval_every=1)
    model, hist = train_keypoint_model("regression", cfg, run_dir=tmp_path, name="m", precision="fp32", progress=False)
    ckpt = tmp_path / "m.pt"
    assert (tmp_path / "m.history.json").exists()
    again, hist2 = train_keypoint_model("regression", cfg, run_dir=tmp_path, name="m", precision="fp32",
                                        progress=False, reuse=True)
    assert "loaded instead of retrained" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert hist2.evals == json.loads(json.dumps(hist.evals))
    # another config, an unfinished run, or a needed validation log that is missing: no reuse
    assert finished_checkpoint(ckpt, dataclasses.replace(cfg, lr=1e-3), 2, need_history=False) is None
    assert finished_checkpoint(ckpt, cfg, 3, need_history=False) is None
    (tmp_path / "m.history.json").unlink()
    assert finished_checkpoint(ckpt, cfg, 2, need_history=True) is None
    assert finished_checkpoint(ckpt, cfg, 2, need_history=False) is not None
    # without reuse (the default outside the pipeline, and --force) it trains again
    train_keypoint_model("regression", cfg, run_dir=tmp_path, name="m", precision="fp32", progress=False, reuse=False)
    assert "loaded instead of retrained" not in capsys.readouterr().out


def test_quarter_validation_leaves_training_unchanged(tmp_path):
    # the seeds whose curve is not drawn are validated at each quarter only; validation must not change the weights
    from hwlib.study.arms import quarter_validation
    from hwlib.study.obtain import train_keypoint_model
    cfg = load_profile("smoke").keypoint
    cfg = dataclasses.replace(cfg, steps=4, eval_every=0)
    q = quarter_validation(cfg, 4)
    assert q.eval_every == 1 and dataclasses.replace(q, eval_every=0) == cfg
    plain, _ = train_keypoint_model("heatmap", cfg, seed=3, progress=False, validate=False, precision="fp32")
    checked, hist = train_keypoint_model("heatmap", q, seed=3, progress=False, validate=True, precision="fp32")
    assert [e["step"] for e in hist.evals] == [1, 2, 3, 4]
    for a, b in zip(plain.state_dict().values(), checked.state_dict().values()):
        assert torch.equal(a, b)


def test_a_field_a_method_does_not_read_leaves_its_runs_valid(tmp_path, capsys):
    """GAP+FC regression with its own steps and lr ignores ``steps`` / ``lr``: changing them (a longer heatmap
    schedule) reuses its finished run; changing what it reads does not. Heatmap models ignore the regression fields."""
    from hwlib.study.obtain import train_keypoint_model

    cfg = dataclasses.replace(SMOKE.keypoint, steps=3, regression_steps=2, regression_lr=1e-3, eval_every=1)
    assert cfg.unread_by("regression") == {"steps", "lr"}
    assert cfg.unread_by("heatmap") == cfg.unread_by("integral") == {"regression_steps", "regression_lr",
                                                                      "coord_channels", "regression_loss",
                                                                      "regression_output", "regression_fp32_head",
                                                                      "regression_norm"}
    assert dataclasses.replace(cfg, regression_lr=0.0).unread_by("regression") == {"steps"}
    kw = dict(run_dir=tmp_path, name="m", precision="fp32", progress=False, reuse=True)
    model, _ = train_keypoint_model("regression", cfg, **kw)
    capsys.readouterr()
    again, _ = train_keypoint_model("regression", dataclasses.replace(cfg, steps=5, lr=9e-3), **kw)
    assert "loaded instead of retrained" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    train_keypoint_model("regression", dataclasses.replace(cfg, regression_lr=2e-3), **kw)
    assert "loaded instead of retrained" not in capsys.readouterr().out
    # and the heatmap model's run survives a change of the regression schedule, not one of its own
    kw["name"] = "h"
    train_keypoint_model("heatmap", cfg, **kw)
    capsys.readouterr()
    train_keypoint_model("heatmap", dataclasses.replace(cfg, regression_steps=7, regression_lr=5e-3,
                                                        coord_channels=True), **kw)
    assert "loaded instead of retrained" in capsys.readouterr().out
    train_keypoint_model("heatmap", dataclasses.replace(cfg, lr=5e-3), **kw)
    assert "loaded instead of retrained" not in capsys.readouterr().out


class _Stop(Exception):
    pass


@pytest.mark.parametrize("model", ["detector", "heatmap", "regression"])
def test_the_training_options_of_a_config_reach_the_training_loop(model, monkeypatch, tmp_path):
    """Optimizer, schedule and weight averaging are config fields; each training entry point hands them to ``fit``."""
    from hwlib.study import detection, keypointing, obtain

    seen = {}

    def fake_fit(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(detection if model == "detector" else keypointing, "fit", fake_fit)
    opts = {"optimizer": "sgd", "schedule": "linear", "ema": 0.9}
    with pytest.raises(_Stop):
        if model == "detector":
            obtain.train_detector(dataclasses.replace(SMOKE.detector, **opts), run_dir=tmp_path, progress=False)
        else:
            obtain.train_keypoint_model(model, dataclasses.replace(SMOKE.keypoint, **opts), run_dir=tmp_path,
                                    progress=False)
    assert {k: seen[k] for k in opts} == opts
