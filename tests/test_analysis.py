"""hwlib.vision.analysis: hand-worked cases, and brute-force references (plain Python loops, exact integer
arithmetic where the library divides) over small random inputs.

Random boxes have integer corners, so areas, centres and side ratios are exact in float32 and every
comparison the library makes (size vs bucket boundary, IoU vs threshold, side ratio vs anchor_t,
centre fraction vs 0.5) is decided the same way by the reference."""

import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwlib.vision import analysis
from hwlib.vision.analysis import (BUCKETS, SIZE_BUCKETS, ap_by_class_and_size, assignment_statistics, best_anchor_iou,
                                   confusion_any_size, head_bucket_table, size_bucket)
from hwlib.config import CLASS_NAMES, SEED_ANCHORS, DetectorConfig


def T(boxes, labels, scores=None, heads=None):
    d = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
         "labels": torch.tensor(labels, dtype=torch.int64)}
    if scores is not None:
        d["scores"] = torch.tensor(scores, dtype=torch.float32)
    if heads is not None:
        d["heads"] = torch.tensor(heads, dtype=torch.int64)
    return d


# ----------------------------------------------------------------------------- brute-force references
def _box(d, i):
    return [int(v) for v in d["boxes"][i].tolist()]


def _iou_ref(a, b):
    """IoU of two integer boxes: exact integer areas, one float32 division (as the library rounds it)."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return np.float32(inter) / np.float32(union)


def _bucket_ref(box, bounds):
    """Bucket of an integer box for integer boundaries: compare the area w*h with the squared boundaries."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    return sum(area >= int(b) ** 2 for b in bounds)


def _voc_matches_ref(preds, targets, c, iou_threshold=0.5):
    """Greedy VOC matching of class ``c``: detections in decreasing score (ties: image, then index order)
    each take their best-IoU GT of class c (first on ties) if IoU >= threshold and it is free.
    Returns [(image, det, gt or None)] in that order and the GT count."""
    dets = [(float(p["scores"][i]), img, i) for img, p in enumerate(preds)
            for i in range(len(p["labels"])) if int(p["labels"][i]) == c]
    dets = sorted(dets, key=lambda x: -x[0])
    taken, out = set(), []
    for _, img, i in dets:
        t = targets[img]
        best, best_iou = None, None
        for g in range(len(t["labels"])):
            if int(t["labels"][g]) != c:
                continue
            v = _iou_ref(_box(preds[img], i), _box(t, g))
            if best is None or v > best_iou:
                best, best_iou = g, v
        if best is not None and best_iou >= iou_threshold and (img, best) not in taken:
            taken.add((img, best))
            out.append((img, i, best))
        else:
            out.append((img, i, None))
    n_gt = sum(int(l) == c for t in targets for l in t["labels"].tolist())
    return out, n_gt


def _ap_ref(matches, n_gt):
    """VOC all-point AP: sum over the recall steps of the step times the best precision from there on."""
    if n_gt == 0:
        return float("nan")
    tp = fp = 0
    recall, precision = [], []
    for _, _, g in matches:
        tp += g is not None
        fp += g is None
        recall.append(tp / n_gt)
        precision.append(tp / (tp + fp))
    ap, prev = 0.0, 0.0
    for i in range(len(recall)):
        if recall[i] > prev:
            ap += (recall[i] - prev) * max(precision[i:])
            prev = recall[i]
    return ap


