import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwlib.vision.boxes import batched_nms, box_iou


def _random_boxes(n, seed=0, scale=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * scale
    wh = torch.rand(n, 2, generator=g) * scale / 2
    return torch.cat([xy, xy + wh], 1)


def _iou_brute(a, b):
    out = torch.zeros(len(a), len(b))
    for i, p in enumerate(a.tolist()):
        for j, q in enumerate(b.tolist()):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _nms_brute(boxes, scores, labels, thr):
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(labels[i] != labels[k] or _iou_brute(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= thr for k in keep):
            keep.append(i)
    return keep


def test_iou_hand_worked():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 1.0, 2.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0, 0.5]]))


def test_iou_matches_brute_force():
    a, b = _random_boxes(30, 1), _random_boxes(20, 2)
    assert torch.allclose(box_iou(a, b), _iou_brute(a, b), atol=1e-6)


def test_iou_empty_and_degenerate():
    assert box_iou(torch.zeros(0, 4), _random_boxes(3)).shape == (0, 3)
    z = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(z, z).item() == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 25), st.integers(0, 10_000))
def test_iou_properties(n, seed):
    a, b = _random_boxes(n, seed), _random_boxes(n + 1, seed + 1)
    iou = box_iou(a, b)
    assert ((iou >= 0) & (iou <= 1 + 1e-6)).all()
    assert torch.allclose(iou, box_iou(b, a).T)
    assert torch.allclose(box_iou(a, a).diagonal(), torch.ones(n))


def test_nms_matches_brute_force():
    for seed in range(5):
        boxes = _random_boxes(60, seed, scale=60)
        g = torch.Generator().manual_seed(seed)
        scores = torch.rand(60, generator=g)
        labels = torch.randint(0, 3, (60,), generator=g)
        keep = batched_nms(boxes, scores, labels, 0.5)
        assert keep.dtype == torch.int64
        assert keep.tolist() == _nms_brute(boxes, scores, labels, 0.5)


def test_nms_hand_worked():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    # box 1 overlaps box 0 (IoU 0.68) with the same label -> dropped; box 2 has another label
    assert batched_nms(boxes, scores, labels, 0.6).tolist() == [0, 2, 3]
    # threshold is strict: IoU equal to the threshold is kept
    iou01 = box_iou(boxes[:1], boxes[1:2]).item()
    assert batched_nms(boxes[:2], scores[:2], labels[:2], iou01).tolist() == [0, 1]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.floats(0.1, 0.9), st.integers(0, 10_000))
def test_nms_properties(n, thr, seed):
    boxes = _random_boxes(n, seed, scale=50)
    g = torch.Generator().manual_seed(seed)
    scores, labels = torch.rand(n, generator=g), torch.randint(0, 2, (n,), generator=g)
    keep = batched_nms(boxes, scores, labels, thr)
    assert len(set(keep.tolist())) == len(keep) <= n
    assert (scores[keep][:-1] >= scores[keep][1:]).all() if len(keep) > 1 else True
    kb, kl = boxes[keep], labels[keep]
    iou = box_iou(kb, kb)
    same = kl[:, None] == kl[None, :]
    off = ~torch.eye(len(keep), dtype=torch.bool)
    assert not (iou[same & off] > thr + 1e-6).any()


@pytest.mark.parametrize("bad, msg", [
    (torch.zeros(3, 5), "last dimension 4"),
    (torch.zeros(4), "2 dimensions"),
    (torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), "NaN"),
    (torch.tensor([[2.0, 0.0, 1.0, 1.0]]), "x1 <= x2"),
    ([[0, 0, 1, 1]], "torch.Tensor"),
    (torch.zeros(2, 4, dtype=torch.int64), "floating"),
])
def test_iou_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        box_iou(bad, torch.zeros(1, 4))


def test_nms_bad_input():
    b = _random_boxes(3)
    with pytest.raises(ValueError, match="same length"):
        batched_nms(b, torch.rand(2), torch.zeros(3, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="integer"):
        batched_nms(b, torch.rand(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        batched_nms(b, torch.rand(3), torch.zeros(3, dtype=torch.int64), 1.5)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).numel() == 0
