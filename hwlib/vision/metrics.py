"""Metrics that know nothing of models: VOC AP for detection, PCK for keypoints."""

from __future__ import annotations

import math

import numpy as np
import torch

from hwlib.vision.boxes import _iou, check_boxes, check_tensor

# ----------------------------------------------------------------------------- detection


def voc_ap(recall, precision) -> float:
    """VOC all-point interpolated average precision (the VOC2010+ devkit's ``VOCap``).

    The precision envelope (running maximum from the right) is integrated over every change
    of recall, with sentinels recall 0 -> 1 and precision 0 at both ends.

    Args:
        recall: 1-D numpy array, non-decreasing, in [0, 1].
        precision: 1-D numpy array of the same length, in [0, 1].

    Returns:
        AP in [0, 1]; 0.0 for empty arrays.
    """
    r = np.asarray(recall, dtype=np.float64)
    p = np.asarray(precision, dtype=np.float64)
    if r.ndim != 1 or p.ndim != 1 or r.shape != p.shape:
        raise ValueError(f"recall and precision must be 1-D arrays of equal length, got shapes {r.shape} and {p.shape}")
    if not (np.isfinite(r).all() and np.isfinite(p).all()):
        raise ValueError("recall and precision must be finite, got NaN or inf")
    if r.size == 0:
        return 0.0
    mrec = np.concatenate([[0.0], r, [1.0]])
    mpre = np.concatenate([[0.0], p, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _check_predictions(predictions, targets, num_classes):
    if not isinstance(predictions, (list, tuple)) or not isinstance(targets, (list, tuple)):
        raise ValueError("predictions and targets must be lists (one entry per image)")
    if len(predictions) != len(targets):
        raise ValueError(f"predictions and targets must have one entry per image, got {len(predictions)} and {len(targets)}")
    for kind, items, keys in (("predictions", predictions, ("boxes", "scores", "labels")),
                              ("targets", targets, ("boxes", "labels"))):
        for i, d in enumerate(items):
            if not isinstance(d, dict) or any(k not in d for k in keys):
                raise ValueError(f"{kind}[{i}] must be a dict with keys {keys}")
            check_boxes(d["boxes"], f"{kind}[{i}]['boxes']")
            check_tensor(d["labels"], f"{kind}[{i}]['labels']", ndim=1, integer=True)
            n = len(d["boxes"])
            if len(d["labels"]) != n:
                raise ValueError(f"{kind}[{i}]: {n} boxes but {len(d['labels'])} labels")
            if n and (d["labels"].min() < 0 or d["labels"].max() >= num_classes):
                raise ValueError(f"{kind}[{i}]['labels'] must be in [0, {num_classes}), got {d['labels'].tolist()}")
            if "scores" in keys:
                check_tensor(d["scores"], f"{kind}[{i}]['scores']", ndim=1, floating=True)
                if len(d["scores"]) != n:
                    raise ValueError(f"{kind}[{i}]: {n} boxes but {len(d['scores'])} scores")


def match_detections(predictions, targets, num_classes: int = 3, iou_threshold: float = 0.5):
    """VOC-devkit matching of every detection to ground truth.

    Per class, detections of all images are sorted by decreasing score (stable); each takes the
    ground truth of its class in its image with the highest IoU; it is a TP when that IoU is
    ``>= iou_threshold`` and that ground truth is not yet taken, else an FP.

    Returns:
        dict of numpy arrays over all detections, in per-class score order:
        ``label``, ``score``, ``tp`` (bool), ``image``, ``det_index`` (index within its image),
        ``gt_index`` (matched GT within its image or -1), and ``n_gt`` [num_classes].
    """
    _check_predictions(predictions, targets, num_classes)
    out = {k: [] for k in ("label", "score", "tp", "image", "det_index", "gt_index")}
    n_gt = np.zeros(num_classes, dtype=np.int64)
    for t in targets:
        n_gt += np.bincount(t["labels"].numpy(), minlength=num_classes)[:num_classes]
    for c in range(num_classes):
        # IoU of each image's class-c detections with its class-c ground truth (small matrices)
        recs = []
        for img, (p, t) in enumerate(zip(predictions, targets)):
            pm = p["labels"] == c
            if not pm.any():
                continue
            det_idx = torch.nonzero(pm).flatten()
            gt_idx = torch.nonzero(t["labels"] == c).flatten()
            iou = _iou(p["boxes"][det_idx].float(), t["boxes"][gt_idx].float()).numpy()
            recs.append((img, det_idx.numpy(), gt_idx.numpy(), iou, p["scores"][det_idx].float().numpy()))
        if not recs:
            continue
        scores = np.concatenate([r[4] for r in recs])
        image = np.concatenate([np.full(len(r[1]), r[0]) for r in recs])
        local = np.concatenate([np.arange(len(r[1])) for r in recs])
        order = np.argsort(-scores, kind="stable")
        taken = {r[0]: np.zeros(len(r[2]), dtype=bool) for r in recs}
        by_img = {r[0]: r for r in recs}
        tp = np.zeros(len(order), dtype=bool)
        gt_match = np.full(len(order), -1)
        for k, j in enumerate(order):  # sequential by nature (greedy by score); O(detections)
            img, li = image[j], local[j]
            iou = by_img[img][3]
            if iou.shape[1] == 0:
                continue
            g = int(iou[li].argmax())
            if iou[li, g] >= iou_threshold and not taken[img][g]:
                taken[img][g] = True
                tp[k] = True
                gt_match[k] = by_img[img][2][g]
        out["label"].append(np.full(len(order), c))
        out["score"].append(scores[order])
        out["tp"].append(tp)
        out["image"].append(image[order])
        out["det_index"].append(np.concatenate([r[1] for r in recs])[order])
        out["gt_index"].append(gt_match)
    res = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.float64 if k == "score" else np.int64))
           for k, v in out.items()}
    res["tp"] = res["tp"].astype(bool)
    res["n_gt"] = n_gt
    return res


