"""The seed's multi-scale anchor detector: network, target assignment, loss and decoding.

Network (``width=1.0`` is the seed's, about 4.66 M parameters)::

    Block1  Conv(3->32, s1)-BN-ReLU-Conv(32->64, s2)-BN-ReLU      112x112
    Block2  Conv(64->128, s2)-BN-ReLU                              56x56   S1, stride 4
    Block3  Conv(128->256, s2)-BN-ReLU                             28x28   S2, stride 8
    Block4  Conv(256->512, s2)-BN-ReLU                             14x14   S3, stride 16
    head    3x3 Conv-BN-ReLU (same channels) -> 1x1 Conv to A*(5+C) = 24 channels

Head variants for the receptive-field study (S1 keeps the seed's head in all of them; theoretical
receptive field at S2 / S3):

* ``"seed"``: one 3x3 Conv-BN-ReLU (33 / 65 px);
* ``"deep1x1"``: the seed's 3x3 layer and two 1x1 Conv-BN-ReLU layers: deeper, same field (33 / 65 px);
* ``"deep1x1_wide"``: the same with the 1x1 layers widened to an inverted bottleneck ``C -> 9C -> C``:
  deeper, same field, and the parameter count of ``"deep"`` (``9C^2 + 2 * 9C^2 = 27 C^2``, as three 3x3
  layers): the capacity control;
* ``"deep"``: three 3x3 Conv-BN-ReLU layers: deeper and a wider field (65 / 129 px);
* ``"dilated"``: the same three layers with dilations 1, 2, 4: heads that see their whole objects
  (129 / 257 px) -- the receptive-field-aware variant.

Output channels are grouped per anchor: ``[tx, ty, tw, th, objectness, class_0..class_{C-1}]``.

Box parameterization (YOLOv5): for cell ``(gx, gy)`` of stride ``s`` and anchor side ``a``::

    cx = (gx + 2 sigmoid(tx) - 0.5) * s        w = a * (2 sigmoid(tw))^2
    cy = (gy + 2 sigmoid(ty) - 0.5) * s        h = a * (2 sigmoid(th))^2

Assignment (YOLOv5 ratio matching): a ground-truth box is a positive for *every* anchor of every
head whose side ratio ``max(w/a, a/w, h/a, a/h) < anchor_t`` (4.0), in the cell holding its centre
and, with ``neighbour_cells``, the two neighbouring cells nearest to that centre. This gives each
object several positives on the heads whose anchors suit it, instead of the single best anchor of
YOLOv3. With ``assignment="best_anchor"`` (an arm) each object is instead a positive of the one anchor,
over all heads, whose shape fits it best (IoU of centred boxes), as in YOLOv3 (with ``neighbour_cells``
off: its centre cell only). With ``ignore_iou`` > 0, YOLOv3's ignore threshold: an anchor that is not a
positive but whose predicted box overlaps a ground truth by IoU > ``ignore_iou`` gets no objectness loss
(:func:`ignored_anchors`; YOLOv3 0.5 in its paper, 0.7 in its reference config; 0, the default: off). Loss: ``1 - CIoU`` on positives, BCE objectness against the detached IoU (per-head weights
``obj_balance``), cross-entropy class loss on positives (optionally focal, class-weighted); the three
are summed with the config's ``box_gain``, ``obj_gain``, ``cls_gain`` (0.05, 1.0, 0.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hwlib.config import DETECTOR_HEADS as HEADS, SEED_ANCHORS
from hwlib.vision.boxes import batched_nms, box_iou, check_tensor
from hwlib.vision.layers import conv_bn_relu as _conv_bn, init_weights

STRIDES = (4, 8, 16)


class MultiScaleDetector(nn.Module):
    """Three-scale anchor detector (see the module docstring).

    Args:
        num_classes: C.
        num_anchors: A, anchors per cell on each head.
        width: channel multiplier (1.0 = the seed's network).
        head: ``"seed"`` | ``"deep1x1"`` | ``"deep1x1_wide"`` | ``"deep"`` | ``"dilated"`` (see the module docstring).

    Forward: images ``Tensor[B, 3, 224, 224]`` (float, [0, 1]) ->
    ``(P1 [B, A*(5+C), 56, 56], P2 [B, A*(5+C), 28, 28], P3 [B, A*(5+C), 14, 14])``.
    """

    def __init__(self, num_classes: int = 3, num_anchors: int = 3, width: float = 1.0, head: str = "seed"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if not (isinstance(num_classes, int) and num_classes >= 1 and isinstance(num_anchors, int) and num_anchors >= 1):
            raise ValueError(f"num_classes and num_anchors must be positive ints, got {num_classes}, {num_anchors}")
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.num_classes, self.num_anchors, self.width, self.head_type = num_classes, num_anchors, width, head
        c = [max(4, int(round(ch * width))) for ch in (32, 64, 128, 256, 512)]
        self.block1 = nn.Sequential(_conv_bn(3, c[0]), _conv_bn(c[0], c[1], stride=2))
        self.block2 = _conv_bn(c[1], c[2], stride=2)
        self.block3 = _conv_bn(c[2], c[3], stride=2)
        self.block4 = _conv_bn(c[3], c[4], stride=2)
        out = num_anchors * (5 + num_classes)
        self.heads = nn.ModuleList()
        for level, ch in enumerate(c[2:]):
            if head == "seed" or level == 0:
                layers = [_conv_bn(ch, ch)]
            elif head == "deep1x1":
                layers = [_conv_bn(ch, ch)] + [_conv_bn(ch, ch, kernel=1) for _ in range(2)]
            elif head == "deep1x1_wide":
                layers = [_conv_bn(ch, ch), _conv_bn(ch, 9 * ch, kernel=1), _conv_bn(9 * ch, ch, kernel=1)]
            elif head in ("deep", "dilated"):
                dil = (1, 2, 4) if head == "dilated" else (1, 1, 1)
                layers = [_conv_bn(ch, ch, dilation=d) for d in dil]
            else:  # listed in HEADS (checked above) but not built here: a new head needs its branch
                raise NotImplementedError(f"head {head!r} is listed in DETECTOR_HEADS but has no branch here")
            self.heads.append(nn.Sequential(*layers, nn.Conv2d(ch, out, 1)))
        self._init_weights()

    def _init_weights(self):
        init_weights(self)
        # start with a low objectness prior (about 0.01 per anchor) so early training is stable
        for h in self.heads:
            final = h[-1]
            nn.init.normal_(final.weight, std=0.01)
            b = final.bias.view(self.num_anchors, -1)
            with torch.no_grad():
                b[:, 4].fill_(math.log(0.01 / 0.99))

    def forward(self, x: torch.Tensor):
        f1 = self.block2(self.block1(x))
        f2 = self.block3(f1)
        f3 = self.block4(f2)
        return tuple(h(f) for h, f in zip(self.heads, (f1, f2, f3)))


# ----------------------------------------------------------------------------- targets and loss
def _grid(h: int, w: int, device):
    gy, gx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return gx.float(), gy.float()


def _split(p: torch.Tensor, num_anchors: int):
    """``[B, A*(5+C), H, W]`` -> ``[B, A, H, W, 5+C]``."""
    b, _, h, w = p.shape
    return p.view(b, num_anchors, -1, h, w).permute(0, 1, 3, 4, 2)


def _flatten_targets(targets, device):
    """List of target dicts -> ``[G, 6]`` rows ``(image, class, x1, y1, x2, y2)``."""
    rows = [torch.cat([torch.full((len(t["labels"]), 1), float(i)), t["labels"].float()[:, None], t["boxes"].float()], 1)
            for i, t in enumerate(targets)]
    return torch.cat(rows).to(device) if rows else torch.zeros(0, 6, device=device)


def assign_targets(targets, feature_sizes, anchors=SEED_ANCHORS, strides=STRIDES,
                   anchor_t: float = 4.0, neighbour_cells: bool = True, assignment: str = "ratio"):
    """Positive samples of every head.

    Args:
        targets: list per image of ``{"boxes": Tensor[M, 4] (x1, y1, x2, y2) pixels, "labels": Tensor[M]}``.
        feature_sizes: ``[(H, W)]`` per head.
        assignment: ``"ratio"`` (YOLOv5: every anchor with side ratio ``< anchor_t``) or ``"best_anchor"``
            (YOLOv3: the single anchor over all heads with the highest IoU of centred boxes; ``anchor_t`` unused).

    Returns:
        list per head of dicts of tensors over its P positives: ``image``, ``anchor``, ``gx``,
        ``gy`` (cell indices), ``box`` ``[P, 4]`` target (cx, cy, w, h) in grid units of that head,
        ``cls``, ``gt`` (row in the flattened target list).
    """
    if assignment not in ("ratio", "best_anchor"):
        raise ValueError(f"assignment must be 'ratio' or 'best_anchor', got {assignment!r}")
    gt = _flatten_targets(targets, "cpu")
    if assignment == "best_anchor":
        best = best_anchor_index(gt[:, 4:6] - gt[:, 2:4], anchors)   # [G] flat index level * A + anchor
    out = []
    for level, ((h, w), anc, stride) in enumerate(zip(feature_sizes, anchors, strides)):
        anc = torch.tensor(anc, dtype=torch.float32) / stride
        cxcy = (gt[:, 2:4] + gt[:, 4:6]) / 2 / stride
        wh = (gt[:, 4:6] - gt[:, 2:4]) / stride
        if assignment == "best_anchor":
            ok = best[None, :] == level * len(anc) + torch.arange(len(anc))[:, None]   # [A, G]
        else:
            ratio = wh[None, :, :] / anc[:, None, None]                 # [A, G, 2]
            ok = torch.maximum(ratio, 1 / ratio.clamp(min=1e-9)).amax(-1) < anchor_t
        a_idx, g_idx = torch.nonzero(ok, as_tuple=True)
        c = cxcy[g_idx]
        offsets = [torch.zeros_like(c)]
        keep = [torch.ones(len(c), dtype=torch.bool)]
        if neighbour_cells:
            frac = c % 1.0
            for dim in (0, 1):
                size = (w, h)[dim]
                for sel, step in ((frac[:, dim] < 0.5) & (c[:, dim] > 1), -1.0), ((frac[:, dim] > 0.5) & (c[:, dim] < size - 1), 1.0):
                    o = torch.zeros_like(c)
                    o[:, dim] = step
                    offsets.append(o)
                    keep.append(sel)
        cells, aa, gg = [], [], []
        for o, k in zip(offsets, keep):
            cells.append((c[k] + o[k]).floor())
            aa.append(a_idx[k])
            gg.append(g_idx[k])
        cells, aa, gg = torch.cat(cells), torch.cat(aa), torch.cat(gg)
        gx = cells[:, 0].clamp(0, w - 1).long()
        gy = cells[:, 1].clamp(0, h - 1).long()
        out.append({"image": gt[gg, 0].long(), "anchor": aa, "gx": gx, "gy": gy,
                    "box": torch.cat([cxcy[gg], wh[gg]], 1), "cls": gt[gg, 1].long(), "gt": gg})
    return out


def best_anchor_index(wh: torch.Tensor, anchors=SEED_ANCHORS) -> torch.Tensor:
    """For boxes of size ``wh`` ``[G, 2]`` (w, h) pixels, the index ``level * A + anchor`` of the square anchor
    (sides ``anchors`` ``[3][A]`` pixels) with the highest IoU when both are centred at the same point; ties go
    to the lower index (so with the seed's anchors, where 96 px is both S2's largest and S3's smallest anchor, S3's
    96 px anchor is never chosen). Returns ``LongTensor[G]``."""
    a = torch.tensor(anchors, dtype=torch.float32).reshape(-1)           # [L * A]
    w, h = wh[:, 0:1].float(), wh[:, 1:2].float()
    inter = torch.minimum(w, a) * torch.minimum(h, a)                     # [G, L * A]
    iou = inter / (w * h + a * a - inter)
    return iou.argmax(1) if len(wh) else torch.zeros(0, dtype=torch.long)


def _xywh_to_xyxy(b):
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def ciou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matched boxes ``[P, 4]`` (cx, cy, w, h) -> ``[P]`` (IoU minus centre and aspect penalties)."""
    p, t = _xywh_to_xyxy(pred), _xywh_to_xyxy(target)
    inter = (torch.minimum(p[:, 2:], t[:, 2:]) - torch.maximum(p[:, :2], t[:, :2])).clamp(min=0).prod(-1)
    union = pred[:, 2:].prod(-1) + target[:, 2:].prod(-1) - inter + eps
    iou = inter / union
    enclose = torch.maximum(p[:, 2:], t[:, 2:]) - torch.minimum(p[:, :2], t[:, :2])
    c2 = (enclose ** 2).sum(-1) + eps
    rho2 = ((pred[:, :2] - target[:, :2]) ** 2).sum(-1)
    v = (4 / math.pi ** 2) * (torch.atan(target[:, 2] / (target[:, 3] + eps)) - torch.atan(pred[:, 2] / (pred[:, 3] + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - rho2 / c2 - alpha * v


class DetectionLoss:
    """YOLOv5-style loss for :class:`MultiScaleDetector` outputs (see the module docstring)."""

    def __init__(self, cfg, num_classes: int = 3):
        self.cfg, self.num_classes = cfg, num_classes
        self.anchors = cfg.anchors
        self.num_anchors = len(cfg.anchors[0])
        self.alpha = torch.tensor(cfg.class_alpha, dtype=torch.float32)

    def __call__(self, outputs, targets):
        cfg = self.cfg
        sizes = [tuple(p.shape[-2:]) for p in outputs]
        assigned = assign_targets(targets, sizes, self.anchors, STRIDES, cfg.anchor_t, cfg.neighbour_cells,
                                  cfg.assignment)
        l_box = l_obj = l_cls = outputs[0].new_zeros((), dtype=torch.float32)
        n_pos = 0
        for level, (p, a) in enumerate(zip(outputs, assigned)):
            p = _split(p.float(), self.num_anchors)                      # [B, A, H, W, 5+C]
            obj_target = torch.zeros(p.shape[:4], device=p.device)
            if len(a["image"]):
                dev = p.device
                idx = (a["image"].to(dev), a["anchor"].to(dev), a["gy"].to(dev), a["gx"].to(dev))
                ps = p[idx]
                anc = torch.tensor(self.anchors[level], dtype=torch.float32, device=dev)[idx[1]] / STRIDES[level]
                cell = torch.stack([idx[3], idx[2]], 1).float()
                pxy = cell + ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anc[:, None]
                iou = ciou(torch.cat([pxy, pwh], 1), a["box"].to(dev))
                l_box = l_box + (1.0 - iou).mean()
                obj_target[idx] = iou.detach().clamp(min=0)
                cls = a["cls"].to(dev)
                ce = F.cross_entropy(ps[:, 5:], cls, reduction="none")
                if cfg.focal_gamma > 0:
                    ce = ce * (1 - torch.exp(-ce)) ** cfg.focal_gamma
                l_cls = l_cls + (ce * self.alpha.to(dev)[cls]).mean()
                n_pos += len(cls)
            bce = F.binary_cross_entropy_with_logits(p[..., 4], obj_target, reduction="none")
            if cfg.ignore_iou > 0:                                       # YOLOv3: near-misses are not negatives
                keep = ~ignored_anchors(p.detach(), level, self.anchors[level], targets, cfg.ignore_iou)
                if len(a["image"]):
                    keep[idx] = True
                bce = bce * keep
            if cfg.focal_gamma > 0:
                prob = p[..., 4].sigmoid()
                p_t = prob * obj_target + (1 - prob) * (1 - obj_target)
                bce = bce * (1 - p_t) ** cfg.focal_gamma
            l_obj = l_obj + cfg.obj_balance[level] * bce.mean()
        loss = cfg.box_gain * l_box + cfg.obj_gain * l_obj + cfg.cls_gain * l_cls
        return loss, {"box": float(l_box.detach()), "obj": float(l_obj.detach()), "cls": float(l_cls.detach()), "pos": n_pos}


def ignored_anchors(p: torch.Tensor, level: int, anchors, targets, threshold: float) -> torch.Tensor:
    """YOLOv3's ignore rule: which anchors of one head predict a box that overlaps a ground truth by more than
    ``threshold`` (IoU), and so are exempt from the objectness loss where they are not positives (the caller keeps
    its positives).

    Args:
        p: ``[B, A, H, W, 5+C]`` raw outputs of head ``level`` (:func:`_split`); anchors: its ``A`` anchor sides (px).
        targets: ``B`` dicts with ``"boxes"`` ``[M, 4]`` ``xyxy`` pixels.

    Returns:
        bool ``[B, A, H, W]``.
    """
    b, na, h, w, _ = p.shape
    gx, gy = _grid(h, w, p.device)
    s = STRIDES[level]
    anc = torch.tensor(anchors, dtype=torch.float32, device=p.device).view(1, na, 1, 1)
    cx = (gx + p[..., 0].sigmoid() * 2 - 0.5) * s
    cy = (gy + p[..., 1].sigmoid() * 2 - 0.5) * s
    bw = (p[..., 2].sigmoid() * 2) ** 2 * anc
    bh = (p[..., 3].sigmoid() * 2) ** 2 * anc
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(b, -1, 4)
    out = torch.zeros(b, na * h * w, dtype=torch.bool, device=p.device)
    for i, t in enumerate(targets):
        gt = t["boxes"].to(p.device, torch.float32)
        if len(gt):
            out[i] = box_iou(boxes[i], gt).max(1).values > threshold
    return out.view(b, na, h, w)


# ----------------------------------------------------------------------------- decoding
def decode_outputs(outputs, anchors=SEED_ANCHORS, num_classes: int = 3):
    """Raw head outputs -> every anchor's box, score and class.

    Args:
        outputs: ``(P1, P2, P3)`` as returned by :class:`MultiScaleDetector`.

    Returns:
        boxes ``[B, N, 4]`` (x1, y1, x2, y2) pixels, scores ``[B, N]`` = sigmoid(obj) * max softmax(cls),
        labels ``[B, N]`` (argmax class), heads ``[B, N]`` (0, 1, 2 for S1, S2, S3), with N the total
        number of anchors over the three heads.
    """
    boxes, scores, labels, heads = [], [], [], []
    for level, p in enumerate(outputs):
        na = len(anchors[level])
        p = _split(p.float(), na)
        b, _, h, w, _ = p.shape
        gx, gy = _grid(h, w, p.device)
        anc = torch.tensor(anchors[level], dtype=torch.float32, device=p.device).view(1, na, 1, 1)
        s = STRIDES[level]
        cx = (gx + p[..., 0].sigmoid() * 2 - 0.5) * s
        cy = (gy + p[..., 1].sigmoid() * 2 - 0.5) * s
        bw = (p[..., 2].sigmoid() * 2) ** 2 * anc
        bh = (p[..., 3].sigmoid() * 2) ** 2 * anc
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        prob = p[..., 4].sigmoid()[..., None] * p[..., 5:5 + num_classes].softmax(-1)
        sc, lab = prob.max(-1)
        boxes.append(xyxy.reshape(b, -1, 4))
        scores.append(sc.reshape(b, -1))
        labels.append(lab.reshape(b, -1))
        heads.append(torch.full_like(lab.reshape(b, -1), level))
    return torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(labels, 1), torch.cat(heads, 1)


def decode_predictions(outputs, anchors=SEED_ANCHORS, num_classes: int = 3, conf_threshold: float = 0.5,
                       nms_iou: float = 0.6, max_det: int = 100, pre_nms_topk: int = 1000,
                       s3_conf: float | None = None, image_size: int = 224):
    """Offsets + anchors -> final detections per image.

    score = sigmoid(objectness) * softmax(class scores) (best class per anchor); boxes with
    ``score >= conf_threshold`` (and, if ``s3_conf`` is set, S3 boxes with ``score >= s3_conf``)
    are clipped to the image, the ``pre_nms_topk`` best go through per-class NMS at ``nms_iou``,
    and at most ``max_det`` are kept.

    Returns:
        list per image of ``{"boxes": [D, 4] (x1, y1, x2, y2), "scores": [D], "labels": [D], "heads": [D]}``.
    """
    if not 0 <= conf_threshold <= 1:
        raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
    boxes, scores, labels, heads = decode_outputs(outputs, anchors, num_classes)
    results = []
    for b in range(boxes.shape[0]):
        keep = scores[b] >= conf_threshold
        if s3_conf is not None:
            keep &= (heads[b] != 2) | (scores[b] >= s3_conf)
        idx = torch.nonzero(keep).flatten()
        if len(idx) > pre_nms_topk:
            idx = idx[scores[b, idx].topk(pre_nms_topk).indices]
        bx = boxes[b, idx].clamp(0, image_size)
        k = batched_nms(bx, scores[b, idx], labels[b, idx], nms_iou)[:max_det]
        sel = idx[k]
        results.append({"boxes": bx[k], "scores": scores[b, sel], "labels": labels[b, sel], "heads": heads[b, sel]})
    return results


def encode_boxes(boxes: torch.Tensor, cells: torch.Tensor, anchor: torch.Tensor, stride: int) -> torch.Tensor:
    """Inverse of the box parameterization: boxes ``[P, 4]`` (x1, y1, x2, y2) pixels, their cells
    ``[P, 2]`` (gx, gy) and anchor sides ``[P]`` -> raw offsets ``[P, 4]`` (tx, ty, tw, th).

    Valid where the centre lies within (-0.5, 1.5) cells of ``cells`` and each side within
    (0, 4) anchors, which is what the assignment guarantees."""
    check_tensor(boxes, "boxes", ndim=2, last=4, floating=True)
    cxcy = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride
    wh = boxes[:, 2:] - boxes[:, :2]
    sxy = ((cxcy - cells.float() + 0.5) / 2).clamp(1e-6, 1 - 1e-6)
    swh = (torch.sqrt(wh / anchor[:, None]) / 2).clamp(1e-6, 1 - 1e-6)
    return torch.logit(torch.cat([sxy, swh], 1))


def images_to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float ``[B, 3, H, W]`` in [0, 1]."""
    return images.float().div_(255.0)


def build_detector(cfg) -> MultiScaleDetector:
    """The :class:`MultiScaleDetector` a :class:`~hwlib.config.DetectorConfig` describes (3 classes, its anchors per
    head, width and head variant)."""
    return MultiScaleDetector(num_classes=3, num_anchors=len(cfg.anchors[0]), width=cfg.width, head=cfg.head)
