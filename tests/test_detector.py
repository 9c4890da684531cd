import dataclasses

import pytest
import torch

from hwlib import detector as det
from hwlib.config import DetectorConfig
from hwlib.receptive import detector_rf, effective_rf, theoretical_rf


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_output_shapes(width):
    m = det.MultiScaleDetector(width=width)
    p1, p2, p3 = m(torch.rand(2, 3, 224, 224))
    assert p1.shape == (2, 24, 56, 56) and p2.shape == (2, 24, 28, 28) and p3.shape == (2, 24, 14, 14)


def test_seed_network_size():
    n = sum(p.numel() for p in det.MultiScaleDetector().parameters())
    assert 4.5e6 < n < 4.8e6


def test_init_bn_and_kaiming():
    m = det.MultiScaleDetector(width=0.25)
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


def test_theoretical_receptive_fields():
    assert {k: v["rf"] for k, v in detector_rf(det.MultiScaleDetector(width=0.25)).items()} == {"S1": 17, "S2": 33, "S3": 65}
    assert {k: v["rf"] for k, v in detector_rf(det.MultiScaleDetector(width=0.25, head="dilated")).items()} == {"S1": 17, "S2": 129, "S3": 257}
    assert {k: v["rf"] for k, v in detector_rf(det.MultiScaleDetector(width=0.25, head="deep")).items()} == {"S1": 17, "S2": 65, "S3": 129}
    deep1x1 = det.MultiScaleDetector(width=0.25, head="deep1x1")
    assert {k: v["rf"] for k, v in detector_rf(deep1x1).items()} == {"S1": 17, "S2": 33, "S3": 65}
    assert [sum(isinstance(m, torch.nn.Conv2d) for m in h.modules()) for h in deep1x1.heads] == [2, 4, 4]
    assert theoretical_rf([torch.nn.Conv2d(1, 1, 3), torch.nn.Conv2d(1, 1, 3, stride=2), torch.nn.Conv2d(1, 1, 3)]) == (9, 2)


def test_effective_rf_inside_theoretical():
    m = det.MultiScaleDetector(width=0.25).eval()
    g, side = effective_rf(lambda x: m(x)[0], torch.rand(2, 3, 224, 224))
    assert g.shape == (224, 224) and 0 < side <= 17 + 4
    assert g[:, :90].sum() == 0                      # nothing outside the 17-px theoretical field


def test_encode_decode_round_trip():
    """decode(encode(gt)) returns the ground-truth boxes for every assigned positive."""
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 40.0, 44.0], [60.0, 50.0, 150.0, 170.0]]),
                "labels": torch.tensor([0, 2])}]
    sizes = [(56, 56), (28, 28), (14, 14)]
    assigned = det.assign_targets(targets, sizes)
    outs = [torch.zeros(1, 24, h, w) for h, w in sizes]
    n = 0
    for level, a in enumerate(assigned):
        boxes_px = det._xywh_to_xyxy(a["box"]) * det.STRIDES[level]
        anc = torch.tensor(det.SEED_ANCHORS[level], dtype=torch.float32)[a["anchor"]]
        t = det.encode_boxes(boxes_px, torch.stack([a["gx"], a["gy"]], 1), anc, det.STRIDES[level])
        out = outs[level].view(1, 3, 8, h := sizes[level][0], sizes[level][1])
        for j in range(len(t)):
            out[0, a["anchor"][j], :4, a["gy"][j], a["gx"][j]] = t[j]
            out[0, a["anchor"][j], 4, a["gy"][j], a["gx"][j]] = 10.0
            out[0, a["anchor"][j], 5 + a["cls"][j], a["gy"][j], a["gx"][j]] = 10.0
        n += len(t)
        boxes, scores, labels, heads = det.decode_outputs(tuple(outs))
        sel = scores[0] > 0.9
        for b in boxes[0, sel]:
            assert torch.allclose(b, targets[0]["boxes"][0], atol=1e-3) or torch.allclose(b, targets[0]["boxes"][1], atol=1e-3)
    assert n > 2   # several positives per object (neighbour cells, several anchors)


def test_assignment_gives_every_head_positives():
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 34.0, 34.0], [60.0, 60.0, 124.0, 124.0], [20.0, 20.0, 180.0, 180.0]]),
                "labels": torch.tensor([0, 1, 2])}]
    a = det.assign_targets(targets, [(56, 56), (28, 28), (14, 14)])
    assert all(len(x["image"]) > 0 for x in a)
    assert 0 in a[0]["cls"].tolist() and 2 in a[2]["cls"].tolist()
    empty = det.assign_targets([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}],
                               [(56, 56), (28, 28), (14, 14)])
    assert all(len(x["image"]) == 0 for x in empty)


def test_loss_finite_and_decreases():
    torch.manual_seed(0)
    cfg = DetectorConfig(width=0.25)
    m = det.MultiScaleDetector(width=0.25)
    loss_fn = det.DetectionLoss(cfg)
    x = torch.rand(2, 3, 224, 224)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([0])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    losses = []
    for _ in range(5):
        loss, logs = loss_fn(m(x), targets)
        assert torch.isfinite(loss) and logs["pos"] > 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_decode_predictions_filters_and_caps():
    m = det.MultiScaleDetector(width=0.25).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 3, 224, 224))
    preds = det.decode_predictions(out, conf_threshold=0.0, max_det=7)
    assert len(preds) == 2 and all(len(p["boxes"]) <= 7 for p in preds)
    for p in preds:
        assert (p["boxes"] >= 0).all() and (p["boxes"] <= 224).all()
        assert (p["scores"][:-1] >= p["scores"][1:]).all()
        assert set(p["heads"].tolist()) <= {0, 1, 2}
    assert all(len(p["boxes"]) == 0 for p in det.decode_predictions(out, conf_threshold=1.0))
    with pytest.raises(ValueError, match="conf_threshold"):
        det.decode_predictions(out, conf_threshold=2.0)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="head"):
        det.MultiScaleDetector(head="fpn")
    with pytest.raises(ValueError, match="width"):
        det.MultiScaleDetector(width=0)


def test_gradient_centre_and_erf_within_trf_for_strided_heads():
    from hwlib.receptive import gradient_centre

    g = torch.zeros(10, 10)
    g[2, 7] = 1.0
    assert gradient_centre(g) == (2.5, 7.5)
    m = det.MultiScaleDetector(width=0.25).eval()
    for level, trf in enumerate((17, 33, 65)):
        _, side = effective_rf(lambda x: m(x)[level], torch.rand(2, 3, 224, 224))
        assert side <= trf + 1, (level, side)   # the field is centred on its gradient, not on the cell's box