def pr_curve(matches: dict, cls: int):
    """Recall and precision arrays of one class from :func:`match_detections` output."""
    sel = matches["label"] == cls
    tp = matches["tp"][sel].astype(np.float64)
    n_gt = int(matches["n_gt"][cls])
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / max(n_gt, 1)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return recall, precision, matches["score"][sel]


def evaluate_detections(predictions, targets, num_classes: int = 3, iou_threshold: float = 0.5) -> dict:
    """VOC AP@``iou_threshold`` per class and their mean.

    Args:
        predictions: list per image of dicts ``"boxes"`` ``Tensor[D, 4]`` (x1, y1, x2, y2),
            ``"scores"`` ``Tensor[D]``, ``"labels"`` int ``Tensor[D]``.
        targets: list per image of dicts ``"boxes"`` ``Tensor[M, 4]`` (x1, y1, x2, y2) and
            ``"labels"`` int ``Tensor[M]``.
        num_classes: labels must lie in ``[0, num_classes)``.
        iou_threshold: IoU needed for a true positive.

    Returns:
        ``{"ap": [AP per class], "map": float}``; a class without ground truth has AP nan and is
        left out of the mean (``map`` is nan when no class has ground truth); a class with ground
        truth and no detections has AP 0.
    """
    m = match_detections(predictions, targets, num_classes, iou_threshold)
    aps = []
    for c in range(num_classes):
        if m["n_gt"][c] == 0:
            aps.append(float("nan"))
            continue
        r, p, _ = pr_curve(m, c)
        aps.append(voc_ap(r, p))
    valid = [a for a in aps if not math.isnan(a)]
    return {"ap": aps, "map": float(np.mean(valid)) if valid else float("nan")}


# ----------------------------------------------------------------------------- keypoints
PCK_THRESHOLDS = (0.05, 0.10, 0.15, 0.20)


def keypoint_norm(gt: torch.Tensor, norm="bbox") -> torch.Tensor:
    """Per-sample normalizing length ``[N]`` for PCK.

    ``"bbox"``: diagonal of the tight box around the sample's ground-truth keypoints.
    ``"torso"``: a torso proxy from the five keypoints (head, l/r hand, l/r foot): the distance
    from the head to the midpoint of the feet; where that is degenerate (< 1 px) it falls back
    to the bbox diagonal, and to 1 px where both are degenerate.
    A tensor ``[N]`` of positive lengths is used as given.
    """
    if isinstance(norm, torch.Tensor):
        check_tensor(norm, "norm", ndim=1, floating=True)
        if len(norm) != len(gt):
            raise ValueError(f"norm lengths must have one value per sample ({len(gt)}), got {len(norm)}")
        if (norm <= 0).any():
            raise ValueError("norm lengths must be positive")
        return norm.float()
    if isinstance(norm, str) and norm in ("bbox", "torso"):
        diag = (gt.amax(1) - gt.amin(1)).norm(dim=-1)
        if norm == "bbox":
            return diag.clamp(min=1.0)
        if gt.shape[1] < 5:
            raise ValueError(f"norm='torso' needs the 5 keypoints (head, hands, feet), got K={gt.shape[1]}")
        torso = (gt[:, 0] - (gt[:, 3] + gt[:, 4]) / 2).norm(dim=-1)
        return torch.where(torso >= 1.0, torso, diag).clamp(min=1.0)
    raise ValueError(f"norm must be 'bbox', 'torso' or a tensor of per-sample lengths [N], got {norm!r}")


