"""Evaluation from the command line, checkpoint loading, and the bf16 model zoo (SPEC §8).

Tiny untrained models of the ``smoke`` profile, a few images each: the point is the plumbing (the
right data, the right decoding, the right protocol, loadable files), checked against small
independent implementations of VOC AP and PCK written here, not hwlib's.
"""

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hwlib.vision import keypoints as kp
from hwlib.config import CLASS_NAMES, KEYPOINT_NAMES, REPO_ROOT, DetectorConfig, KeypointConfig, load_profile
from hwlib.vision.data import make_detection_data, make_keypoint_data
from hwlib.study.evaluate import TEST_SPLIT_SEED, evaluate_checkpoint, main
from hwlib.vision.detector import build_detector
from hwlib.study.detection import load_detector
from hwlib.study.keypointing import load_keypoint_model
from hwlib.vision.train import CheckpointError, save_checkpoint
from hwlib.study.zoo import ZOO, export_zoo

SMOKE = load_profile("smoke")
DET_CFG, KP_CFG = SMOKE.detector, SMOKE.keypoint
RF_CFG = dataclasses.replace(DET_CFG, head="dilated")
N_DET, N_KP = 6, 24
SEED = 123                       # not the test split: these tests must not cost 1000 images


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Untrained smoke-size checkpoints of every model class, as ``save_checkpoint`` writes them."""
    d = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    out = {}
    for name, cfg in (("det", DET_CFG), ("rf", RF_CFG)):
        out[name] = save_checkpoint(d / f"{name}.pt", build_detector(cfg), cfg, extra={"step": 3, "train_seconds": 1.5})
    for m in ("heatmap", "regression", "integral"):
        out[m] = save_checkpoint(d / f"{m}.pt", kp.build_keypoint_model(m, KP_CFG), KP_CFG,
                                 extra={"step": 3, "train_seconds": 2.5})
    return out


# ----------------------------------------------------------------------------- independent references
def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def brute_voc_ap(predictions, targets, cls, conf=0.0, iou_thr=0.5):
    """VOC AP@0.5 of one class, written out: greedy matching by decreasing score over all images, then
    the area under the precision envelope (at each TP, the best precision at that recall or beyond)."""
    dets = [(float(s), i, j) for i, p in enumerate(predictions)
            for j, (s, lab) in enumerate(zip(p["scores"].tolist(), p["labels"].tolist())) if lab == cls and s >= conf]
    dets.sort(key=lambda d: (-d[0], d[1], d[2]))
    gts = {i: [b for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist()) if lab == cls]
           for i, t in enumerate(targets)}
    n_gt = sum(len(v) for v in gts.values())
    if n_gt == 0:
        return float("nan")
    taken = {i: [False] * len(v) for i, v in gts.items()}
    tps = []
    for _, i, j in dets:
        box = predictions[i]["boxes"][j].tolist()
        ious = [_iou(box, g) for g in gts[i]]
        best = max(range(len(ious)), key=lambda g: ious[g]) if ious else None
        ok = best is not None and ious[best] >= iou_thr and not taken[i][best]
        if ok:
            taken[i][best] = True
        tps.append(ok)
    precision = [sum(tps[:k + 1]) / (k + 1) for k in range(len(tps))]
    return sum(max(precision[k:]) / n_gt for k in range(len(tps)) if tps[k])


def brute_map(predictions, targets, conf=0.0):
    aps = [brute_voc_ap(predictions, targets, c, conf) for c in range(3)]
    valid = [a for a in aps if not np.isnan(a)]
    return float(np.mean(valid)), aps


def brute_pck(pred, gt, tau, norm="bbox"):
    """Per-keypoint correctness ``[N, K]`` from plain numpy: error <= tau * per-sample length."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    err = np.sqrt(((pred - gt) ** 2).sum(-1))
    diag = np.hypot(gt[..., 0].max(1) - gt[..., 0].min(1), gt[..., 1].max(1) - gt[..., 1].min(1))
    if norm == "bbox":
        length = np.maximum(diag, 1.0)
    else:  # head to the midpoint of the feet, the bbox diagonal where that is degenerate
        torso = np.linalg.norm(gt[:, 0] - (gt[:, 3] + gt[:, 4]) / 2, axis=-1)
        length = np.maximum(np.where(torso >= 1.0, torso, diag), 1.0)
    return err <= tau * length[:, None]