def _random_case(rng, n_images, canvas=40, max_side=30, with_heads=True):
    """Integer GT boxes and detections (half of them jittered copies of a GT, so there are TPs)."""
    preds, targets = [], []
    for _ in range(n_images):
        m = int(rng.integers(0, 5))
        xy = rng.integers(0, canvas, (m, 2))
        wh = rng.integers(1, max_side, (m, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, 3, m)
        dets, dl = [], []
        for _ in range(int(rng.integers(0, 7))):
            if m and rng.random() < 0.6:
                g = int(rng.integers(0, m))
                b = gt[g] + rng.integers(-2, 3, 4)
                b[2:] = np.maximum(b[2:], b[:2] + 1)
                dets.append(b)
                dl.append(int(labels[g]) if rng.random() < 0.8 else int(rng.integers(0, 3)))
            else:
                x, y = rng.integers(0, canvas, 2)
                w, h = rng.integers(1, max_side, 2)
                dets.append(np.array([x, y, x + w, y + h]))
                dl.append(int(rng.integers(0, 3)))
        scores = rng.integers(1, 10, len(dets)) / 10          # a coarse grid: ties happen
        targets.append(T(gt.tolist(), labels.tolist()))
        preds.append(T(np.array(dets).reshape(-1, 4).tolist(), dl, scores.tolist(),
                       rng.integers(0, 3, len(dets)).tolist() if with_heads else None))
    return preds, targets


bounds_strategy = st.tuples(st.integers(2, 15), st.integers(1, 20)).map(lambda t: (float(t[0]), float(t[0] + t[1])))


# ----------------------------------------------------------------------------- size_bucket
def test_size_bucket_hand_worked_and_boundaries_go_up():
    sizes = [0.0, 38.99, 39.0, 39.01, 90.99, 91.0, 500.0]
    assert size_bucket(sizes).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert size_bucket([5.0, 10.0, 20.0], (10.0, 20.0)).tolist() == [0, 1, 2]
    assert size_bucket([]).shape == (0,)


def test_size_buckets_come_from_the_config():
    bounds = DetectorConfig().size_buckets
    assert bounds == (39.0, 91.0)
    # geometric midpoints of neighbouring heads' middle anchors (24 | 64 | 128 px)
    mids = [a[len(a) // 2] for a in SEED_ANCHORS]
    assert [round(math.sqrt(mids[i] * mids[i + 1])) for i in range(2)] == [39, 91]
    for fn in (size_bucket, head_bucket_table, ap_by_class_and_size):
        assert inspect.signature(fn).parameters["boundaries"].default == bounds
    assert analysis.SIZE_BUCKETS == bounds


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=30), bounds_strategy)
def test_size_bucket_matches_loop(areas, bounds):
    areas = areas + [int(b) ** 2 + d for b in bounds for d in (-1, 0, 1)]     # on and beside each boundary
    sizes = [math.sqrt(a) for a in areas]
    ref = [0 if a < bounds[0] ** 2 else 1 if a < bounds[1] ** 2 else 2 for a in areas]
    assert size_bucket(sizes, bounds).tolist() == ref


# ----------------------------------------------------------------------------- head_bucket_table
def test_head_bucket_table_hand_worked():
    targets = [T([[0, 0, 20, 20], [50, 50, 110, 110], [0, 100, 120, 220]], [0, 1, 2]),   # sizes 20, 60, 120
               T([[0, 0, 39, 39]], [0])]                                                  # size 39: medium
    preds = [T([[0, 0, 20, 20], [1, 0, 21, 20], [50, 50, 110, 110], [0, 160, 120, 220]], [0, 0, 1, 2],
               [0.9, 0.7, 0.8, 0.6], heads=[0, 1, 2, 2]),
             # a box of size ~38.5 (small) matches the 39-px GT (IoU 38/39): the GT's size decides the bucket
             T([[0, 0, 38, 39]], [0], [0.8], heads=[1])]
    r = head_bucket_table(preds, targets)
    # the second circle box (head S2) is a duplicate, an FP; the triangle box covers its lower half
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[0, 0] = 1          # S1 finds the small circle
    expected[2, 1] = 1          # S3 finds the medium square
    expected[1, 1] = 1          # S2 finds the 39-px circle
    expected[2, 2] = 1          # S3: the triangle box covers half of the GT, IoU exactly 0.5, a TP
    assert r["tp"].tolist() == expected.tolist()
    assert r["n_gt"].tolist() == [1, 2, 1]
    assert r["recall"].tolist() == [1.0, 1.0, 1.0]
    # raising the triangle box by one pixel drops the IoU under 0.5: the large bucket's recall is 0
    preds[0]["boxes"][3, 1] = 161
    r = head_bucket_table(preds, targets)
    assert r["tp"][2, 2] == 0 and r["recall"].tolist() == [1.0, 1.0, 0.0]


def test_head_bucket_table_empty_bucket_is_nan():
    r = head_bucket_table([T([[0, 0, 10, 10]], [0], [0.9], heads=[0])], [T([[0, 0, 10, 10]], [0])])
    assert r["tp"].sum() == 1 and r["n_gt"].tolist() == [1, 0, 0]
    assert r["recall"][0] == 1.0 and np.isnan(r["recall"][1:]).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(0, 10_000), bounds_strategy)
