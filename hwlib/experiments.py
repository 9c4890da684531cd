"""High-level experiment runs the notebooks call: train, predict, evaluate, summarize.

Each function takes a config dataclass from :mod:`hwlib.config` and a seed; data come from
:mod:`hwlib.data` with seeds derived from the run seed (training) or fixed (validation), so every
arm of an ablation is validated on the very same images.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import torch

from . import detector as det
from . import keypoints as kp
from .config import CLASS_NAMES, SPLIT_SEEDS, DetectorConfig, KeypointConfig, train_data_seed
from .data import make_detection_data, make_keypoint_data
from .metrics import evaluate_detections, match_detections, pck
from .report import to_jsonable
from .train import autocast, fit, load_checkpoint, pick_device, resolve_precision

VAL_SEED = SPLIT_SEEDS["val"]     # validation images: the same for every run and arm
TEST_SEED = SPLIT_SEEDS["test"]   # the held-out test split: reported numbers only (never a choice)


@functools.lru_cache(maxsize=8)
def detection_data(n: int, seed: int, size_mode: str = "class"):
    """Cached :func:`hwlib.data.make_detection_data` (arms of a notebook share their data)."""
    return make_detection_data(n, seed=seed, size_mode=size_mode)


@functools.lru_cache(maxsize=8)
def keypoint_data(n: int, seed: int, hard_fraction: float = 0.2):
    return make_keypoint_data(n, seed=seed, hard_fraction=hard_fraction, return_meta=True)


# ----------------------------------------------------------------------------- detector
def build_detector(cfg: DetectorConfig) -> det.MultiScaleDetector:
    return det.MultiScaleDetector(num_classes=3, num_anchors=len(cfg.anchors[0]), width=cfg.width, head=cfg.head)


def load_detector(path) -> tuple[det.MultiScaleDetector, DetectorConfig]:
    """A detector rebuilt from a checkpoint's stored config, with its weights (``weights_only`` load).

    The checkpoint's ``"config"`` (JSON lists) becomes a :class:`~hwlib.config.DetectorConfig` (tuples:
    ``anchors`` a tuple of three tuples; keys absent from an older checkpoint take the defaults);
    weights stored in bf16 (the ``models/`` zoo) are cast to the float32 model.

    Returns:
        ``(model, cfg)``: :class:`~hwlib.detector.MultiScaleDetector` in eval mode on the CPU, float32.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an hwlib checkpoint; a keypoint model;
        unknown config keys; weights of another architecture. The message names the file.
    """
    from .evaluate import load_model

    model, cfg, _, _, _ = load_model(path, task="detector")
    return model, cfg


def _flip_targets(t, width=224):
    b = t["boxes"].clone()
    b[:, [0, 2]] = width - t["boxes"][:, [2, 0]]
    return {"boxes": b, "labels": t["labels"]}


def detection_batches(images, targets, batch_size: int, flip: bool):
    """``get_batch`` for :func:`hwlib.train.fit`: shuffled epochs, optional horizontal flips."""
    n = len(images)
    state = {"perm": None, "pos": n}

    def get_batch(step, rng):
        if state["pos"] + batch_size > n:
            state["perm"], state["pos"] = rng.permutation(n), 0
        idx = state["perm"][state["pos"]:state["pos"] + batch_size]
        state["pos"] += batch_size
        x = det.images_to_input(images[torch.from_numpy(idx)])
        tg = [targets[i] for i in idx]
        if flip:
            f = rng.random(len(idx)) < 0.5
            if f.any():
                x[torch.from_numpy(f)] = x[torch.from_numpy(f)].flip(-1)
                tg = [_flip_targets(t) if fi else t for t, fi in zip(tg, f)]
        return x, tg
    return get_batch


@torch.no_grad()
def predict_detector(model, images, cfg: DetectorConfig, conf: float | None = None, batch_size: int = 50,
                     device: str = "auto", precision: str = "auto", raw: bool = False):
    """Detections for uint8 images ``[N, 3, 224, 224]``: list per image of boxes/scores/labels/heads.

    With ``raw=True`` also returns the raw head outputs (float32, on CPU) for objectness maps."""
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.eval().to(dev)
    preds, raws = [], []
    for s in range(0, len(images), batch_size):
        x = det.images_to_input(images[s:s + batch_size]).to(dev)
        with autocast(dev, prec):
            out = model(x)
        out = tuple(o.float().cpu() for o in out)
        if raw:
            raws.append(out)
        preds += det.decode_predictions(out, cfg.anchors, 3, conf_threshold=cfg.conf_standard if conf is None else conf,
                                        nms_iou=cfg.nms_iou, max_det=cfg.max_det, s3_conf=cfg.s3_conf)
    model.train(was_training)
    if raw:
        return preds, tuple(torch.cat([r[i] for r in raws]) for i in range(3))
    return preds


def filter_confidence(preds, conf: float):
    """Keep detections with score >= conf. Equal to decoding at ``conf``: NMS is greedy by score,
    so boxes below ``conf`` never suppress boxes above it."""
    out = []
    for p in preds:
        k = p["scores"] >= conf
        out.append({key: v[k] for key, v in p.items()})
    return out


def detection_metrics(preds, targets, cfg: DetectorConfig) -> dict:
    """Both protocols: standard (conf >= ``conf_standard``) and seed (conf >= ``conf_seed``)."""
    std = evaluate_detections([_core(p) for p in preds], targets)
    seed = evaluate_detections([_core(p) for p in filter_confidence(preds, cfg.conf_seed)], targets)
    out = {"map_standard": std["map"], "map_seed": seed["map"]}
    for name, a, b in zip(CLASS_NAMES, std["ap"], seed["ap"]):
        out[f"ap_standard_{name}"] = a
        out[f"ap_seed_{name}"] = b
    return out


def _core(p):
    return {"boxes": p["boxes"], "scores": p["scores"], "labels": p["labels"]}


def train_detector(cfg: DetectorConfig, seed: int = 0, run_dir: str | Path | None = None, name: str = "detector",
                   device: str = "auto", precision: str = "auto", progress: bool = True, validate: bool = True):
    """Train one detector; returns ``(model, history)``. With ``validate``, validation mAP (standard
    protocol) every ``cfg.eval_every`` steps and at the end; checkpoint ``<run_dir>/<name>.pt`` with its
    config beside it."""
    images, targets = detection_data(cfg.n_train, train_data_seed("detector", seed), cfg.size_mode)
    val_images, val_targets = detection_data(cfg.n_val, VAL_SEED, cfg.size_mode)
    torch.manual_seed(seed)
    model = build_detector(cfg)

    def evaluate(m):
        preds = predict_detector(m, val_images, cfg, device=device, precision=precision)
        return detection_metrics(preds, val_targets, cfg)

    loss_fn = det.DetectionLoss(cfg)
    ckpt = Path(run_dir) / f"{name}.pt" if run_dir else None
    hist = fit(model, loss_fn, detection_batches(images, targets, cfg.batch_size, cfg.flip),
               steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
               seed=seed, device=device, precision=precision, evaluate=evaluate if validate else None,
               eval_every=cfg.eval_every, checkpoint=ckpt, config=cfg, desc=name, progress=progress,
               grad_clip=cfg.grad_clip)
    return model, hist


# ----------------------------------------------------------------------------- keypoints
def load_keypoint_model(path) -> tuple[torch.nn.Module, str, KeypointConfig]:
    """A keypoint model rebuilt from a checkpoint's stored config and model class, with its weights.

    The method comes from the stored class (``HeatmapNet`` -> ``"heatmap"``, ``RegressionNet`` ->
    ``"regression"``, ``IntegralNet`` -> ``"integral"``); bf16 weights are cast to the float32 model.

    Returns:
        ``(model, method, cfg)``: the model in eval mode on the CPU (``[B, 1, 128, 128]`` -> heatmaps
        ``[B, 5, H, H]`` or normalized ``[B, 5, 2]``), its method and :class:`~hwlib.config.KeypointConfig`.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an hwlib checkpoint; a detector;
        unknown config keys; weights of another architecture. The message names the file.
    """
    from .evaluate import load_model

    model, cfg, _, method, _ = load_model(path, task="keypoint")
    return model, method, cfg


def keypoint_batches(images, keypoints, batch_size: int):
    """``get_batch`` for :func:`hwlib.train.fit`: shuffled epochs of (images, keypoints px)."""
    n = len(images)
    state = {"perm": None, "pos": n}

    def get_batch(step, rng):
        if state["pos"] + batch_size > n:
            state["perm"], state["pos"] = torch.from_numpy(rng.permutation(n)), 0
        idx = state["perm"][state["pos"]:state["pos"] + batch_size]
        state["pos"] += batch_size
        return images[idx], keypoints[idx]
    return get_batch


@torch.no_grad()
def predict_keypoints(model, method: str, images, cfg: KeypointConfig, batch_size: int = 200,
                      device: str = "auto", precision: str = "auto", return_heatmaps: bool = False) -> dict:
    """Keypoints ``[N, 5, 2]`` in image pixels per decoding: ``{"heatmap_argmax", "heatmap_dark"}`` for the
    heatmap model, ``{method}`` for regression and integral models."""
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.eval().to(dev)
    outs = []
    for s in range(0, len(images), batch_size):
        with autocast(dev, prec):
            outs.append(model(images[s:s + batch_size].to(dev)).float().cpu())
    model.train(was_training)
    out = torch.cat(outs) if outs else torch.zeros(0, 5, 2)
    codec = kp.codec_for(method, cfg)
    if method == "heatmap":
        res = {"heatmap_argmax": codec.decode(out, "argmax"), "heatmap_dark": codec.decode(out, "dark")}
        if return_heatmaps:
            res["heatmaps"] = out
        return res
    return {method: codec.decode(out)}


def train_keypoint_model(method: str, cfg: KeypointConfig, seed: int = 0, run_dir: str | Path | None = None,
                         name: str | None = None, device: str = "auto", precision: str = "auto",
                         progress: bool = True, validate: bool = True):
    """Train one keypoint model (``"heatmap"``, ``"regression"`` or ``"integral"``) on the shared data;
    with ``validate``, validation PCK (bbox norm) every ``cfg.eval_every`` steps and at the end.
    Returns ``(model, history)``."""
    name = name or f"{method}_s{seed}"
    images, keypoints, _ = keypoint_data(cfg.n_train, train_data_seed("keypoint", seed), cfg.hard_fraction)
    val_images, val_kps, _ = keypoint_data(cfg.n_val, VAL_SEED, cfg.hard_fraction)
    torch.manual_seed(seed)
    model = kp.build_keypoint_model(method, cfg)

    def evaluate(m):
        preds = predict_keypoints(m, method, val_images, cfg, device=device, precision=precision,
                                  return_heatmaps=True)
        out = {}
        if "heatmaps" in preds:
            # the seed's criterion, kept for the ablations: validation MSE of the predicted heatmaps
            target = kp.encode_heatmaps(val_kps, 128, cfg.heatmap_size, cfg.sigma)
            out["val_mse"] = float(((kp.heatmaps_as_targets(preds.pop("heatmaps"), cfg) - target) ** 2).mean())
        for key, p in preds.items():
            for tau, v in pck(p, val_kps).items():
                out[f"pck_{key}_{tau:g}"] = v
        return out

    ckpt = Path(run_dir) / f"{name}.pt" if run_dir else None
    steps = cfg.regression_steps if method == "regression" and cfg.regression_steps else cfg.steps
    hist = fit(model, kp.KeypointLoss(method, cfg), keypoint_batches(images, keypoints, cfg.batch_size),
               steps=steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
               seed=seed, device=device, precision=precision, evaluate=evaluate if validate else None,
               eval_every=cfg.eval_every, checkpoint=ckpt, config=cfg, desc=name, progress=progress, ema=cfg.ema,
               grad_clip=cfg.grad_clip)
    return model, hist


# ----------------------------------------------------------------------------- arms (ablations)
def summarize(runs: list[dict]) -> dict:
    """Mean and sample std over seeds of every numeric leaf: ``{k: mean, k + "_std": std}`` (nested dicts
    too), and ``"seeds"``: how many runs."""
    return {**_mean_std(runs), "seeds": len(runs)}


def _mean_std(runs: list[dict]) -> dict:
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        if isinstance(vals[0], dict):
            sub = _mean_std(vals)
            out[k] = {kk: v for kk, v in sub.items() if not kk.endswith("_std")}
            out[k + "_std"] = {kk[:-4]: v for kk, v in sub.items() if kk.endswith("_std")}
        elif isinstance(vals[0], (int, float, np.floating, np.integer)) and not isinstance(vals[0], bool):
            a = np.asarray(vals, dtype=float)
            out[k] = float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")
            out[k + "_std"] = float(np.nanstd(a, ddof=1)) if len(a) > 1 else 0.0
        elif isinstance(vals[0], (list, np.ndarray)):
            a = np.asarray(vals, dtype=float)
            out[k] = a.mean(0).tolist()
            out[k + "_std"] = (a.std(0, ddof=1) if len(a) > 1 else np.zeros_like(a[0])).tolist()
    return out


def detector_run_metrics(preds, targets, cfg: DetectorConfig) -> dict:
    """Per-class AP and mAP under both protocols, nested as in the report JSON, plus the head x bucket
    TP table (seed protocol) and per-bucket recall (standard protocol)."""
    from .analysis import head_bucket_table

    m = detection_metrics(preds, targets, cfg)
    seed_preds = filter_confidence(preds, cfg.conf_seed)
    tb_seed = head_bucket_table(seed_preds, targets, cfg.size_buckets)
    tb_std = head_bucket_table(preds, targets, cfg.size_buckets)
    return {"map_standard": m["map_standard"], "map_seed": m["map_seed"],
            "ap_standard": {n: m[f"ap_standard_{n}"] for n in CLASS_NAMES},
            "ap_seed": {n: m[f"ap_seed_{n}"] for n in CLASS_NAMES},
            "tp_table_seed": tb_seed["tp"].tolist(), "recall_seed": tb_seed["recall"].tolist(),
            "recall_standard": tb_std["recall"].tolist()}


def run_detector_arms(base: DetectorConfig, arms: dict, seeds: int, run_dir=None, decode_arms: dict | None = None,
                      pretrained: dict | None = None, progress: bool = True, device: str = "auto",
                      precision: str = "auto"):
    """Train every arm (``name -> DetectorConfig overrides``) for ``seeds`` seeds on the same data and
    evaluate on the same validation images. ``decode_arms`` (``name -> (trained arm, decoding overrides)``)
    re-decode an already trained arm's models (no retraining). ``pretrained`` (``(arm, seed) -> checkpoint``)
    reuses a model trained elsewhere with that arm's config and seed (its training seconds come from the
    checkpoint's metrics if recorded). Returns ``(summary, per_run)``."""
    val_images, val_targets = None, None
    per_run, models = {}, {}
    for name, over in arms.items():
        cfg = dataclasses.replace(base, **over)
        val_images, val_targets = detection_data(cfg.n_val, VAL_SEED, cfg.size_mode)
        per_run[name] = []
        for s in range(seeds):
            ckpt = (pretrained or {}).get((name, s))
            if ckpt is not None:
                payload = load_checkpoint(ckpt)
                if payload["config"] != to_jsonable(dataclasses.asdict(cfg)):
                    raise ValueError(f"checkpoint {ckpt} was trained with another config than arm {name!r}")
                model = build_detector(cfg)
                load_checkpoint(ckpt, model)
                train_seconds = payload["extra"].get("train_seconds", float("nan"))
            else:
                model, hist = train_detector(cfg, seed=s, run_dir=run_dir, name=f"{name}_s{s}", device=device,
                                             precision=precision, progress=progress, validate=False)
                train_seconds = hist.train_seconds
            preds = predict_detector(model, val_images, cfg, device=device, precision=precision)
            r = detector_run_metrics(preds, val_targets, cfg)
            r["train_seconds"] = train_seconds
            per_run[name].append(r)
            models[(name, s)] = (model, cfg)
    for name, (src, over) in (decode_arms or {}).items():
        per_run[name] = []
        for s in range(seeds):
            model, cfg = models[(src, s)]
            cfg = dataclasses.replace(cfg, **over)
            preds = predict_detector(model, val_images, cfg, device=device, precision=precision)
            r = detector_run_metrics(preds, val_targets, cfg)
            r["train_seconds"] = per_run[src][s]["train_seconds"]
            per_run[name].append(r)
    return {name: summarize(runs) for name, runs in per_run.items()}, per_run