# ----------------------------------------------------------------------------- evaluate_checkpoint
def test_detector_result_has_the_report_keys(ckpts):
    r = evaluate_checkpoint(ckpts["det"], seed=SEED, n=N_DET, progress=False)
    for k in ("map_standard", "map_seed", "checkpoint", "sha256", "seed", "n", "task", "method"):
        assert k in r, k
    assert set(r["ap_standard"]) == set(r["ap_seed"]) == set(CLASS_NAMES)
    assert (r["task"], r["method"], r["seed"], r["n"]) == ("detector", "seed", SEED, N_DET)
    assert r["sha256"] == hashlib.sha256(ckpts["det"].read_bytes()).hexdigest()
    json.dumps(r)    # JSON-able as it is


@pytest.mark.parametrize("method", ["heatmap", "regression", "integral"])
def test_keypoint_result_has_the_report_keys(ckpts, method):
    r = evaluate_checkpoint(ckpts[method], seed=SEED, n=N_KP, progress=False)
    for k in ("pck_0.02", "pck_0.05", "pck_0.1", "pck_auc_0.1", "pck_0.15", "pck_0.2", "pck_torso_0.05", "mean_px_error",
              "checkpoint", "sha256", "seed", "n", "task", "method"):
        assert k in r, k
    assert list(r["pck_per_keypoint_0.05"]) == list(KEYPOINT_NAMES)
    assert (r["task"], r["method"]) == ("keypoint", method)
    assert ("decodings" in r) == (method == "heatmap")
    json.dumps(r)


def test_default_split_is_the_test_split():
    import inspect

    params = inspect.signature(evaluate_checkpoint).parameters
    assert params["seed"].default == TEST_SPLIT_SEED and params["n"].default == 1000
    from hwlib.config import SPLIT_SEEDS
    from hwlib.study.splits import TEST_SEED, VAL_SEED

    assert TEST_SPLIT_SEED == TEST_SEED == SPLIT_SEEDS["test"] != VAL_SEED