def test_head_bucket_table_matches_loop(n_images, seed, bounds):
    preds, targets = _random_case(np.random.default_rng(seed), n_images)
    r = head_bucket_table(preds, targets, bounds)
    table = np.zeros((3, 3), dtype=np.int64)
    found = set()
    for c in range(3):
        for img, i, g in _voc_matches_ref(preds, targets, c)[0]:
            if g is not None:
                table[int(preds[img]["heads"][i]), _bucket_ref(_box(targets[img], g), bounds)] += 1
                found.add((img, g))
    n_gt, n_found = np.zeros(3, dtype=np.int64), np.zeros(3)
    for img, t in enumerate(targets):
        for g in range(len(t["labels"])):
            b = _bucket_ref(_box(t, g), bounds)
            n_gt[b] += 1
            n_found[b] += (img, g) in found
    assert r["tp"].tolist() == table.tolist()
    assert r["n_gt"].tolist() == n_gt.tolist()
    recall = [n_found[b] / n_gt[b] if n_gt[b] else float("nan") for b in range(3)]
    np.testing.assert_allclose(r["recall"], recall, rtol=0, atol=1e-12, equal_nan=True)


# ----------------------------------------------------------------------------- confusion_any_size
def test_confusion_any_size_hand_worked():
    targets = [T([[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]], [0, 2, 1]),
               T([[0, 0, 10, 10]], [0]),
               T([], [])]
    preds = [T([[0, 0, 10, 8], [0, 0, 10, 10], [50, 50, 60, 55]], [1, 0, 2], [0.9, 0.5, 0.3]),
             T([], [], []),
             T([[0, 0, 10, 10]], [1], [0.9])]
    m = confusion_any_size(preds, targets)
    # circle: the higher-scoring square box (IoU 0.8) wins over the exact circle box; the second circle has
    # no detection; the triangle box has IoU exactly 0.5 (counts); nothing overlaps the square
    assert m.tolist() == [[0, 1, 0, 1],
                          [0, 0, 0, 1],
                          [0, 0, 1, 0]]
    m = confusion_any_size(preds, targets, iou_threshold=0.6)
    assert m.tolist() == [[0, 1, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]]
    m = confusion_any_size(preds, targets, iou_threshold=0.9)       # only the exact circle box is left
    assert m.tolist() == [[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(0, 10_000), st.sampled_from([0.3, 0.5, 0.7]))
def test_confusion_any_size_matches_loop(n_images, seed, thr):
    preds, targets = _random_case(np.random.default_rng(seed), n_images, with_heads=False)
    ref = np.zeros((3, 4), dtype=np.int64)
    for p, t in zip(preds, targets):
        for g in range(len(t["labels"])):
            best = None
            for d in range(len(p["labels"])):
                if _iou_ref(_box(t, g), _box(p, d)) >= np.float32(thr) and (
                        best is None or float(p["scores"][d]) > float(p["scores"][best])):
                    best = d
            ref[int(t["labels"][g]), 3 if best is None else int(p["labels"][best])] += 1
    m = confusion_any_size(preds, targets, thr)
    assert m.tolist() == ref.tolist()
    assert m.sum() == sum(len(t["labels"]) for t in targets)


# ----------------------------------------------------------------------------- ap_by_class_and_size
def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for n in a:
        assert a[n].keys() == b[n].keys() == set(BUCKETS)
        for k in a[n]:
            assert (math.isnan(a[n][k]) and math.isnan(b[n][k])) or a[n][k] == pytest.approx(b[n][k], abs=1e-12), (n, k, a, b)


def test_ap_by_class_and_size_hand_worked():
    nan = float("nan")
    targets = [T([[0, 0, 20, 20], [100, 100, 200, 200]], [0, 1]),      # small circle, large square
               T([[0, 0, 38, 38]], [0])]                                # small circle (38 px)
    preds = [T([[0, 0, 20, 20], [100, 100, 200, 200], [50, 50, 100, 100]], [0, 1, 0], [0.9, 0.8, 0.95]),
             T([[0, 0, 40, 40]], [0], [0.7])]                           # 40 px: a medium box, IoU 0.9025
    r = ap_by_class_and_size(preds, targets)
    # small circles: the 20-px one found, the 38-px one's box is medium: AP 0.5; no medium or large circle GT
    _same(r, {"circle": {"small": 0.5, "medium": nan, "large": nan},
              "square": {"small": nan, "medium": nan, "large": 1.0},
              "triangle": {"small": nan, "medium": nan, "large": nan}})
    # with a boundary above 40 px both circle boxes are small (two TPs); the 50-px FP box is medium
    r = ap_by_class_and_size(preds, targets, (45.0, 91.0))
    assert r["circle"]["small"] == 1.0 and math.isnan(r["circle"]["medium"])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(0, 10_000), bounds_strategy)