def keypoint_run_metrics(preds: dict, gt) -> dict:
    """PCK at the four thresholds for every decoding in ``preds``, flat keys ``pck_<decoding>_<tau>``."""
    out = {}
    for key, p in preds.items():
        short = key.replace("heatmap_", "")
        for tau, v in pck(p, gt).items():
            out[f"pck_{short}_{tau:g}"] = v
    return out


def run_keypoint_arms(base: KeypointConfig, arms: dict, seeds: int, run_dir=None, progress: bool = True,
                      device: str = "auto", precision: str = "auto"):
    """Heatmap-model ablation: every arm (``name -> KeypointConfig overrides``) for ``seeds`` seeds on the
    same data, judged by PCK in image pixels (argmax and DARK) and by the seed's validation heatmap MSE."""
    per_run = {}
    for name, over in arms.items():
        cfg = dataclasses.replace(base, **over)
        val_images, val_kps, _ = keypoint_data(cfg.n_val, VAL_SEED, cfg.hard_fraction)
        per_run[name] = []
        for s in range(seeds):
            model, hist = train_keypoint_model("heatmap", cfg, seed=s, run_dir=run_dir, name=f"{name}_s{s}",
                                               device=device, precision=precision, progress=progress, validate=False)
            preds = predict_keypoints(model, "heatmap", val_images, cfg, device=device, precision=precision,
                                      return_heatmaps=True)
            hm = kp.heatmaps_as_targets(preds.pop("heatmaps"), cfg)
            r = keypoint_run_metrics(preds, val_kps)
            r["val_mse"] = float(((hm - kp.encode_heatmaps(val_kps, 128, cfg.heatmap_size, cfg.sigma)) ** 2).mean())
            r["train_seconds"] = hist.train_seconds
            per_run[name].append(r)
    return {name: summarize(runs) for name, runs in per_run.items()}, per_run
