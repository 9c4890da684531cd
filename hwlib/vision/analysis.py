"""Analyses behind notebooks 03 and 06: scale specialization, anchor coverage, failure types."""

from __future__ import annotations

import numpy as np
import torch

from hwlib.config import CLASS_NAMES, DetectorConfig
from hwlib.vision.boxes import _iou
from hwlib.vision.metrics import match_detections

BUCKETS = ("small", "medium", "large")
SIZE_BUCKETS = DetectorConfig().size_buckets   # default boundaries (39, 91) px; see DetectorConfig


def size_bucket(sizes, boundaries=SIZE_BUCKETS) -> np.ndarray:
    """0 small, 1 medium, 2 large for sizes sqrt(w*h) (pixels); a size equal to a boundary goes to the
    larger bucket."""
    return np.digitize(np.asarray(sizes, dtype=float), boundaries)


def _gt_sizes(targets):
    out = []
    for t in targets:
        b = t["boxes"]
        out.append(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt().numpy())
    return out


def head_bucket_table(preds, targets, boundaries=SIZE_BUCKETS, num_classes: int = 3):
    """True positives after NMS by producing head (rows S1, S2, S3) x GT size bucket (columns), and
    recall per bucket.

    ``preds`` carry ``"heads"``; TPs are VOC matches at IoU 0.5 among the detections given (filter the
    confidence first for the seed's protocol).

    Returns:
        ``{"tp": int [3, 3], "recall": [3], "n_gt": [3]}``.
    """
    core = [{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds]
    m = match_detections(core, targets, num_classes, 0.5)
    sizes = _gt_sizes(targets)
    table = np.zeros((3, 3), dtype=np.int64)
    found = [np.zeros(len(t["labels"]), dtype=bool) for t in targets]
    for img, det, gt, tp in zip(m["image"], m["det_index"], m["gt_index"], m["tp"]):
        if tp:
            head = int(preds[img]["heads"][det])
            table[head, size_bucket(sizes[img][gt], boundaries)] += 1
            found[img][gt] = True
    all_sizes = np.concatenate(sizes) if sizes else np.zeros(0)
    all_found = np.concatenate(found) if found else np.zeros(0, dtype=bool)
    bucket = size_bucket(all_sizes, boundaries)
    n_gt = np.bincount(bucket, minlength=3)
    recall = np.array([all_found[bucket == b].mean() if n_gt[b] else np.nan for b in range(3)])
    return {"tp": table, "recall": recall, "n_gt": n_gt}


def best_anchor_iou(boxes: torch.Tensor, anchors) -> tuple[np.ndarray, np.ndarray]:
    """IoU of each GT box ``[M, 4]`` (x1, y1, x2, y2) with the best square anchor centred on it, and that
    anchor's head (0, 1, 2)."""
    wh = (boxes[:, 2:] - boxes[:, :2]).numpy()
    sides = np.array([a for anc in anchors for a in anc], dtype=float)
    heads = np.array([h for h, anc in enumerate(anchors) for _ in anc])
    iw = np.minimum(wh[:, :1], sides[None])
    ih = np.minimum(wh[:, 1:], sides[None])
    inter = iw * ih
    iou = inter / (wh[:, :1] * wh[:, 1:] + sides[None] ** 2 - inter)
    k = iou.argmax(1)
    return iou.max(1), heads[k]


def assignment_statistics(targets, anchors, anchor_t=4.0, neighbour_cells=True, assignment: str = "ratio",
                          by: str = "class", boundaries=SIZE_BUCKETS) -> np.ndarray:
    """Mean positives per image that the training assignment (:func:`hwlib.vision.detector.assign_targets`) gives each
    head (rows S1, S2, S3), from the objects of each class (``by="class"``: columns circle, square, triangle) or
    of each size bucket (``by="size"``: columns small, medium, large by sqrt(w*h) against ``boundaries``).

    Args:
        targets: list per image of ``{"boxes": Tensor[M, 4] (x1, y1, x2, y2) pixels, "labels": Tensor[M]}``.
        anchors: square anchor sides in pixels, per head; ``anchor_t``, ``neighbour_cells``, ``assignment``: as in
            :class:`~hwlib.config.DetectorConfig`.
    """
    from hwlib.vision.detector import STRIDES, assign_targets

    if by not in ("class", "size"):
        raise ValueError(f"by must be 'class' or 'size', got {by!r}")
    sizes = [(224 // s, 224 // s) for s in STRIDES]
    a = assign_targets(targets, sizes, anchors, STRIDES, anchor_t, neighbour_cells, assignment)
    column = (torch.cat([t["labels"] for t in targets]).long().numpy() if by == "class" else
              size_bucket(np.concatenate(_gt_sizes(targets)), boundaries)) if targets else np.zeros(0, dtype=int)
    out = np.zeros((3, 3))
    for h in range(3):
        out[h] = np.bincount(column[a[h]["gt"].numpy()], minlength=3)[:3] / max(len(targets), 1)
    return out


def positive_anchor_scores(outputs, targets, cfg) -> dict:
    """How a trained detector treats the anchors its own training assignment made positive: do they localise their
    object, and does their score rank them above the image's other boxes? (The test behind a detector that trains
    but barely detects: an assignment defect shows as a poor box or a wrong class at the positive anchors, an
    objectness that never learned to fire as a good box with a low score ranked below background boxes.)

    Args:
        outputs: raw head outputs ``(P1, P2, P3)``, each ``[N, A*(5+C), H, W]`` (:class:`~hwlib.vision.detector.MultiScaleDetector`).
        targets: list of ``N`` dicts ``{"boxes": Tensor[M, 4] (x1, y1, x2, y2) pixels, "labels": Tensor[M]}``.
        cfg: the :class:`~hwlib.config.DetectorConfig` the model trained with (anchors and assignment rule).

    Returns:
        ``{class name: {...}}`` over the positive anchors of that class's objects, and ``"all"``: ``positives``
        (count), ``objects`` (with at least one positive), medians over positives of ``iou`` (the positive's decoded
        box with its object), ``prior_iou`` (the same for the box all-zero outputs decode to: the anchor centred in its
        cell, what an untrained head gives), ``objectness`` (sigmoid), ``class_prob`` (softmax probability of the
        object's class), ``score`` (objectness x best class probability) and ``rank`` (how many boxes of its image
        score higher), ``label_right`` (share whose best class is the object's), and medians over objects of
        ``object_score`` and ``object_rank``, those of the object's best-scoring positive; plus
        ``"image_top_score"``, the median over images of the highest score of any box.
    """
    from hwlib.vision.detector import STRIDES, _flatten_targets, assign_targets, decode_outputs

    nc = len(CLASS_NAMES)
    boxes, scores, labels, _ = decode_outputs(outputs, cfg.anchors, nc)                        # [N, K, ...]
    sizes = [tuple(o.shape[-2:]) for o in outputs]
    assigned = assign_targets(targets, sizes, cfg.anchors, STRIDES, cfg.anchor_t, cfg.neighbour_cells, cfg.assignment)
    na, start, flat, raw, prior = len(cfg.anchors[0]), 0, [], [], []
    for level, ((h, w), a) in enumerate(zip(sizes, assigned)):
        flat.append(start + (a["anchor"] * h + a["gy"]) * w + a["gx"])     # its index in decode_outputs' order
        start += na * h * w
        p = outputs[level].float().reshape(len(outputs[level]), na, 5 + nc, h, w)
        raw.append(p[a["image"], a["anchor"], :, a["gy"], a["gx"]])          # [P, 5 + C] its raw outputs
        side = torch.tensor(cfg.anchors[level], dtype=torch.float32)[a["anchor"]]
        c = torch.stack([a["gx"], a["gy"]], 1).float() * STRIDES[level] + STRIDES[level] / 2
        prior.append(torch.cat([c - side[:, None] / 2, c + side[:, None] / 2], 1))   # all-zero outputs' box
    flat, raw, prior = torch.cat(flat), torch.cat(raw), torch.cat(prior)
    img = torch.cat([a["image"] for a in assigned])
    g = torch.cat([a["gt"] for a in assigned])
    gt = _flatten_targets(targets, "cpu")
    cls = gt[g, 1].long()
    box, score = boxes[img, flat], scores[img, flat]

    def pair_iou(b, t):                                     # matched pairs [P, 4] x [P, 4] -> [P]
        inter = (torch.minimum(b[:, 2:], t[:, 2:]) - torch.maximum(b[:, :2], t[:, :2])).clamp(min=0).prod(-1)
        union = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1) + (t[:, 2:] - t[:, :2]).prod(-1) - inter
        return inter / union.clamp(min=1e-12)

    iou, prior_iou = pair_iou(box, gt[g, 2:6]), pair_iou(prior, gt[g, 2:6])
    objectness = raw[:, 4].sigmoid()
    class_prob = raw[:, 5:].softmax(-1).gather(1, cls[:, None])[:, 0] if len(cls) else torch.zeros(0)
    rank = (scores[img] > score[:, None]).sum(1).float()
    right = (labels[img, flat] == cls).float()

    # per object, its best positive (highest score): how the object itself is ranked, however many positives it has
    best = torch.full((len(gt),), -1.0).scatter_reduce(0, g, score, "amax") if len(g) else torch.zeros(len(gt))
    has = torch.zeros(len(gt), dtype=torch.bool)
    has[g] = True
    best_rank = (scores[gt[:, 0].long()] > best[:, None]).sum(1).float() if len(gt) else torch.zeros(0)

    def stats(m, o):
        med = lambda x, k: float(x[k].median()) if k.any() else None     # None: no positive of this class
        whole = lambda x, k: int(x[k].median()) if k.any() else None     # a median rank (torch's median is an element)
        return {"positives": int(m.sum()), "objects": int(o.sum()), "iou": med(iou, m), "prior_iou": med(prior_iou, m),
                "objectness": med(objectness, m), "class_prob": med(class_prob, m), "score": med(score, m),
                "rank": whole(rank, m), "label_right": float(right[m].mean()) if m.any() else None,
                "object_score": med(best, o), "object_rank": whole(best_rank, o)}

    gcls = gt[:, 1].long()
    out = {n: stats(cls == c, has & (gcls == c)) for c, n in enumerate(CLASS_NAMES)}
    out["all"] = stats(torch.ones_like(cls, dtype=torch.bool), has)
    out["image_top_score"] = float(scores.max(1).values.median()) if scores.numel() else None
    return out


def confusion_any_size(preds, targets, iou_threshold=0.5, num_classes=3) -> np.ndarray:
    """For each GT: the class of the highest-scoring detection (any class) with IoU >= threshold, or
    "missed" (last column). Rows GT class, columns predicted class + missed."""
    m = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for p, t in zip(preds, targets):
        if len(t["labels"]) == 0:
            continue
        if len(p["boxes"]) == 0:
            for l in t["labels"].tolist():
                m[l, num_classes] += 1
            continue
        iou = _iou(t["boxes"].float(), p["boxes"].float())            # [M, D]
        score = torch.where(iou >= iou_threshold, p["scores"][None].float(), torch.full_like(iou, -1.0))
        best = score.argmax(1)
        ok = score.max(1).values >= 0
        for l, b, o in zip(t["labels"].tolist(), best.tolist(), ok.tolist()):
            m[l, int(p["labels"][b]) if o else num_classes] += 1
    return m


def ap_by_class_and_size(preds, targets, boundaries=SIZE_BUCKETS) -> dict:
    """AP@0.5 of each class restricted to GT (and detections) of one size bucket: {class: {bucket: AP}}.

    Detections are assigned to the bucket of their own box size, so a class is scored on how well it
    is found *at that size*."""
    from hwlib.vision.metrics import evaluate_detections

    out = {n: {} for n in CLASS_NAMES}
    for b, bname in enumerate(BUCKETS):
        pp, tt = [], []
        for p, t in zip(preds, targets):
            sp = ((p["boxes"][:, 2] - p["boxes"][:, 0]) * (p["boxes"][:, 3] - p["boxes"][:, 1])).clamp(min=0).sqrt().numpy()
            st = ((t["boxes"][:, 2] - t["boxes"][:, 0]) * (t["boxes"][:, 3] - t["boxes"][:, 1])).sqrt().numpy()
            kp_ = torch.from_numpy(size_bucket(sp, boundaries) == b)
            kt = torch.from_numpy(size_bucket(st, boundaries) == b)
            pp.append({"boxes": p["boxes"][kp_], "scores": p["scores"][kp_], "labels": p["labels"][kp_]})
            tt.append({"boxes": t["boxes"][kt], "labels": t["labels"][kt]})
        ap = evaluate_detections(pp, tt)["ap"]
        for c, n in enumerate(CLASS_NAMES):
            out[n][bname] = ap[c]
    return out


# ----------------------------------------------------------------------------- keypoint failures
def failure_types(err_a: np.ndarray, err_b: np.ndarray, tau: float) -> dict:
    """Per keypoint: type A (model a right, b wrong), B (a wrong, b right), C (both wrong), ok (both right).

    Args:
        err_a, err_b: normalized errors ``[N, K]`` of the two models (e.g. heatmap, regression).
    """
    ra, rb = err_a <= tau * (1 + 1e-6), err_b <= tau * (1 + 1e-6)
    return {"A": ra & ~rb, "B": ~ra & rb, "C": ~ra & ~rb, "ok": ra & rb}


def rates_by_attribute(types: dict, values: np.ndarray, edges, labels, keypoints=(1, 2)) -> dict:
    """Share of the chosen keypoints (default: the two hands) of each failure type in bins of a per-sample
    attribute."""
    b = np.digitize(values, edges)
    out = {"bins": list(labels), "A": [], "B": [], "C": [], "n": []}
    for i in range(len(labels)):
        sel = b == i
        out["n"].append(int(sel.sum()))
        for t in ("A", "B", "C"):
            v = types[t][sel][:, list(keypoints)]
            out[t].append(float(v.mean()) if v.size else float("nan"))
    return out


# ----------------------------------------------------------------------------- dataset statistics
def data_statistics(targets, keypoint_meta: dict | None = None, buckets=SIZE_BUCKETS) -> dict:
    """Statistics of a detection sample and a stick-figure sample (notebook 01 and the report's ``\\Data*``
    macros).

    Args:
        targets (list[dict]): one dict per detection image with ``"boxes"`` (``Tensor[M, 4]`` x1, y1, x2, y2
            in pixels) and ``"labels"`` (``Tensor[M]`` class indices into :data:`~hwlib.config.CLASS_NAMES`).
        keypoint_meta (dict, optional): the ``meta`` of :func:`hwlib.vision.data.make_keypoint_data` (``return_meta=True``):
            per-figure arrays ``"hard"`` (0 normal, 1 hands together, 2 hands on torso), ``"ambiguous"``
            (bool) and ``"hand_distance"`` (pixels). Without it the ``kp_*`` entries are left out.
        buckets (tuple[float, float]): size boundaries small | medium | large of :func:`size_bucket`,
            normally ``profile.detector.size_buckets``.

    Returns:
        dict: ``n_images``; ``objects_per_image`` (mean) and ``objects_per_image_range`` ``[min, max]``;
        ``class_counts`` ``{class: objects}``; ``size_range`` ``{class: [min, max]}`` of the object size
        sqrt(w*h) in pixels (``[nan, nan]`` for a class with no object); ``generator_size_range`` (the
        generator's ranges, :data:`hwlib.vision.data.CLASS_SIZE_RANGES`); ``bucket_share`` ``{small, medium,
        large: share of all objects}``; ``kp_hard_share`` (share of figures with a hard pose);
        ``kp_ambiguous_share``; ``kp_hand_distance_median`` (pixels). Plain Python numbers throughout.
    """
    from hwlib.vision.data import CLASS_SIZE_RANGES

    per_image = np.array([len(t["labels"]) for t in targets], dtype=np.int64)
    sizes = (np.concatenate([_gt_sizes([t])[0] for t in targets]) if targets else np.zeros(0)).astype(float)
    labels = np.concatenate([t["labels"].numpy() for t in targets]) if targets else np.zeros(0, dtype=np.int64)
    bucket = size_bucket(sizes, buckets)
    share = lambda sel: float(sel.mean()) if sel.size else float("nan")  # noqa: E731
    size_range = {}
    for c, name in enumerate(CLASS_NAMES):
        s = sizes[labels == c]
        size_range[name] = [float(s.min()), float(s.max())] if s.size else [float("nan"), float("nan")]
    out = {
        "n_images": len(targets),
        "objects_per_image": share(per_image),
        "objects_per_image_range": [int(per_image.min()), int(per_image.max())] if per_image.size else [0, 0],
        "class_counts": {n: int((labels == c).sum()) for c, n in enumerate(CLASS_NAMES)},
        "size_range": size_range,
        "generator_size_range": {CLASS_NAMES[c]: [float(v) for v in r] for c, r in CLASS_SIZE_RANGES.items()},
        "bucket_share": {b: share(bucket == i) for i, b in enumerate(BUCKETS)},
    }
    if keypoint_meta is None:
        return out
    return {
        **out,
        "kp_hard_share": share(np.asarray(keypoint_meta["hard"]) > 0),
        "kp_ambiguous_share": share(np.asarray(keypoint_meta["ambiguous"])),
        "kp_hand_distance_median": float(np.median(np.asarray(keypoint_meta["hand_distance"], dtype=float))),
    }


def tp_table_of_record(metrics: dict, targets, protocol: str = "seed", boundaries=SIZE_BUCKETS) -> dict:
    """The :func:`head_bucket_table` of one run rebuilt from its record's metrics (``tp_share_<protocol>``,
    ``recall_<protocol>``, :func:`hwlib.study.detection.detector_metrics`) and the ground truth it was scored on, without
    its weights: ``tp = share x n_gt`` (exact: the shares are integer counts divided by ``max(n_gt, 1)``).

    Returns:
        ``{"tp": int [3, 3], "recall": [3], "n_gt": [3]}``.
    """
    n_gt = np.bincount(size_bucket(np.concatenate(_gt_sizes(targets)) if len(targets) else np.zeros(0), boundaries),
                       minlength=3)
    share = np.asarray(metrics[f"tp_share_{protocol}"], dtype=float)
    tp = np.rint(share * np.maximum(n_gt, 1)[None, :]).astype(np.int64)
    return {"tp": tp, "recall": np.asarray(metrics[f"recall_{protocol}"], dtype=float), "n_gt": n_gt}