def test_ap_by_class_and_size_matches_loop(n_images, seed, bounds):
    preds, targets = _random_case(np.random.default_rng(seed), n_images, with_heads=False)
    ref = {n: {} for n in CLASS_NAMES}
    for b, bname in enumerate(BUCKETS):
        pp = [{"boxes": p["boxes"][keep], "scores": p["scores"][keep], "labels": p["labels"][keep]}
              for p in preds
              for keep in [torch.tensor([_bucket_ref(_box(p, i), bounds) == b for i in range(len(p["labels"]))],
                                        dtype=torch.bool)]]
        tt = [{"boxes": t["boxes"][keep], "labels": t["labels"][keep]}
              for t in targets
              for keep in [torch.tensor([_bucket_ref(_box(t, g), bounds) == b for g in range(len(t["labels"]))],
                                        dtype=torch.bool)]]
        for c, n in enumerate(CLASS_NAMES):
            ref[n][bname] = _ap_ref(*_voc_matches_ref(pp, tt, c))
    _same(ap_by_class_and_size(preds, targets, bounds), ref)


# ----------------------------------------------------------------------------- best_anchor_iou
def test_best_anchor_iou_hand_worked():
    boxes = torch.tensor([[0, 0, 24, 24], [10, 10, 74, 74], [0, 0, 100, 100], [0, 0, 200, 200], [5, 5, 21, 69]],
                         dtype=torch.float32)
    iou, head = best_anchor_iou(boxes, SEED_ANCHORS)
    # 100 px: anchor 96 is in S2 and S3, the first (S2) wins; 16x64: anchor 32, 512 / (1024 + 1024 - 512)
    np.testing.assert_allclose(iou, [1.0, 1.0, 0.9216, 0.9216, 1 / 3], rtol=1e-12)
    assert head.tolist() == [0, 1, 1, 2, 0]
    assert best_anchor_iou(torch.zeros(0, 4), SEED_ANCHORS)[0].shape == (0,)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 224), st.integers(1, 224)), min_size=1, max_size=8),
       st.lists(st.lists(st.integers(4, 200), min_size=1, max_size=3), min_size=1, max_size=3))
def test_best_anchor_iou_matches_loop(sides, anchors):
    boxes = torch.tensor([[3, 7, 3 + w, 7 + h] for w, h in sides], dtype=torch.float32)
    iou, head = best_anchor_iou(boxes, anchors)
    for k, (w, h) in enumerate(sides):
        best, best_head = -1.0, None
        for hd, anc in enumerate(anchors):
            for a in anc:
                inter = min(w, a) * min(h, a)
                v = inter / (w * h + a * a - inter)
                if v > best:
                    best, best_head = v, hd
        assert iou[k] == pytest.approx(best, rel=1e-12) and head[k] == best_head, (w, h, anchors)