def test_detector_predictions_file_rescored_independently(ckpts, tmp_path, capsys):
    out_pt, out_json = tmp_path / "p.pt", tmp_path / "m.json"
    rc = main([str(ckpts["det"]), "--seed", str(SEED), "--n", str(N_DET), "--predictions", str(out_pt),
               "--json", str(out_json), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    metrics = json.loads(out_json.read_text())
    saved = torch.load(out_pt, weights_only=True)
    # the right images: the generator's own targets at that seed and the config's size mode
    _, targets = make_detection_data(N_DET, seed=SEED, size_mode=DET_CFG.size_mode,
                                     balanced_classes=DET_CFG.balanced_classes)
    assert len(saved["predictions"]) == len(saved["targets"]) == N_DET
    for t, s in zip(targets, saved["targets"]):
        assert torch.equal(t["boxes"], s["boxes"]) and torch.equal(t["labels"], s["labels"])
    scores = torch.cat([p["scores"] for p in saved["predictions"]])
    assert scores.min() >= 0.001 and (scores < 0.5).any(), "decoded at conf 0.001, not cut at the seed's 0.5"
    assert all(set(p) >= {"boxes", "scores", "labels"} for p in saved["predictions"])

    m_std, ap_std = brute_map(saved["predictions"], saved["targets"])
    m_seed, ap_seed = brute_map(saved["predictions"], saved["targets"], conf=DET_CFG.conf_seed)
    assert max(ap_std) > 0, "the check needs some true positives to mean anything"
    assert metrics["map_standard"] == pytest.approx(m_std, abs=1e-9)
    assert metrics["map_seed"] == pytest.approx(m_seed, abs=1e-9)
    for c, name in enumerate(CLASS_NAMES):
        assert metrics["ap_standard"][name] == pytest.approx(ap_std[c], abs=1e-9, nan_ok=True)
        assert metrics["ap_seed"][name] == pytest.approx(ap_seed[c], abs=1e-9, nan_ok=True)
    assert f"{m_std:.4f}" in printed and f"{m_seed:.4f}" in printed


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_keypoint_predictions_file_rescored_independently(ckpts, tmp_path, capsys, method):
    out_pt, out_json = tmp_path / "p.pt", tmp_path / "m.json"
    rc = main([str(ckpts[method]), "--seed", str(SEED), "--n", str(N_KP), "--predictions", str(out_pt),
               "--json", str(out_json), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    metrics = json.loads(out_json.read_text())
    saved = torch.load(out_pt, weights_only=True)
    images, gt = make_keypoint_data(N_KP, seed=SEED, hard_fraction=KP_CFG.hard_fraction)
    assert torch.equal(saved["gt"], gt)
    assert saved["pred"].shape == (N_KP, 5, 2) and saved["pred"].dtype == torch.float32
    # the headline decoding, from the model's raw output: DARK for heatmaps, x * 128 for regression
    model, _, cfg = load_keypoint_model(ckpts[method])
    with torch.no_grad():
        raw = model(images)
    if method == "heatmap":               # cross-entropy logits: DARK decodes their spatial softmax
        assert cfg.heatmap_loss == "ce"
        probs = raw.flatten(2).softmax(-1).view_as(raw)
        expect = kp.decode_heatmaps(probs, 128, method="dark")
    else:
        expect = raw * 128
    assert torch.allclose(saved["pred"], expect, atol=1e-4)

    pred = saved["pred"].numpy()
    for tau in (0.02, 0.05, 0.1, 0.15, 0.2):
        assert metrics[f"pck_{tau:g}"] == pytest.approx(brute_pck(pred, gt, tau).mean(), abs=1e-6)
    # the area under the PCK curve on [0, 0.1]: brute force as the mean PCK over a fine grid of thresholds
    grid = (np.arange(2000) + 0.5) / 2000 * 0.1
    assert metrics["pck_auc_0.1"] == pytest.approx(np.mean([brute_pck(pred, gt, t).mean() for t in grid]), abs=1e-3)
    assert metrics["pck_torso_0.05"] == pytest.approx(brute_pck(pred, gt, 0.05, "torso").mean(), abs=1e-6)
    per_kp = brute_pck(pred, gt, 0.05).mean(0)
    assert [metrics["pck_per_keypoint_0.05"][k] for k in KEYPOINT_NAMES] == pytest.approx(per_kp, abs=1e-6)
    err = np.sqrt(((pred.astype(np.float64) - gt.numpy()) ** 2).sum(-1)).mean()
    assert metrics["mean_px_error"] == pytest.approx(err, rel=1e-5)
    if method == "heatmap":
        argmax = kp.decode_heatmaps(raw, 128, method="argmax").numpy()
        assert metrics["decodings"]["heatmap_argmax"]["pck_0.05"] == pytest.approx(brute_pck(argmax, gt, 0.05).mean(), abs=1e-6)
    assert f"{metrics['pck_0.05']:.4f}" in printed


# ----------------------------------------------------------------------------- wrong checkpoints
def _bad_files(d, ckpts):
    files = {"missing": d / "nowhere.pt"}
    files["corrupt"] = d / "truncated.pt"
    files["corrupt"].write_bytes(ckpts["det"].read_bytes()[:5000])
    files["text"] = d / "notes.pt"
    files["text"].write_text("this is not a checkpoint\n")
    files["foreign"] = d / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, files["foreign"])
    files["other_task_config"] = d / "mixed.pt"      # a detector class carrying a keypoint config
    save_checkpoint(files["other_task_config"], build_detector(DET_CFG), KP_CFG)
    files["wrong_weights"] = d / "wrong_weights.pt"   # the config says width 0.25, the weights are width 0.5
    save_checkpoint(files["wrong_weights"], build_detector(dataclasses.replace(DET_CFG, width=0.5)), DET_CFG)
    return files


@pytest.mark.parametrize("kind", ["missing", "corrupt", "text", "foreign", "other_task_config", "wrong_weights"])
def test_cli_wrong_checkpoint_one_line_exit_2(ckpts, tmp_path, capsys, kind):
    path = _bad_files(tmp_path, ckpts)[kind]
    rc = main([str(path), "--n", "2", "--no-progress", "--json", str(tmp_path / "m.json")])
    out, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and lines[0].startswith("error: "), err
    assert out == "" and not (tmp_path / "m.json").exists()


def test_cli_as_a_process_no_traceback(ckpts, tmp_path):
    path = _bad_files(tmp_path, ckpts)["text"]
    p = subprocess.run([sys.executable, "-m", "hwlib.evaluate", str(path)], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1 and str(path) in p.stderr


def test_load_detector_rebuilds_config_and_refuses_keypoint_models(ckpts):
    model, cfg = load_detector(ckpts["rf"])
    assert cfg == RF_CFG and isinstance(cfg.anchors[0], tuple)       # tuples back, hashable, equal
    ref = build_detector(RF_CFG)
    ref.load_state_dict(torch.load(ckpts["rf"], weights_only=True)["state_dict"])
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.eval()(x), ref.eval()(x)))
    with pytest.raises(CheckpointError, match="heatmap.pt.*HeatmapNet"):
        load_detector(ckpts["heatmap"])
    with pytest.raises(CheckpointError, match="det.pt"):
        load_keypoint_model(ckpts["det"])
    model, method, cfg = load_keypoint_model(ckpts["integral"])
    assert (type(model).__name__, method, cfg) == ("IntegralNet", "integral", KP_CFG)


def test_a_checkpoint_with_the_seed_s3_cut_evaluates_and_keeps_its_standard_protocol(ckpts, tmp_path):
    cfg = dataclasses.replace(DET_CFG, s3_conf=0.99)
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "s3.pt", build_detector(DET_CFG), cfg, extra={"step": 3, "train_seconds": 1.0})
    plain = evaluate_checkpoint(ckpts["det"], seed=SEED, n=N_DET, progress=False)
    cut = evaluate_checkpoint(path, seed=SEED, n=N_DET, progress=False)     # same weights (same seed), S3 cut 0.99
    assert cut["map_standard"] == plain["map_standard"]                      # standard protocol: not applied


def test_unknown_config_key_is_refused(ckpts, tmp_path):
    bad = tmp_path / "newer.pt"
    payload = torch.load(ckpts["det"], weights_only=True)
    payload["config"]["from_the_future"] = 1
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=r"newer\.pt.*unknown.*from_the_future"):
        load_detector(bad)


