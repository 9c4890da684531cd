import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwlib.vision.metrics import evaluate_detections, keypoint_norm, pck, pck_auc, pck_per_keypoint, voc_ap


def T(boxes, labels, scores=None):
    d = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}
    if scores is not None:
        d["scores"] = torch.tensor(scores, dtype=torch.float32)
    return d


def test_voc_ap_hand_worked():
    # precision 1 up to recall 0.5, then 0.5 up to recall 1: envelope area 0.5 + 0.25
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_ap(np.array([1.0]), np.array([1.0])) == 1.0
    assert voc_ap(np.array([]), np.array([])) == 0.0
    # interpolation: a later higher precision lifts the envelope
    assert voc_ap(np.array([0.25, 0.25, 0.5]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.25 + 0.25 * 2 / 3)


def test_voc_ap_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        voc_ap(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        voc_ap(np.array([np.nan]), np.array([1.0]))


def test_perfect_detections_ap_one():
    gt = [T([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), T([[5, 5, 50, 50]], [2])]
    pred = [T([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1], [0.9, 0.8]), T([[5, 5, 50, 50]], [2], [0.7])]
    r = evaluate_detections(pred, gt)
    assert r["ap"] == [1.0, 1.0, 1.0] and r["map"] == 1.0


def test_duplicate_is_false_positive():
    gt = [T([[0, 0, 10, 10]], [0])]
    pred = [T([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    r = evaluate_detections(pred, gt, num_classes=1)
    assert r["ap"][0] == 1.0           # the TP comes first; the duplicate FP after recall 1 costs nothing
    pred = [T([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.8, 0.9])]
    assert evaluate_detections(pred, gt, num_classes=1)["ap"][0] == 1.0
    # a duplicate scored above a second object's TP halves precision there
    gt = [T([[0, 0, 10, 10], [30, 30, 40, 40]], [0, 0])]
    pred = [T([[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40]], [0, 0, 0], [0.9, 0.8, 0.7])]
    assert evaluate_detections(pred, gt, num_classes=1)["ap"][0] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_iou_threshold_inclusive_and_best_match():
    gt = [T([[0, 0, 10, 10]], [0])]
    half = T([[0, 0, 10, 5]], [0], [0.9])           # IoU exactly 0.5 -> TP
    assert evaluate_detections([half], gt, 1)["ap"][0] == 1.0
    low = T([[0, 0, 10, 4.9]], [0], [0.9])
    assert evaluate_detections([low], gt, 1)["ap"][0] == 0.0


def test_no_predictions_and_no_ground_truth():
    gt = [T([[0, 0, 10, 10]], [0])]
    r = evaluate_detections([T([], [], [])], gt)
    assert r["ap"][0] == 0.0 and math.isnan(r["ap"][1]) and math.isnan(r["ap"][2]) and r["map"] == 0.0
    r = evaluate_detections([T([[0, 0, 1, 1]], [1], [0.5])], [T([], [])])
    assert all(math.isnan(a) for a in r["ap"]) and math.isnan(r["map"])
    r = evaluate_detections([], [])
    assert math.isnan(r["map"])


def test_wrong_class_is_not_a_match():
    gt = [T([[0, 0, 10, 10]], [0])]
    pred = [T([[0, 0, 10, 10]], [1], [0.9])]
    r = evaluate_detections(pred, gt)
    assert r["ap"][0] == 0.0 and math.isnan(r["ap"][1])


@pytest.mark.parametrize("pred, gt, msg", [
    ([T([[0, 0, 1, 1]], [3], [0.5])], [T([], [])], r"labels.*\[0, 3\)"),
    ([T([[0, 0, 1, 1]], [0], [0.5])], [T([], []), T([], [])], "one entry per image"),
    ([{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1, dtype=torch.int64)}], [T([], [])], "keys"),
    ([{"boxes": torch.zeros(2, 4), "labels": torch.zeros(1, dtype=torch.int64), "scores": torch.zeros(2)}], [T([], [])], "labels"),
    ([T([[0, 0, float("nan"), 1]], [0], [0.5])], [T([], [])], "NaN"),
    ([T([[0, 0, 1, 1]], [0], [float("nan")])], [T([], [])], "NaN"),
])
def test_evaluate_bad_input(pred, gt, msg):
    with pytest.raises(ValueError, match=msg):
        evaluate_detections(pred, gt)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_ap_in_unit_interval(n_img, seed):
    g = torch.Generator().manual_seed(seed)
    gts, preds = [], []
    for _ in range(n_img):
        m, d = int(torch.randint(0, 4, (1,), generator=g)), int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 50
        gts.append({"boxes": torch.cat([xy, xy + 5 + torch.rand(m, 2, generator=g) * 20], 1),
                    "labels": torch.randint(0, 3, (m,), generator=g)})
        xy = torch.rand(d, 2, generator=g) * 50
        preds.append({"boxes": torch.cat([xy, xy + 5 + torch.rand(d, 2, generator=g) * 20], 1),
                      "labels": torch.randint(0, 3, (d,), generator=g), "scores": torch.rand(d, generator=g)})
    r = evaluate_detections(preds, gts)
    for a in r["ap"]:
        assert math.isnan(a) or 0.0 <= a <= 1.0
    # perfect predictions -> AP 1 for every class with ground truth
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))} for t in gts]
    for a in evaluate_detections(perfect, gts)["ap"]:
        assert math.isnan(a) or a == 1.0


# ----------------------------------------------------------------------------- PCK
def test_pck_perfect_and_hand_worked():
    gt = torch.tensor([[[0.0, 0.0], [30.0, 40.0]]])          # bbox diagonal 50
    assert pck(gt.clone(), gt) == {0.05: 1.0, 0.1: 1.0, 0.15: 1.0, 0.2: 1.0}
    pred = gt.clone()
    pred[0, 0] = torch.tensor([3.0, 4.0])                      # error 5 = 0.1 * 50: exactly on the threshold
    r = pck(pred, gt)
    assert r[0.05] == 0.5 and r[0.1] == 1.0
    assert pck_per_keypoint(pred, gt, 0.05).tolist() == [0.0, 1.0]


def test_pck_norms():
    gt = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 0.0], [5.0, 30.0], [15.0, 30.0]]])
    assert keypoint_norm(gt, "torso").item() == pytest.approx(math.hypot(10, 30))
    degenerate = torch.zeros(1, 5, 2)
    degenerate[0, 1] = torch.tensor([3.0, 4.0])
    assert keypoint_norm(degenerate, "torso").item() == pytest.approx(5.0)  # falls back to the bbox diagonal
    pred = gt + 1.0
    assert pck(pred, gt, norm=torch.tensor([100.0]))[0.05] == 1.0
    assert pck(pred, gt, norm=torch.tensor([10.0]))[0.05] == 0.0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 20), st.integers(0, 10_000))