# ----------------------------------------------------------------------------- assignment_statistics
def test_assignment_statistics_hand_worked():
    # 24 px circle centred at (22, 22): S1 takes all 3 anchors (ratios 1.5, 1, 1.33) in its centre cell only
    # (centre 5.5 cells: on the half, no neighbour); S2 anchors 48 and 64 (96 is exactly 4x) in the centre
    # cell + 2 neighbours (2.75 cells); S3 none (96 / 24 = 4).
    # 160 px triangle centred at (100, 100): S1 none (160 / 32 = 5); S2 all 3 anchors, centre 12.5 cells:
    # no neighbour; S3 all 3 anchors, centre 6.25 cells: + 2 neighbours. Means over 3 images (2 empty).
    targets = [T([[10, 10, 34, 34], [20, 20, 180, 180]], [0, 2]), T([], []), T([], [])]
    out = assignment_statistics(targets, SEED_ANCHORS)
    np.testing.assert_array_equal(out, np.array([[3, 0, 0], [6, 0, 3], [0, 0, 9]]) / 3)
    out = assignment_statistics(targets, SEED_ANCHORS, neighbour_cells=False)
    np.testing.assert_array_equal(out, np.array([[3, 0, 0], [2, 0, 3], [0, 0, 3]]) / 3)
    out = assignment_statistics(targets, SEED_ANCHORS, anchor_t=5.0, neighbour_cells=False)   # 96 / 24 = 4 now passes
    np.testing.assert_array_equal(out, np.array([[3, 0, 0], [3, 0, 3], [1, 0, 3]]) / 3)
    np.testing.assert_array_equal(assignment_statistics([], SEED_ANCHORS), np.zeros((3, 3)))
    # image edges: a 3-px box in the top-right corner, 4-px anchors on S1; centre (55.625, 0.375) cells of a
    # 56-cell grid: no neighbour cell exists right of column 55 nor above row 0, so one positive
    corner = [T([[221, 0, 224, 3]], [1])]
    np.testing.assert_array_equal(assignment_statistics(corner, ((4,), (48,), (96,))), [[0, 1, 0], [0, 0, 0], [0, 0, 0]])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10_000), st.sampled_from([2.0, 4.0]), st.booleans(),
       st.sampled_from(["ratio", "best_anchor"]))
def test_assignment_statistics_matches_loop(n_images, seed, anchor_t, neighbours, assignment):
    rng = np.random.default_rng(seed)
    anchors = tuple(tuple(int(a) for a in np.exp(rng.uniform(0, np.log(200), 3)).round() + 1) for _ in range(3))
    targets = []
    for _ in range(n_images):
        m = int(rng.integers(0, 4))
        wh = np.exp(rng.uniform(0, np.log(200), (m, 2))).astype(int) + 1       # log-uniform sides 1..200
        xy = np.stack([rng.integers(0, 225 - wh[:, 0]), rng.integers(0, 225 - wh[:, 1])], 1)
        edge = rng.integers(0, 3, (m, 2))                                      # also touch the image edges
        xy = np.where(edge == 1, 0, np.where(edge == 2, 224 - wh, xy))
        targets.append(T(np.concatenate([xy, xy + wh], 1).tolist(), rng.integers(0, 3, m).tolist()))
    ref = {"class": np.zeros((3, 3)), "size": np.zeros((3, 3))}
    for t in targets:
        for g in range(len(t["labels"])):
            x1, y1, x2, y2 = _box(t, g)
            w, h = x2 - x1, y2 - y1
            side = (w * h) ** 0.5
            bucket = 0 if side < SIZE_BUCKETS[0] else (1 if side < SIZE_BUCKETS[1] else 2)
            # YOLOv3: the one anchor over all heads with the best IoU of centred boxes, first one on ties
            f = np.float32                                  # float32 as the code computes it: ties break alike
            ious = [f(min(f(w), f(a)) * min(f(h), f(a))) / (f(w) * f(h) + f(a) * f(a) - f(min(f(w), f(a)) * min(f(h), f(a))))
                    for anc in anchors for a in anc]
            best = ious.index(max(ious))
            for level, stride in enumerate((4, 8, 16)):
                cells = 224 // stride
                for k, a in enumerate(anchors[level]):
                    if assignment == "best_anchor":
                        if level * 3 + k != best:
                            continue
                    elif not (w < anchor_t * a and a < anchor_t * w and h < anchor_t * a and a < anchor_t * h):
                        continue
                    n = 1
                    if neighbours:
                        for c in ((x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride):
                            n += (c % 1 < 0.5 and c > 1) + (c % 1 > 0.5 and c < cells - 1)
                    ref["class"][level, int(t["labels"][g])] += n
                    ref["size"][level, bucket] += n
    for by in ("class", "size"):
        out = assignment_statistics(targets, anchors, anchor_t, neighbours, assignment, by=by)
        np.testing.assert_allclose(out, ref[by] / n_images, rtol=1e-12, atol=0)


def test_assignment_statistics_by_size_hand_worked():
    # the 24 px circle is small, the 160 px triangle large (boundaries 39, 91): the class table's columns move
    targets = [T([[10, 10, 34, 34], [20, 20, 180, 180]], [0, 2]), T([], []), T([], [])]
    out = assignment_statistics(targets, SEED_ANCHORS, by="size")
    np.testing.assert_array_equal(out, np.array([[3, 0, 0], [6, 0, 3], [0, 0, 9]]) / 3)
    # YOLOv3's single best anchor, centre cell only: the circle on S1's 24 px anchor, the triangle on S3's 192
    out = assignment_statistics(targets, SEED_ANCHORS, neighbour_cells=False, assignment="best_anchor", by="size")
    np.testing.assert_array_equal(out, np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]]) / 3)
    with pytest.raises(ValueError, match="by"):
        assignment_statistics(targets, SEED_ANCHORS, by="head")