# ----------------------------------------------------------------------------- the bf16 zoo
@pytest.fixture(scope="module")
def zoo(ckpts, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cpu"
    run.mkdir()
    sources = {"seed_exact": "det", "rf_aware": "rf", "heatmap": "heatmap", "regression": "regression",
               "integral": "integral"}
    for name, src in sources.items():
        (run / ZOO[name]).write_bytes(ckpts[src].read_bytes())
    out = tmp_path_factory.mktemp("models")
    manifest = export_zoo(run, out, n=N_DET, seed=SEED, progress=False)
    return run, out, manifest, sources


def test_zoo_manifest_matches_its_bf16_files(zoo):
    run, out, manifest, sources = zoo
    assert list(manifest) == list(ZOO)
    assert json.loads((out / "MANIFEST.json").read_text()) == manifest
    total = 0
    for name, e in manifest.items():
        f = out / e["file"]
        total += f.stat().st_size
        assert e["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
        assert set(e) >= {"file", "sha256", "config", "test", "train_seconds", "machine"}
        assert e["train_seconds"] == (1.5 if sources[name] in ("det", "rf") else 2.5)
        assert {"cpu", "threads", "bf16_native"} <= set(e["machine"])
        sd = torch.load(f, weights_only=True)["state_dict"]
        src = torch.load(run / ZOO[name], weights_only=True)["state_dict"]
        for k, v in sd.items():
            assert v.dtype == (torch.bfloat16 if src[k].is_floating_point() else src[k].dtype), k
            if not v.is_floating_point():
                assert torch.equal(v, src[k]), k
    assert total < 60_000_000
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_zoo_files_load_back_and_evaluate_like_fp32(zoo, ckpts):
    run, out, manifest, sources = zoo
    model, cfg = load_detector(out / "seed_exact.pt")
    assert cfg == DET_CFG and all(p.dtype == torch.float32 for p in model.parameters())
    ref, _ = load_detector(ckpts["det"])
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(model(x), ref(x)):
            assert (a - b).abs().max() <= 0.05 * b.abs().max() + 1e-3
    for name, e in manifest.items():
        if name == "rf_aware":
            continue                                        # as seed_exact; a detector evaluation costs seconds
        again = evaluate_checkpoint(out / e["file"], seed=SEED, n=N_DET, progress=False)
        fp32 = evaluate_checkpoint(ckpts[sources[name]], seed=SEED, n=N_DET, progress=False)
        for k, v in e["test"].items():
            assert again[k] == v, (name, k)                 # the manifest is the bf16 file's own evaluation
        if "map_standard" in e["test"]:
            assert e["test"]["map_standard"] == pytest.approx(fp32["map_standard"], abs=0.05), name
        else:
            assert e["test"]["mean_px_error"] == pytest.approx(fp32["mean_px_error"], abs=1.0), name
            assert e["test"]["pck_0.2"] == pytest.approx(fp32["pck_0.2"], abs=0.1), name


def test_zoo_over_budget_writes_nothing(zoo, tmp_path):
    run = zoo[0]
    with pytest.raises(ValueError, match="budget"):
        export_zoo(run, tmp_path / "models", n=2, seed=SEED, max_bytes=100_000, progress=False)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_zoo_missing_source_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="02_seed_exact_s0.pt"):
        export_zoo(tmp_path, tmp_path / "models", names=["seed_exact"], n=2, progress=False)


def test_a_coordconv_regression_checkpoint_loads_as_one(tmp_path):
    """The stored config rebuilds the CoordConv model (3 input channels), and its weights give the same outputs."""
    cfg = dataclasses.replace(KP_CFG, coord_channels=True)
    ref = kp.build_keypoint_model("regression", cfg)
    path = save_checkpoint(tmp_path / "coord.pt", ref, cfg, extra={"step": 3, "train_seconds": 1.0})
    model, method, stored = load_keypoint_model(path)
    assert (method, stored.coord_channels, model.coords) == ("regression", True, True)
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref.eval()(x))


def test_a_config_written_before_a_field_existed_keeps_its_meaning():
    """A checkpoint whose config lacks ``balanced_classes`` was trained on the first round's data: it is rebuilt with
    ``balanced_classes=False`` (and so evaluated on such data), not with today's default; a stored value wins."""
    from hwlib.study.evaluate import config_from_checkpoint
    from hwlib.io import to_jsonable

    stored = to_jsonable(dataclasses.asdict(DET_CFG))
    old = {k: v for k, v in stored.items() if k != "balanced_classes"}
    assert DET_CFG.balanced_classes is True
    assert config_from_checkpoint("x.pt", {"config": old}, type(DET_CFG)).balanced_classes is False
    assert config_from_checkpoint("x.pt", {"config": stored}, type(DET_CFG)) == DET_CFG
    kp = to_jsonable(dataclasses.asdict(KP_CFG))
    assert config_from_checkpoint("k.pt", {"config": kp}, type(KP_CFG)) == KP_CFG    # keypoint configs: no such field
