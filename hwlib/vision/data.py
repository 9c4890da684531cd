"""Synthetic data: coloured shapes for detection, stick figures for keypoints.

Both generators are deterministic for a seed and vectorized: shapes are rasterized for a whole
chunk of images at once by testing every pixel centre ``(x + 0.5, y + 0.5)`` against each object
with numpy broadcasting; only the placement of objects (a handful per image) loops in Python.

Pixel convention: pixel ``(row y, col x)`` covers ``[x, x+1) x [y, y+1)``; a box ``(x1, y1, x2, y2)``
in continuous coordinates, so the tight box of the drawn pixels is
``(min col, min row, max col + 1, max row + 1)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hwlib.config import CLASS_NAMES, KEYPOINT_NAMES

IMAGE_SIZE = 224
KP_IMAGE_SIZE = 128

# object size (sqrt of the tight box's w*h, pixels) tied to class, as in the seed:
# circles small (S1 anchors 16-32), squares medium (S2 48-96), triangles large (S3 96-192)
CLASS_SIZE_RANGES = {0: (14.0, 36.0), 1: (44.0, 88.0), 2: (96.0, 176.0)}
ANY_SIZE_RANGE = (14.0, 176.0)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)


def _check_options(options: dict, valid: dict, fn: str) -> dict:
    unknown = set(options) - set(valid)
    if unknown:
        raise ValueError(f"{fn}: unknown option(s) {sorted(unknown)}; valid options: {sorted(valid)}")
    return {**valid, **options}


# ----------------------------------------------------------------------------- detection
def _triangle_vertices(rng: np.random.Generator, size: float) -> np.ndarray:
    """A random triangle (3, 2) centred on its box, whose tight box has sqrt(w*h) == size."""
    theta = rng.uniform(0, 2 * np.pi)
    # irregular triangles: three angles around the circumcircle, kept from degenerating
    base = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.35, 0.35, 3)
    v = np.stack([np.cos(base + theta), np.sin(base + theta)], 1)
    lo, hi = v.min(0), v.max(0)
    v = (v - (lo + hi) / 2) * (size / math.sqrt((hi - lo).prod()))
    return v


def _place_objects(rng, n_objects, size_mode, max_overlap, image_size, tally=None):
    """Sample classes, sizes and positions of one image; returns a list of object dicts.

    A placement that does not fit (off the image, or overlapping another box too much) is tried again, up to 20
    times. Without ``tally`` (the first round's generator) the class is re-drawn with each try, so the small circles,
    which fit most often, win the retries and are over-represented. With ``tally``, an ``int[2, 3]`` array of the
    objects of each class drawn so far and of those placed (updated here, shared by the images of one dataset),
    the class is drawn once per object, with probability proportional to the inverse of its placement rate so far,
    and only size and position are re-drawn; an image's classes are placed in decreasing class index (with sizes tied
    to class, the largest first, while the image is still empty). The expected count of every class is then about
    equal."""
    objects, boxes = [], []
    if tally is None:
        classes = [None] * n_objects
    else:
        p = (tally[0] + 1) / (tally[1] + 1)
        classes = sorted(rng.choice(3, n_objects, p=p / p.sum()).tolist(), reverse=True)
    for cls in classes:
        if tally is not None:
            tally[0, cls] += 1
        for _attempt in range(20):
            if tally is None:
                cls = int(rng.integers(0, 3))
            lo, hi = CLASS_SIZE_RANGES[cls] if size_mode == "class" else ANY_SIZE_RANGE
            size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if cls == 2:
                verts = _triangle_vertices(rng, size)
                half = np.abs(verts).max(0)
            else:
                verts = None
                half = np.array([size / 2, size / 2])
            margin = half + 1
            if np.any(2 * margin >= image_size):
                continue
            centre = rng.uniform(margin, image_size - margin)
            box = np.concatenate([centre - half, centre + half])
            if boxes:
                b = np.array(boxes)
                ix = np.clip(np.minimum(b[:, 2], box[2]) - np.maximum(b[:, 0], box[0]), 0, None)
                iy = np.clip(np.minimum(b[:, 3], box[3]) - np.maximum(b[:, 1], box[1]), 0, None)
                inter = ix * iy
                area = (box[2] - box[0]) * (box[3] - box[1])
                # limited overlap: at most max_overlap of either box is covered by the other
                areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
                if np.any(inter > max_overlap * np.minimum(area, areas)):
                    continue
            boxes.append(box)
            objects.append({"cls": cls, "centre": centre, "size": size, "verts": verts})
            if tally is not None:
                tally[1, cls] += 1
            break
    return objects


def _shape_mask(obj, xs, ys):
    """Boolean [H, W] mask of the pixel centres inside one object."""
    cx, cy = obj["centre"]
    if obj["cls"] == 0:  # circle of diameter size
        r = obj["size"] / 2
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if obj["cls"] == 1:  # axis-aligned square of side size
        h = obj["size"] / 2
        return (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    v = obj["verts"] + obj["centre"]  # triangle: same side of all three edges
    signs = []
    for i in range(3):
        (x0, y0), (x1, y1) = v[i], v[(i + 1) % 3]
        signs.append((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0))
    s0, s1, s2 = signs
    return ((s0 >= 0) & (s1 >= 0) & (s2 >= 0)) | ((s0 <= 0) & (s1 <= 0) & (s2 <= 0))


def _background(rng, n, size):
    """Smooth random colour gradients plus low-frequency texture, float32 [n, size, size, 3] in [0,1]."""
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    base = rng.uniform(0.1, 0.9, (n, 1, 1, 3)).astype(np.float32)
    gx = rng.uniform(-0.25, 0.25, (n, 1, 1, 3)).astype(np.float32)
    gy = rng.uniform(-0.25, 0.25, (n, 1, 1, 3)).astype(np.float32)
    img = base + gx * (t[None, None, :, None] - 0.5) + gy * (t[None, :, None, None] - 0.5)
    freq = rng.uniform(2, 8, (n, 2)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 2)).astype(np.float32)
    amp = rng.uniform(0.0, 0.08, (n, 1, 1, 1)).astype(np.float32)
    tex = (np.sin(2 * np.pi * freq[:, 0, None, None] * t[None, None, :] + phase[:, 0, None, None])
           * np.sin(2 * np.pi * freq[:, 1, None, None] * t[None, :, None] + phase[:, 1, None, None]))
    return img + amp * tex[..., None]


def make_detection_data(n: int, seed: int = 0, **options):
    """Generate ``n`` synthetic detection images of circles, squares and triangles.

    Args:
        n: number of images (0 is valid).
        seed: fixes everything drawn.
        **options:
            ``min_objects`` / ``max_objects`` (1 / 6): objects per image;
            ``size_mode`` ("class"): "class" ties size to class as in the seed (circle small,
            square medium, triangle large); "any" draws every class at every size;
            ``max_overlap`` (0.15): largest share of the smaller box another box may cover;
            ``balanced_classes`` (True): draw each object's class once, weighted by how often each class has
            failed to fit so far, so that the classes have about equal counts; False re-draws the class on every
            failed placement, as the first round did (more circles than squares, more squares than triangles);
            ``noise`` (0.03, 0.10): range of the per-image Gaussian noise std (on [0, 1] colours).

    Returns:
        images: uint8 ``[N, 3, 224, 224]``.
        targets: list of N dicts, ``"boxes"`` float32 ``[M, 4]`` tight ``(x1, y1, x2, y2)`` boxes of the
        drawn pixels (continuous pixel coordinates) and ``"labels"`` int64 ``[M]`` (0 circle,
        1 square, 2 triangle).
    """
    n = _check_n(n)
    opt = _check_options(options, {"min_objects": 1, "max_objects": 6, "size_mode": "class",
                                   "max_overlap": 0.15, "noise": (0.03, 0.10), "balanced_classes": True},
                        "make_detection_data")
    if opt["size_mode"] not in ("class", "any"):
        raise ValueError(f"size_mode must be 'class' or 'any', got {opt['size_mode']!r}")
    if not 1 <= opt["min_objects"] <= opt["max_objects"]:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {opt['min_objects']}, {opt['max_objects']}")
    rng = np.random.default_rng(seed)
    tally = np.zeros((2, 3), dtype=np.int64) if opt["balanced_classes"] else None
    size = IMAGE_SIZE
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    targets = []
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    chunk = 64
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        img = _background(rng, m, size)
        for i in range(m):
            k = int(rng.integers(opt["min_objects"], opt["max_objects"] + 1))
            objects = _place_objects(rng, k, opt["size_mode"], opt["max_overlap"], size, tally)
            boxes, labels = [], []
            for obj in objects:
                # bounding window of the object, so each mask touches only its own pixels
                r = (np.abs(obj["verts"]).max() if obj["verts"] is not None else obj["size"] / 2) + 2
                cx, cy = obj["centre"]
                x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, size)
                y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, size)
                mask = _shape_mask(obj, xs[y0:y1, x0:x1], ys[y0:y1, x0:x1])
                if mask.sum() < 4:
                    continue
                bg = img[i, y0:y1, x0:x1][mask].mean(0)
                colour = rng.uniform(0, 1, 3).astype(np.float32)
                while np.abs(colour - bg).max() < 0.35:  # keep a visible contrast to the background
                    colour = rng.uniform(0, 1, 3).astype(np.float32)
                img[i, y0:y1, x0:x1][mask] = colour
                cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
                boxes.append([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1])
                labels.append(obj["cls"])
            targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            "labels": torch.tensor(labels, dtype=torch.int64)})
        sigma = rng.uniform(*opt["noise"], (m, 1, 1, 1)).astype(np.float32)
        img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
        images[start:start + m] = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 3, 1, 2)
    return torch.from_numpy(images), targets


# ----------------------------------------------------------------------------- keypoints
def _rot(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` [..., 2] by ``angle`` [...] (radians, image coordinates)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


def _two_link(root, target, l1, l2, bend):
    """Planar two-link inverse kinematics. root, target [n, 2]; l1, l2 [n]; bend [n] of +-1.

    Returns the joint (elbow/knee) and the reachable end point, both [n, 2]."""
    d_vec = target - root
    d = np.linalg.norm(d_vec, axis=-1)
    d_clip = np.clip(d, np.abs(l1 - l2) + 1e-3, (l1 + l2) * 0.999)
    u = d_vec / np.maximum(d, 1e-6)[:, None]
    cos_a = np.clip((l1 ** 2 + d_clip ** 2 - l2 ** 2) / (2 * l1 * d_clip), -1, 1)
    joint = root + l1[:, None] * _rot(u, bend * np.arccos(cos_a))
    return joint, root + u * d_clip[:, None]


def _segment_distance(px, py, a, b):
    """Distance from pixel centres (px, py) [H, W] to segments a->b [n, 2]; returns [n, H, W]."""
    ab = b - a
    denom = np.maximum((ab ** 2).sum(-1), np.float32(1e-9))
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    bx, by = ab[:, 0, None, None], ab[:, 1, None, None]
    t = np.clip(((px - ax) * bx + (py - ay) * by) / denom[:, None, None], 0, 1)
    return np.hypot(px - ax - t * bx, py - ay - t * by)


def _poses(rng, n, hard_fraction):
    """Sample n stick-figure skeletons (all coordinates in an un-placed frame around the neck)."""
    s = rng.uniform(20, 30, n)                      # torso length (pixels)
    tilt = rng.uniform(-np.pi / 6, np.pi / 6, n)    # whole-figure rotation
    up = _rot(np.tile([0.0, -1.0], (n, 1)), tilt)   # neck -> head direction
    # the figure faces the viewer, so its own left is on the image's right
    left = _rot(np.tile([1.0, 0.0], (n, 1)), tilt)
    neck = np.zeros((n, 2))
    hip = neck - up * s[:, None]
    head_r = s * rng.uniform(0.22, 0.3, n)
    head = neck + up * (head_r * 1.25)[:, None]
    sh_w, hip_w = 0.25 * s, 0.18 * s
    shoulders = [neck + left * sh_w[:, None], neck - left * sh_w[:, None]]   # (left, right)
    hips = [hip + left * hip_w[:, None], hip - left * hip_w[:, None]]
    l_up, l_fore = 0.55 * s, 0.5 * s
    l_thigh, l_shin = 0.65 * s, 0.6 * s

    kind = np.zeros(n, dtype=np.int64)              # 0 normal, 1 hands together, 2 hands on torso
    u = rng.uniform(size=n)
    kind[u < hard_fraction / 2] = 1
    kind[(u >= hard_fraction / 2) & (u < hard_fraction)] = 2

    hand_targets = []
    for side, sign in ((0, 1.0), (1, -1.0)):
        ang = rng.uniform(-0.6 * np.pi, 0.75 * np.pi, n)  # from hanging down (0) to raised, outward
        direction = _rot(-up, -sign * ang)                # rotate outwards on the figure's own side
        reach = rng.uniform(0.45, 1.0, n) * (l_up + l_fore)
        hand_targets.append(shoulders[side] + direction * reach[:, None])
    # hard pose 1: both hands near one point in front of the chest/belly
    meet = neck - up * (s * rng.uniform(0.2, 0.9, n))[:, None] + left * (s * rng.uniform(-0.3, 0.3, n))[:, None]
    jitter = rng.normal(0, 0.08, (2, n, 2)) * s[None, :, None]
    # hard pose 2: each hand on its own side of the torso
    on_torso = [neck - up * (s * rng.uniform(0.3, 0.95, n))[:, None] + sign * left * (s * rng.uniform(0.0, 0.15, n))[:, None]
                for sign in (1.0, -1.0)]
    hands, elbows = [], []
    for side in (0, 1):
        target = np.where((kind == 1)[:, None], meet + jitter[side],
                          np.where((kind == 2)[:, None], on_torso[side], hand_targets[side]))
        bend = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
        e, h = _two_link(shoulders[side], target, l_up, l_fore, bend)
        elbows.append(e)
        hands.append(h)
    feet, knees = [], []
    for side, sign in ((0, 1.0), (1, -1.0)):
        ang = rng.uniform(-0.15 * np.pi, 0.4 * np.pi, n)
        target = hips[side] + _rot(-up, -sign * ang) * (rng.uniform(0.7, 1.0, n) * (l_thigh + l_shin))[:, None]
        bend = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
        k, f = _two_link(hips[side], target, l_thigh, l_shin, bend)
        knees.append(k)
        feet.append(f)
    keypoints = np.stack([head, hands[0], hands[1], feet[0], feet[1]], 1)
    segments = {  # (a, b, side) side: 0 left, 1 right, 2 centre
        "torso": (neck, hip, 2), "shoulders": (shoulders[0], shoulders[1], 2), "hips": (hips[0], hips[1], 2),
        "l_upper": (shoulders[0], elbows[0], 0), "l_fore": (elbows[0], hands[0], 0),
        "r_upper": (shoulders[1], elbows[1], 1), "r_fore": (elbows[1], hands[1], 1),
        "l_thigh": (hips[0], knees[0], 0), "l_shin": (knees[0], feet[0], 0),
        "r_thigh": (hips[1], knees[1], 1), "r_shin": (knees[1], feet[1], 1),
    }
    return keypoints, segments, head, head_r, neck, hip, kind


def make_keypoint_data(n: int, seed: int = 0, **options):
    """Generate ``n`` grayscale stick figures with five keypoints.

    Each figure has a head (disk), torso, shoulders and hips, two arms with elbows and two legs
    with knees, a random scale, position, tilt (+-30 degrees), limb pose, line width and noise.
    The figure faces the viewer; its own left limbs are drawn brighter than its right limbs, so
    left and right are decidable from the drawing.

    Args:
        n: number of images (0 is valid).
        seed: fixes everything drawn.
        **options: ``hard_fraction`` (0.2): share of hard poses, half "hands together", half
            "hands against the torso"; ``return_meta`` (False): also return the per-sample
            attributes below.

    Returns:
        images: float32 ``[N, 1, 128, 128]`` in [0, 1].
        keypoints: float32 ``[N, 5, 2]`` ``(x, y)`` in image pixels (continuous coordinates), in the
        order head, left hand, right hand, left foot, right foot.
        meta (only with ``return_meta=True``): dict of numpy arrays [N]: ``hand_distance`` (px),
        ``hand_torso_distance`` (px, nearer hand to the torso segment), ``hard`` (0 normal,
        1 hands together, 2 hands on torso), ``ambiguous`` (hands closer than two line widths,
        so which is which is not visible), ``line_width``; and ``[N, 2]`` per hand (left, right):
        ``hand_under_brighter`` (another stroke or disk is brighter than the hand at the hand's own point, so it
        is drawn over the knob that marks the hand, by the rendering rule: the brighter value wins; only the
        dimmer right hand can be), ``hand_covered`` (another stroke or disk, its own forearm excepted, is at
        least as bright there: the hand's point lies fully inside a line of its own brightness or brighter);
        ``hand_knob_visible`` (float: the share of the hand's knob drawn on top of every other shape, its own
        forearm excepted, sampled within 3/4 of the knob's radius; 0 where other strokes hide the whole knob).
        Computed from the drawn geometry: asking for ``meta`` draws nothing more.
    """
    n = _check_n(n)
    opt = _check_options(options, {"hard_fraction": 0.2, "return_meta": False}, "make_keypoint_data")
    if not 0 <= opt["hard_fraction"] <= 1:
        raise ValueError(f"hard_fraction must be in [0, 1], got {opt['hard_fraction']}")
    rng = np.random.default_rng(seed)
    size = KP_IMAGE_SIZE
    kps, segs, head, head_r, neck, hip, kind = _poses(rng, n, opt["hard_fraction"])
    # place: scale down figures that do not fit, then shift the skeleton's box inside the image
    pts = np.concatenate([np.stack([a for a, _, _ in segs.values()] + [b for _, b, _ in segs.values()], 1),
                          (head[:, None] + np.array([[[-1, -1]], [[1, 1]]]).reshape(1, 2, 2) * head_r[:, None, None])], 1)
    lo, hi = pts.min(1), pts.max(1)
    margin = 6.0
    scale = np.minimum(1.0, (size - 2 * margin) / np.maximum((hi - lo).max(1), 1e-6))
    shift = rng.uniform(margin - lo * scale[:, None], size - margin - hi * scale[:, None])

    def place(p):  # [n, 2] or [n, k, 2]
        extra = (None,) * (p.ndim - 2)
        return (p * scale[(slice(None),) + extra + (None,)] + shift[(slice(None),) + extra]).astype(np.float32)

    kps = place(kps)
    head_c, head_r = place(head), head_r * scale
    width = rng.uniform(1.5, 3.2, n).astype(np.float32)
    level = rng.uniform(0.85, 1.0, n).astype(np.float32)
    right_level = level * rng.uniform(0.6, 0.72, n).astype(np.float32)
    background = rng.uniform(0.0, 0.2, n).astype(np.float32)
    noise = rng.uniform(0.01, 0.06, n).astype(np.float32)

    placed_segs = [(place(a), place(b), side) for a, b, side in segs.values()]
    knob = 0.9 * width
    disks = [(head_c, head_r, level)] + [(kps[:, k], knob, level if k in (1, 3) else right_level) for k in (1, 2, 3, 4)]
    images = np.empty((n, 1, size, size), dtype=np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    chunk = 256
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        m = sl.stop - sl.start
        img = np.broadcast_to(background[sl, None, None], (m, size, size)).astype(np.float32).copy()
        half_w = (width[sl] / 2)[:, None, None]
        for a, b, side in placed_segs:
            d = _segment_distance(xs, ys, a[sl], b[sl])
            value = {0: level[sl], 1: right_level[sl], 2: level[sl]}[side][:, None, None]
            # 1-pixel anti-aliased edge; the brighter stroke wins where strokes cross
            cover = np.clip(half_w + 0.5 - d, 0, 1)
            img = np.maximum(img, background[sl, None, None] + cover * (value - background[sl, None, None]))
        # disks: the head, and a small knob at each hand and foot (the ends the keypoints mark)
        for centre, radius, value in disks:
            d = np.hypot(xs - centre[sl, 0, None, None], ys - centre[sl, 1, None, None])
            cover = np.clip(radius[sl, None, None] + 0.5 - d, 0, 1)
            img = np.maximum(img, background[sl, None, None] + cover * (value[sl, None, None] - background[sl, None, None]))
        img += noise[sl, None, None] * rng.standard_normal(img.shape, dtype=np.float32)
        images[sl, 0] = np.clip(img, 0, 1)

    images_t = torch.from_numpy(images)
    kps_t = torch.from_numpy(kps.astype(np.float32))
    if not opt["return_meta"]:
        return images_t, kps_t
    hands = kps[:, 1:3]
    hand_distance = np.linalg.norm(hands[:, 0] - hands[:, 1], axis=-1)
    neck_p, hip_p = place(neck), place(hip)
    torso_d = np.stack([_point_segment_distance(hands[:, i], neck_p, hip_p) for i in (0, 1)], 1).min(1)
    geometry = (kps, placed_segs, list(segs), disks, width, level, right_level, background)
    under, covered = _hands_covered(*geometry)
    meta = {"hand_distance": hand_distance.astype(np.float32), "hand_torso_distance": torso_d.astype(np.float32),
            "hard": kind, "ambiguous": hand_distance < 2 * width, "line_width": width.astype(np.float32),
            "hand_under_brighter": under, "hand_covered": covered,
            "hand_knob_visible": _knob_visible(*geometry).astype(np.float32)}
    return images_t, kps_t, meta


# the hand whose knob a hand index names, and the shapes that are its own (never count as covering it)
_HAND_OWN = {0: ("l_fore", "disk1"), 1: ("r_fore", "disk2")}
# sample points of a knob, in units of its radius: the centre and 12 points on each ring at 1/4, 1/2 and 3/4 of the
# radius (each ring turned by its own phase so that no two rings line up): 37 points
_KNOB_SAMPLES = np.concatenate([np.zeros((1, 2))] + [
    r * np.stack([np.cos(angles), np.sin(angles)], 1)
    for r, phase in ((0.25, 0.0), (0.5, 0.13), (0.75, 0.26)) for angles in [np.arange(12) * (2 * np.pi / 12) + phase]])


def _other_shapes(placed_segs, seg_names, disks, width, level, right_level):
    """``[(name, shape, half_width_or_radius [n], value [n])]``: every stroke (shape ``(a, b)``) and disk (shape: its
    centre [n, 2]) as drawn by :func:`make_keypoint_data`."""
    value_of_side = {0: level, 1: right_level, 2: level}
    others = [(name, (a, b), width / 2, value_of_side[side]) for (a, b, side), name in zip(placed_segs, seg_names)]
    return others + [(f"disk{k}", centre, radius, v) for k, (centre, radius, v) in enumerate(disks)]


def _drawn_value(q, shape, half, value, background):
    """The value one shape draws at points ``q`` [n, 2] (anti-aliased coverage times its brightness, over the
    background), as the renderer computes it."""
    d = _point_segment_distance(q, *shape) if isinstance(shape, tuple) else np.linalg.norm(q - shape, axis=-1)
    return background + np.clip(half + 0.5 - d, 0, 1) * (value - background)


def _hands_covered(kps, placed_segs, seg_names, disks, width, level, right_level, background):
    """``(under_brighter, covered)``, bool ``[n, 2]`` (left, right hand), see :func:`make_keypoint_data`.

    ``kps`` [n, 5, 2] placed keypoints; ``placed_segs`` ``[(a [n, 2], b [n, 2], side)]`` named ``seg_names``;
    ``disks`` ``[(centre [n, 2], radius [n], value [n])]``: the head, then the knobs of keypoints 1..4.
    The rendering rule at the hand's point decides: another stroke's value there (its anti-aliased coverage of
    the point times its brightness, over the background) beats the hand's own (its knob covers its point fully)."""
    under = np.zeros((len(kps), 2), dtype=bool)
    covered = np.zeros((len(kps), 2), dtype=bool)
    others = _other_shapes(placed_segs, seg_names, disks, width, level, right_level)
    for h, own_value in enumerate((level, right_level)):
        p = kps[:, 1 + h]
        for name, shape, half, v in others:
            if name in _HAND_OWN[h]:
                continue
            there = _drawn_value(p, shape, half, v, background)
            under[:, h] |= there > own_value + 1e-6
            covered[:, h] |= there >= own_value - 1e-6
    return under, covered


def _knob_visible(kps, placed_segs, seg_names, disks, width, level, right_level, background):
    """float ``[n, 2]`` (left, right hand): the share of the hand's knob that is drawn on top, by the rendering rule
    (the brightest value wins) at :data:`_KNOB_SAMPLES` points within 3/4 of its radius: the knob's own value there
    beats every other shape's, its own forearm excepted. 1: the whole knob shows; 0: other strokes hide it. Arguments
    as :func:`_hands_covered`."""
    others = _other_shapes(placed_segs, seg_names, disks, width, level, right_level)
    shown = np.zeros((len(kps), 2))
    for h in (0, 1):
        _, radius, own_value = disks[1 + h]
        for offset in _KNOB_SAMPLES:
            q = kps[:, 1 + h] + offset[None] * radius[:, None]
            own = _drawn_value(q, kps[:, 1 + h], radius, own_value, background)
            best = np.full(len(kps), -np.inf)
            for name, shape, half, v in others:
                if name not in _HAND_OWN[h]:
                    best = np.maximum(best, _drawn_value(q, shape, half, v, background))
            shown[:, h] += own > best + 1e-6
    return shown / len(_KNOB_SAMPLES)


def _point_segment_distance(p, a, b):
    """Distance of points p [n, 2] to segments a->b [n, 2]."""
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab ** 2).sum(-1), 1e-9), 0, 1)
    return np.linalg.norm(p - a - t[:, None] * ab, axis=-1)


__all__ = ["make_detection_data", "make_keypoint_data", "CLASS_NAMES", "KEYPOINT_NAMES",
           "IMAGE_SIZE", "KP_IMAGE_SIZE", "CLASS_SIZE_RANGES"]