# ----------------------------------------------------------------------------- data_statistics
def _stats_ref(targets, meta, bounds):
    """Brute force: plain loops over every box, integer areas against squared integer boundaries."""
    sizes = {n: [] for n in CLASS_NAMES}
    buckets = [0, 0, 0]
    counts = []
    for t in targets:
        counts.append(len(t["labels"]))
        for i in range(len(t["labels"])):
            b = _box(t, i)
            sizes[CLASS_NAMES[int(t["labels"][i])]].append(math.sqrt((b[2] - b[0]) * (b[3] - b[1])))
            buckets[_bucket_ref(b, bounds)] += 1
    total = sum(counts)
    hard = list(meta["hard"])
    return {"n": len(targets), "mean": total / len(targets), "range": [min(counts), max(counts)],
            "class_counts": {n: len(v) for n, v in sizes.items()},
            "size_range": {n: [min(v), max(v)] if v else None for n, v in sizes.items()},
            "bucket_share": {b: buckets[i] / total for i, b in enumerate(BUCKETS)} if total else None,
            "hard": sum(h > 0 for h in hard) / len(hard),
            "amb": sum(bool(a) for a in meta["ambiguous"]) / len(hard),
            "median": sorted(meta["hand_distance"])[len(hard) // 2] if len(hard) % 2 else
            (sorted(meta["hand_distance"])[len(hard) // 2 - 1] + sorted(meta["hand_distance"])[len(hard) // 2]) / 2}


def _rand_boxes(draw_n, rng):
    out = []
    for _ in range(draw_n):
        m = int(rng.integers(0, 5))
        xy = rng.integers(0, 100, size=(m, 2))
        wh = rng.integers(1, 120, size=(m, 2))
        out.append(T(np.concatenate([xy, xy + wh], 1).tolist(), rng.integers(0, 3, size=m).tolist()))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 8), st.sampled_from([(39, 91), (20, 60), (50, 51)]))
def test_data_statistics_brute_force(seed, n_img, bounds):
    rng = np.random.default_rng(seed)
    targets = _rand_boxes(n_img, rng)
    meta = {"hard": rng.integers(0, 3, size=7), "ambiguous": rng.random(7) < 0.3,
            "hand_distance": rng.integers(0, 40, size=7).astype(float)}
    got = analysis.data_statistics(targets, meta, bounds)
    ref = _stats_ref(targets, meta, bounds)
    assert got["n_images"] == ref["n"]
    assert got["objects_per_image"] == pytest.approx(ref["mean"])
    assert got["objects_per_image_range"] == ref["range"]
    assert got["class_counts"] == ref["class_counts"]
    for n in CLASS_NAMES:
        if ref["size_range"][n] is None:
            assert all(math.isnan(v) for v in got["size_range"][n])
        else:
            assert got["size_range"][n] == pytest.approx(ref["size_range"][n], rel=1e-6)
    if ref["bucket_share"] is not None:
        assert got["bucket_share"] == pytest.approx(ref["bucket_share"])
        assert sum(got["bucket_share"].values()) == pytest.approx(1.0)
    assert got["kp_hard_share"] == pytest.approx(ref["hard"])
    assert got["kp_ambiguous_share"] == pytest.approx(ref["amb"])
    assert got["kp_hand_distance_median"] == pytest.approx(ref["median"])


def test_data_statistics_hand_worked():
    # sizes 10 (small), 39 (boundary -> medium), 100 (large), 50 (medium); 3 objects then 1 object
    targets = [T([[0, 0, 10, 10], [0, 0, 39, 39], [0, 0, 100, 100]], [0, 1, 2]), T([[5, 5, 55, 55]], [1])]
    meta = {"hard": np.array([0, 1, 2, 0]), "ambiguous": np.array([True, False, False, False]),
            "hand_distance": np.array([1.0, 2.0, 3.0, 10.0])}
    s = analysis.data_statistics(targets, meta, (39.0, 91.0))
    assert s["n_images"] == 2 and s["objects_per_image"] == 2.0 and s["objects_per_image_range"] == [1, 3]
    assert s["class_counts"] == {"circle": 1, "square": 2, "triangle": 1}
    assert s["size_range"] == {"circle": [10.0, 10.0], "square": [39.0, 50.0], "triangle": [100.0, 100.0]}
    assert s["bucket_share"] == {"small": 0.25, "medium": 0.5, "large": 0.25}
    assert s["kp_hard_share"] == 0.5 and s["kp_ambiguous_share"] == 0.25 and s["kp_hand_distance_median"] == 2.5
    assert s["generator_size_range"]["triangle"] == [96.0, 176.0]


def test_data_statistics_without_keypoints():
    s = analysis.data_statistics([T([[0, 0, 10, 10]], [0])], buckets=(39.0, 91.0))
    assert not any(k.startswith("kp_") for k in s) and s["class_counts"]["circle"] == 1


# ----------------------------------------------------------------------------- positive_anchor_scores
def _zero_outputs(n=1, na=3, c=3):
    return tuple(torch.zeros(n, na * (5 + c), 224 // s, 224 // s) for s in (4, 8, 16))


def _set(outputs, level, image, anchor, gy, gx, channel, value, c=3):
    outputs[level][image, anchor * (5 + c) + channel, gy, gx] = value


def test_positive_anchor_scores_hand_worked():
    """One 20 px square at (100, 100)-(120, 120): its best anchor is S1's 24 px (index 1; IoU 400/576 beats 16 px's
    256/400), centre (110, 110) -> S1 cell (27, 27) at offset 0.5. Logits set so that this anchor decodes the object
    exactly (xy sigmoid 0.5; wh (2 sigmoid)^2 * 24 = 20) with objectness and class 'square' near 1."""
    from hwlib.vision.analysis import positive_anchor_scores

    cfg = DetectorConfig(assignment="best_anchor", neighbour_cells=False)
    out = _zero_outputs()
    out[0][:, 4::8] = -20.0                                   # every anchor's objectness ~0 ...
    out[1][:, 4::8] = -20.0
    out[2][:, 4::8] = -20.0
    sig = math.sqrt(20 / 24) / 2
    for ch, v in ((0, 0.0), (1, 0.0), (2, math.log(sig / (1 - sig))), (3, math.log(sig / (1 - sig))), (4, 20.0), (6, 20.0)):
        _set(out, 0, 0, 1, 27, 27, ch, v)                     # ... but the positive's
    targets = [T([[100, 100, 120, 120]], [1])]
    r = positive_anchor_scores(out, targets, cfg)
    assert r["square"]["positives"] == 1 and r["square"]["objects"] == 1
    assert r["square"]["iou"] == pytest.approx(1.0, abs=1e-5)
    assert r["square"]["score"] == pytest.approx(1.0, abs=1e-5) and r["square"]["rank"] == 0
    assert r["square"]["label_right"] == 1.0 and r["square"]["object_rank"] == 0
    assert r["square"]["prior_iou"] == pytest.approx(400 / 576)      # the 24 px anchor centred at (110, 110)
    assert r["square"]["objectness"] == pytest.approx(1.0) and r["square"]["class_prob"] == pytest.approx(1.0)
    assert r["circle"]["positives"] == 0 and r["circle"]["iou"] is None
    assert r["image_top_score"] == pytest.approx(1.0, abs=1e-5)
    # a background box scoring higher pushes the object to rank 1; a wrong class at the positive shows as label_right 0
    _set(out, 2, 0, 0, 3, 3, 4, 25.0)
    _set(out, 2, 0, 0, 3, 3, 5, 25.0)
    _set(out, 0, 0, 1, 27, 27, 5, 30.0)
    r = positive_anchor_scores(out, targets, cfg)
    assert r["square"]["rank"] == 1 and r["square"]["object_rank"] == 1 and r["square"]["label_right"] == 0.0
    # under the ratio rule the object has several positives (every anchor within anchor_t, neighbour cells)
    r = positive_anchor_scores(out, targets, DetectorConfig())
    assert r["square"]["positives"] > 1 and r["square"]["objects"] == 1


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["ratio", "best_anchor"]))
def test_positive_anchor_scores_matches_loop(seed, assignment):
    """Against a loop that decodes each positive straight from its head's raw tensor (no flat indexing)."""
    from hwlib.vision.analysis import positive_anchor_scores
    from hwlib.vision.detector import STRIDES, assign_targets, decode_outputs

    g = torch.Generator().manual_seed(seed)
    cfg = DetectorConfig(assignment=assignment, neighbour_cells=assignment == "ratio")
    out = tuple(torch.randn(2, 24, 224 // s, 224 // s, generator=g) * 2 for s in STRIDES)
    targets = []
    for _ in range(2):
        m = int(torch.randint(1, 4, (1,), generator=g))
        xy = torch.randint(0, 150, (m, 2), generator=g).float()
        wh = torch.randint(8, 70, (m, 2), generator=g).float()
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, 3, (m,), generator=g)})
    r = positive_anchor_scores(out, targets, cfg)
    _, all_scores, _, _ = decode_outputs(out, cfg.anchors)
    asg = assign_targets(targets, [o.shape[-2:] for o in out], cfg.anchors, STRIDES, cfg.anchor_t,
                         cfg.neighbour_cells, cfg.assignment)
    gts = [(i, j) for i, t in enumerate(targets) for j in range(len(t["labels"]))]
    ious, ranks, per_class = [], [], {c: [] for c in range(3)}
    for level, a in enumerate(asg):
        s = STRIDES[level]
        for k in range(len(a["image"])):
            i, an, gy, gx = (int(a[f][k]) for f in ("image", "anchor", "gy", "gx"))
            v = out[level][i, an * 8:(an + 1) * 8, gy, gx]
            cx, cy = (gx + float(v[0].sigmoid()) * 2 - 0.5) * s, (gy + float(v[1].sigmoid()) * 2 - 0.5) * s
            bw, bh = (float(v[2].sigmoid()) * 2) ** 2 * cfg.anchors[level][an], (float(v[3].sigmoid()) * 2) ** 2 * cfg.anchors[level][an]
            score = float(v[4].sigmoid()) * float(v[5:8].softmax(0).max())
            i0, j0 = gts[int(a["gt"][k])]
            x1, y1, x2, y2 = targets[i0]["boxes"][j0].tolist()

            def iou_of(cx, cy, bw, bh):
                iw = max(0.0, min(cx + bw / 2, x2) - max(cx - bw / 2, x1))
                ih = max(0.0, min(cy + bh / 2, y2) - max(cy - bh / 2, y1))
                return iw * ih / (bw * bh + (x2 - x1) * (y2 - y1) - iw * ih)

            side = cfg.anchors[level][an]
            rank = int((all_scores[i] > score * (1 + 1e-6)).sum())
            c = int(targets[i0]["labels"][j0])
            per_class[c].append((iou_of(cx, cy, bw, bh), rank, iou_of((gx + 0.5) * s, (gy + 0.5) * s, side, side),
                                 float(v[4].sigmoid()), float(v[5:8].softmax(0)[c])))
    for c, name in enumerate(CLASS_NAMES):
        assert r[name]["positives"] == len(per_class[c])
        if per_class[c]:
            assert r[name]["iou"] == pytest.approx(float(torch.tensor([x[0] for x in per_class[c]]).median()), abs=1e-4)
            assert abs(r[name]["rank"] - float(torch.tensor([x[1] for x in per_class[c]], dtype=torch.float).median())) <= 2
            for j, key in ((2, "prior_iou"), (3, "objectness"), (4, "class_prob")):
                assert r[name][key] == pytest.approx(float(torch.tensor([x[j] for x in per_class[c]]).median()), abs=1e-4)
