"""The detector as the study trains, predicts and scores it: batches, training from scratch, decoding under both
protocols, the record's metrics and the evaluations the run store keeps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hwlib.config import CLASS_NAMES, DetectorConfig, train_data_seed
from hwlib.study.splits import VAL_SEED, detection_data
from hwlib.vision import detector as det
from hwlib.vision.detector import build_detector
from hwlib.vision.metrics import evaluate_detections
from hwlib.vision.train import autocast, fit, pick_device, resolve_precision


def load_detector(path) -> tuple[det.MultiScaleDetector, DetectorConfig]:
    """A detector rebuilt from a checkpoint's stored config, with its weights (``weights_only`` load).

    The checkpoint's ``"config"`` (JSON lists) becomes a :class:`~hwlib.config.DetectorConfig` (tuples:
    ``anchors`` a tuple of three tuples; keys absent from an older checkpoint take the behaviour of the code that
    wrote it, :func:`hwlib.study.checkpoints.config_from_checkpoint`);
    weights stored in bf16 (the ``models/`` zoo) are cast to the float32 model.

    Returns:
        ``(model, cfg)``: :class:`~hwlib.vision.detector.MultiScaleDetector` in eval mode on the CPU, float32.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an hwlib checkpoint; a keypoint model;
        unknown config keys; weights of another architecture. The message names the file.
    """
    from hwlib.study.checkpoints import load_model

    model, cfg, _, _, _ = load_model(path, task="detector")
    return model, cfg


def _flip_targets(t, width=224):
    b = t["boxes"].clone()
    b[:, [0, 2]] = width - t["boxes"][:, [2, 0]]
    return {"boxes": b, "labels": t["labels"]}


def detection_batches(images, targets, batch_size: int, flip: bool):
    """``get_batch`` for :func:`hwlib.vision.train.fit`: shuffled epochs, optional horizontal flips."""
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
    """Detections for uint8 images ``[N, 3, 224, 224]``: list per image of boxes/scores/labels/heads, decoded
    at ``conf`` (default ``cfg.conf_standard``) by :func:`decode_detector_outputs`.

    With ``raw=True`` also returns the raw head outputs (float32, on CPU; ``[N, A*(5+C), H, W]`` per head) for
    objectness maps and for re-decoding without another forward pass."""
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
        preds += decode_detector_outputs(out, cfg, conf)
    model.train(was_training)
    if raw:
        return preds, tuple(torch.cat([r[i] for r in raws]) for i in range(3))
    return preds


def decode_detector_outputs(outputs, cfg: DetectorConfig, conf: float | None = None, batch_size: int = 50):
    """Raw head outputs (a tuple of three ``[N, A*(5+C), H, W]``) -> detections per image, with ``cfg``'s NMS IoU
    and ``max_det``, at confidence ``conf`` (default ``cfg.conf_standard``).

    ``cfg.s3_conf`` (the seed's proposal: a higher cut for S3 boxes, before NMS) applies only to a decoding at the
    seed protocol's cut or above (``conf >= cfg.conf_seed``): under the standard protocol every box above
    ``conf_standard`` is kept, whichever head made it."""
    conf = cfg.conf_standard if conf is None else conf
    s3 = cfg.s3_conf if cfg.s3_conf is not None and conf >= cfg.conf_seed else None
    preds = []
    for s in range(0, len(outputs[0]), batch_size):
        preds += det.decode_predictions(tuple(o[s:s + batch_size] for o in outputs), cfg.anchors, 3,
                                        conf_threshold=conf, nms_iou=cfg.nms_iou, max_det=cfg.max_det, s3_conf=s3)
    return preds


DECODING_FIELDS = {"nms_iou", "conf_seed", "conf_standard", "max_det", "s3_conf"}   # what a decode arm may change


def filter_confidence(preds, conf: float):
    """Keep detections with score >= conf. Equal to decoding at ``conf``: NMS is greedy by score,
    so boxes below ``conf`` never suppress boxes above it."""
    out = []
    for p in preds:
        k = p["scores"] >= conf
        out.append({key: v[k] for key, v in p.items()})
    return out


def detection_metrics(preds, targets, cfg: DetectorConfig) -> dict:
    """Validation mAP under both protocols, flat (a training log's evaluation): ``map_standard`` (conf >=
    ``conf_standard``) and ``map_seed`` (conf >= ``conf_seed``; the seed's S3 cut ``s3_conf``, a decoding arm of
    trained models, is not applied to training logs)."""
    std = evaluate_detections([_core(p) for p in preds], targets)
    seed = evaluate_detections([_core(p) for p in filter_confidence(preds, cfg.conf_seed)], targets)
    return {"map_standard": std["map"], "map_seed": seed["map"]}


def _core(p):
    return {"boxes": p["boxes"], "scores": p["scores"], "labels": p["labels"]}


def _train_detector(cfg, seed, ckpt, name, device, precision, progress, validate):
    images, targets = detection_data(cfg.n_train, train_data_seed("detector", seed), cfg.size_mode,
                                     cfg.balanced_classes)
    val_images, val_targets = detection_data(cfg.n_val, VAL_SEED, cfg.size_mode, cfg.balanced_classes)
    torch.manual_seed(seed)
    model = build_detector(cfg)

    def evaluate(m):
        preds = predict_detector(m, val_images, cfg, device=device, precision=precision)
        return detection_metrics(preds, val_targets, cfg)

    loss_fn = det.DetectionLoss(cfg)
    hist = fit(model, loss_fn, detection_batches(images, targets, cfg.batch_size, cfg.flip),
               steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
               seed=seed, device=device, precision=precision, evaluate=evaluate if validate else None,
               eval_every=cfg.eval_every, checkpoint=ckpt, config=cfg, desc=name, progress=progress,
               grad_clip=cfg.grad_clip, optimizer=cfg.optimizer, schedule=cfg.schedule, ema=cfg.ema)
    return model, hist


def detector_metrics(preds, targets, cfg: DetectorConfig, seed_preds=None) -> dict:
    """One detector's metrics for a record, under both protocols (SPEC §3, §7).

    Args:
        preds: per image ``{"boxes" [M, 4] xyxy px, "scores" [M], "labels" [M], "heads" [M]}`` decoded at
            ``cfg.conf_standard``.
        targets: per image ``{"boxes" [G, 4] xyxy px, "labels" [G]}``.
        seed_preds: the same decoded at the seed protocol's cut (needed where ``cfg.s3_conf`` is set, see
            :func:`decode_detector_outputs`); default: ``preds`` cut at ``cfg.conf_seed`` (the same, as NMS is greedy).

    Returns:
        ``map_standard``, ``map_seed``, ``ap_standard`` / ``ap_seed`` (``{class: AP}``), ``tp_share_seed`` /
        ``tp_share_standard`` (``[3 heads][3 size buckets]``: each head's true positives under that protocol as a
        share of the bucket's ground truth), ``recall_seed`` / ``recall_standard`` (``[3 buckets]``).
    """
    from hwlib.vision.analysis import head_bucket_table

    if cfg.s3_conf is not None and seed_preds is None:
        raise ValueError("cfg.s3_conf is set: pass seed_preds decoded at the seed protocol (decode_detector_outputs)")
    std = evaluate_detections([_core(p) for p in preds], targets)
    seed_preds = filter_confidence(preds, cfg.conf_seed) if seed_preds is None else seed_preds
    seed = evaluate_detections([_core(p) for p in seed_preds], targets)
    tb_seed = head_bucket_table(seed_preds, targets, cfg.size_buckets)
    tb_std = head_bucket_table(preds, targets, cfg.size_buckets)
    share = lambda tb: (tb["tp"] / np.maximum(tb["n_gt"], 1)[None, :]).tolist()   # noqa: E731
    return {"map_standard": std["map"], "map_seed": seed["map"],
            "ap_standard": dict(zip(CLASS_NAMES, std["ap"])), "ap_seed": dict(zip(CLASS_NAMES, seed["ap"])),
            "tp_share_seed": share(tb_seed), "tp_share_standard": share(tb_std), "recall_seed": tb_seed["recall"].tolist(),
            "recall_standard": tb_std["recall"].tolist()}


def seed_protocol_preds(outputs, cfg: DetectorConfig):
    """The seed-protocol decoding :func:`detector_metrics` needs as ``seed_preds``: raw head outputs decoded at
    ``cfg.conf_seed`` where ``cfg.s3_conf`` is set (the S3 cut applies there only), else ``None`` (the
    standard-protocol detections cut at ``conf_seed`` are the same)."""
    return decode_detector_outputs(outputs, cfg, cfg.conf_seed) if cfg.s3_conf is not None else None


def _metrics_of_outputs(outputs, targets, cfg: DetectorConfig, preds=None) -> dict:
    """:func:`detector_metrics` of raw head outputs decoded with ``cfg`` under both protocols; ``preds``: their
    standard-protocol decoding where the caller already has it (it is not decoded again)."""
    preds = decode_detector_outputs(outputs, cfg) if preds is None else preds
    return detector_metrics(preds, targets, cfg, seed_protocol_preds(outputs, cfg))


def evaluate_positives(model, cfg: DetectorConfig, spec: dict) -> dict:
    """:func:`hwlib.vision.analysis.positive_anchor_scores` of ``model`` (trained with ``cfg``) on ``spec``'s images
    (:func:`positives_spec`): do the anchors its training assignment made positive localise, classify and rank?"""
    from hwlib.vision.analysis import positive_anchor_scores

    images, targets = detection_data(spec["n"], spec["seed"], spec["size_mode"], spec["balanced_classes"])
    _, raw = predict_detector(model, images, cfg, device="cpu", precision="fp32", raw=True)
    return positive_anchor_scores(raw, list(targets), cfg)


def _evaluate_detector(model, cfg: DetectorConfig, specs, device="auto", precision="auto") -> list:
    """``[(metrics, None)]``, one per spec of :func:`detector_spec`: one forward pass per image set, decoded again
    for each spec's decoding (:func:`detector_metrics`)."""
    from hwlib.vision.analysis import ap_by_class_and_size, confusion_any_size

    outputs, out = {}, []
    for spec in specs:
        data = (spec["n"], spec["seed"], spec["size_mode"], spec["balanced_classes"])
        if data not in outputs:
            images, targets = detection_data(*data)
            preds, raw = predict_detector(model, images, cfg, device=device, precision=precision, raw=True)
            outputs[data] = (targets, raw, preds)
        targets, raw, preds = outputs[data]
        dcfg = dataclasses.replace(cfg, **spec["decoding"])
        same = all(getattr(dcfg, f) == getattr(cfg, f) for f in spec["decoding"])
        p = preds if same else decode_detector_outputs(raw, dcfg)
        m = _metrics_of_outputs(raw, targets, dcfg, p)
        if spec["analyses"]:
            m["analyses"] = {"confusion_seed": confusion_any_size(filter_confidence(p, dcfg.conf_seed), targets).tolist(),
                             "ap_by_size_standard": ap_by_class_and_size(p, targets)}
        out.append((m, None))
    return out
