"""Boxes: IoU and class-aware NMS, plus the input checks shared by the public API.

Boxes are ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)`` pixel coordinates, continuous, with
``x1 <= x2`` and ``y1 <= y2``; area = ``(x2 - x1) * (y2 - y1)``.
"""

from __future__ import annotations

import torch


def check_tensor(x, name: str, *, ndim: int | None = None, last: int | None = None,
                 floating: bool = False, integer: bool = False, finite: bool = True) -> torch.Tensor:
    """Validate a tensor argument; raise ``ValueError`` saying what was expected and what came."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if last is not None and (x.dim() == 0 or x.shape[-1] != last):
        raise ValueError(f"{name} must have last dimension {last}, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise ValueError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    if finite and x.is_floating_point() and x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return x


def check_boxes(boxes, name: str = "boxes") -> torch.Tensor:
    """``boxes`` must be a finite float ``[N, 4]`` tensor with x1 <= x2 and y1 <= y2."""
    check_tensor(boxes, name, ndim=2, last=4, floating=True)
    if boxes.numel() and ((boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any()):
        raise ValueError(f"{name} must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2")
    return boxes


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``boxes`` ``[N, 4]`` (x1, y1, x2, y2) -> ``[N]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union.

    Args:
        boxes1: ``Tensor[N, 4]`` (x1, y1, x2, y2).
        boxes2: ``Tensor[M, 4]`` (x1, y1, x2, y2).

    Returns:
        ``Tensor[N, M]``: IoU in [0, 1]; 0 where the union is empty (two degenerate boxes).
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    return _iou(boxes1.float(), boxes2.float())


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """Per-class non-maximum suppression.

    A box is dropped when its IoU with an already kept box of the same label is
    ``> iou_threshold``.

    Args:
        boxes: ``Tensor[N, 4]`` (x1, y1, x2, y2).
        scores: ``Tensor[N]``.
        labels: integer ``Tensor[N]``; boxes of different labels never suppress each other.
        iou_threshold: in [0, 1].

    Returns:
        int64 ``Tensor[K]``: indices of the kept boxes, by decreasing score.
    """
    check_boxes(boxes)
    check_tensor(scores, "scores", ndim=1, floating=True)
    check_tensor(labels, "labels", ndim=1, integer=True)
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f"boxes, scores and labels must have the same length, "
                         f"got {len(boxes)}, {len(scores)}, {len(labels)}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if len(boxes) == 0:
        return torch.empty(0, dtype=torch.int64)
    # offset each class into its own region so a single NMS never mixes classes
    boxes = boxes.float()
    span = (boxes.max() - boxes.min()).abs() + 1
    shifted = boxes + (labels.to(boxes) * span)[:, None]
    order = torch.argsort(scores, descending=True, stable=True)
    iou = _iou(shifted[order], shifted[order])
    keep = _greedy_keep(iou, float(iou_threshold))
    return order[keep]


def _greedy_keep(iou: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy suppression on an IoU matrix of score-sorted boxes; returns a bool mask."""
    n = iou.shape[0]
    over = (iou > threshold).triu(diagonal=1)
    keep = torch.ones(n, dtype=torch.bool)
    # loop over boxes that suppress anything at all; the mask update itself is vectorized
    for i in torch.nonzero(over.any(1)).flatten().tolist():
        if keep[i]:
            keep &= ~over[i]
    return keep