def _check_kp(pred, gt):
    check_tensor(pred, "pred", ndim=3, last=2, floating=True)
    check_tensor(gt, "gt", ndim=3, last=2, floating=True)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape [N, K, 2], got {tuple(pred.shape)} and {tuple(gt.shape)}")


def keypoint_errors(pred: torch.Tensor, gt: torch.Tensor, norm="bbox") -> torch.Tensor:
    """Normalized errors ``[N, K]``: Euclidean distance / per-sample norm (see :func:`keypoint_norm`)."""
    _check_kp(pred, gt)
    return (pred.float() - gt.float()).norm(dim=-1) / keypoint_norm(gt.float(), norm)[:, None]


def pck(pred: torch.Tensor, gt: torch.Tensor, thresholds=PCK_THRESHOLDS, norm="bbox") -> dict:
    """Percentage of correct keypoints.

    A keypoint is correct when its error ``<= tau * norm``.

    Args:
        pred: ``Tensor[N, K, 2]`` predicted (x, y) in image pixels.
        gt: ``Tensor[N, K, 2]`` ground-truth (x, y) in image pixels.
        thresholds: iterable of tau values.
        norm: ``"bbox"`` | ``"torso"`` | ``Tensor[N]`` of lengths (see :func:`keypoint_norm`).

    Returns:
        ``{tau: accuracy}``; with N = 0 every accuracy is nan.
    """
    err = keypoint_errors(pred, gt, norm)
    taus = [float(t) for t in thresholds]
    if any(not math.isfinite(t) or t < 0 for t in taus):
        raise ValueError(f"thresholds must be finite and non-negative, got {taus}")
    if err.numel() == 0:
        return {t: float("nan") for t in taus}
    # a tiny relative tolerance keeps an error exactly on the threshold correct despite rounding
    return {t: float((err <= t * (1 + 1e-6)).float().mean()) for t in taus}


def pck_auc(pred: torch.Tensor, gt: torch.Tensor, max_tau: float = 0.1, norm="bbox") -> float:
    """Area under the PCK curve for tau in ``[0, max_tau]``, divided by ``max_tau`` (1: every keypoint exact).

    The exact integral: a keypoint with normalized error ``e`` is correct for ``tau >= e``, so it adds
    ``1 - min(e / max_tau, 1)``; the mean over keypoints is the area. MMPose's ``keypoint_auc`` is the same idea in
    another form: PCK at 20 thresholds ``i / 20`` of a fixed pixel length (a left Riemann sum, with one norm for
    every figure instead of each figure's box diagonal). Unlike PCK at one threshold it keeps separating models whose
    errors all lie below that threshold.

    Args:
        pred, gt: ``Tensor[N, K, 2]`` (x, y) image pixels; ``norm`` as in :func:`keypoint_norm`.

    Returns:
        the area in ``[0, 1]``; nan for N = 0.
    """
    if not (math.isfinite(max_tau) and max_tau > 0):
        raise ValueError(f"max_tau must be finite and positive, got {max_tau}")
    err = keypoint_errors(pred, gt, norm)
    if err.numel() == 0:
        return float("nan")
    return float((1 - (err.double() / max_tau).clamp(max=1)).mean())


def pck_per_keypoint(pred, gt, tau: float = 0.05, norm="bbox") -> torch.Tensor:
    """PCK of each keypoint ``[K]`` at one threshold."""
    err = keypoint_errors(pred, gt, norm)
    return (err <= tau * (1 + 1e-6)).float().mean(0)


def mean_pixel_error(pred, gt) -> torch.Tensor:
    """Mean Euclidean error in pixels per keypoint ``[K]``."""
    _check_kp(pred, gt)
    return (pred.float() - gt.float()).norm(dim=-1).mean(0)