def test_pck_monotone(n, seed):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 5, 2, generator=g) * 100
    pred = gt + torch.randn(n, 5, 2, generator=g) * 5
    r = pck(pred, gt, thresholds=np.linspace(0, 0.5, 11))
    v = list(r.values())
    assert all(a <= b for a, b in zip(v, v[1:]))
    assert all(0 <= x <= 1 for x in v)


@pytest.mark.parametrize("pred, gt, kw, msg", [
    (torch.zeros(2, 5, 2), torch.zeros(3, 5, 2), {}, "same shape"),
    (torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), {}, "last dimension 2"),
    (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), {"norm": "head"}, "norm must be"),
    (torch.full((1, 5, 2), float("nan")), torch.zeros(1, 5, 2), {}, "NaN"),
    (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), {"norm": torch.ones(3)}, "one value per sample"),
    (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), {"thresholds": (-0.1,)}, "non-negative"),
])
def test_pck_bad_input(pred, gt, kw, msg):
    with pytest.raises(ValueError, match=msg):
        pck(pred, gt, **kw)


def test_pck_empty():
    r = pck(torch.zeros(0, 5, 2), torch.zeros(0, 5, 2))
    assert all(math.isnan(v) for v in r.values())


# ----------------------------------------------------------------------------- pck_auc
def _at_errors(px, norm=100.0):
    """One figure whose five keypoints are ``px`` pixels off (along x) and a fixed norm of ``norm`` px."""
    gt = torch.zeros(1, len(px), 2)
    pred = gt.clone()
    pred[0, :, 0] = torch.tensor(px, dtype=torch.float32)
    return pred, gt, torch.tensor([norm])


def test_pck_auc_hand_worked():
    # normalized errors 0, 0.025, 0.05, 0.1, 0.2 against max_tau 0.1: areas 1, 0.75, 0.5, 0, 0 -> mean 0.45
    pred, gt, norm = _at_errors([0.0, 2.5, 5.0, 10.0, 20.0])
    assert pck_auc(pred, gt, 0.1, norm) == pytest.approx(0.45, abs=1e-7)
    assert pck_auc(gt, gt, 0.1, norm) == 1.0
    assert math.isnan(pck_auc(torch.zeros(0, 5, 2), torch.zeros(0, 5, 2)))
    with pytest.raises(ValueError):
        pck_auc(pred, gt, 0.0, norm)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 30), min_size=1, max_size=10))
def test_pck_auc_is_the_area_under_the_pck_curve(px):
    pred, gt, norm = _at_errors(px)
    taus = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000 * 0.1      # midpoint rule over [0, 0.1]
    riemann = np.mean(list(pck(pred, gt, taus.tolist(), norm).values()))
    assert pck_auc(pred, gt, 0.1, norm) == pytest.approx(riemann, abs=2e-4)
