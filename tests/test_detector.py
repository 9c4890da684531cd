import dataclasses
import math

import pytest
import torch

from hwlib.vision import detector as det
from hwlib.config import DetectorConfig
from hwlib.vision.receptive import detector_rf, effective_rf, theoretical_rf


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


@pytest.mark.parametrize("head", ["seed", "dilated"])
def test_conv_weights_are_kaiming_normal_fan_out(head):
    """Every Conv-BN-ReLU conv is Kaiming-normal, fan-out, ReLU gain: std sqrt(2 / (cout * k * k)), mean 0,
    Gaussian (not uniform) tails. PyTorch's default, kaiming_uniform(a=sqrt(5)), has std 1/sqrt(3 fan_in):
    sqrt(3) or more off for the channel-doubling backbone convs, and uniform (excess kurtosis -1.2)."""
    torch.manual_seed(0)
    m = det.MultiScaleDetector(width=1.0, head=head)
    finals = {id(h[-1]) for h in m.heads}
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d) and id(c) not in finals]
    assert len(convs) == (8 if head == "seed" else 12)
    discriminating = 0
    all_w = []
    for c in convs:
        w = c.weight.detach().double().flatten()
        cout, cin, kh, kw = c.weight.shape
        fan_out, fan_in = cout * kh * kw, cin * kh * kw
        expected = (2.0 / fan_out) ** 0.5
        std = float(w.std())
        assert abs(std / expected - 1) < 0.1, (c, std, expected)
        assert abs(float(w.mean())) < 4 * expected / len(w) ** 0.5, c
        # the test must tell this init from fan-in Kaiming and from PyTorch's default
        alternatives = ((2.0 / fan_in) ** 0.5, (1.0 / (3 * fan_in)) ** 0.5)
        discriminating += all(abs(a / expected - 1) > 0.3 for a in alternatives)
        all_w.append(w / expected)
        assert c.bias is None
    assert discriminating >= 5                    # the 5 backbone convs change the channel count
    z = torch.cat(all_w)
    excess_kurtosis = float((z ** 4).mean() / (z ** 2).mean() ** 2 - 3)
    assert abs(excess_kurtosis) < 0.2, excess_kurtosis   # normal: 0; uniform: -1.2


def test_head_output_convs_start_small_with_low_objectness():
    torch.manual_seed(0)
    m = det.MultiScaleDetector(width=0.5)
    prior = math.log(0.01 / 0.99)
    for h in m.heads:
        final = h[-1]
        assert final.kernel_size == (1, 1) and final.bias is not None
        assert abs(float(final.weight.detach().std()) / 0.01 - 1) < 0.1
        b = final.bias.detach().view(m.num_anchors, 5 + m.num_classes)
        assert torch.allclose(b[:, 4], torch.full((m.num_anchors,), prior))
        assert torch.all(b[:, :4] == 0) and torch.all(b[:, 5:] == 0)


def test_init_weights_zeroes_conv_biases():
    from hwlib.vision.layers import init_weights

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3), torch.nn.BatchNorm2d(64), torch.nn.Conv2d(64, 32, 1))
    init_weights(net)
    assert torch.all(net[0].bias == 0) and torch.all(net[2].bias == 0)
    assert abs(float(net[0].weight.detach().std()) / (2 / (64 * 9)) ** 0.5 - 1) < 0.1
    assert abs(float(net[2].weight.detach().std()) / (2 / 32) ** 0.5 - 1) < 0.1


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


def test_loss_is_the_config_weighted_sum_of_its_parts():
    torch.manual_seed(0)
    m = det.MultiScaleDetector(width=0.25)
    with torch.no_grad():
        out = m(torch.rand(2, 3, 224, 224))
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0], [60.0, 50.0, 150.0, 170.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[100.0, 30.0, 160.0, 80.0]]), "labels": torch.tensor([1])}]
    cfg = DetectorConfig(width=0.25)
    assert (cfg.box_gain, cfg.obj_gain, cfg.cls_gain) == (0.05, 1.0, 0.5)     # the values of every committed run
    loss, logs = det.DetectionLoss(cfg)(out, targets)
    assert float(loss) == pytest.approx(0.05 * logs["box"] + 1.0 * logs["obj"] + 0.5 * logs["cls"], rel=1e-6)
    for gains in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
        c = dataclasses.replace(cfg, box_gain=gains[0], obj_gain=gains[1], cls_gain=gains[2])
        part, logs2 = det.DetectionLoss(c)(out, targets)
        assert logs2 == logs
        assert float(part) == pytest.approx(logs[("box", "obj", "cls")[gains.index(1.0)]], rel=1e-6)


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
    from hwlib.vision.receptive import gradient_centre

    g = torch.zeros(10, 10)
    g[2, 7] = 1.0
    assert gradient_centre(g) == (2.5, 7.5)
    m = det.MultiScaleDetector(width=0.25).eval()
    for level, trf in enumerate((17, 33, 65)):
        _, side = effective_rf(lambda x: m(x)[level], torch.rand(2, 3, 224, 224))
        assert side <= trf + 1, (level, side)   # the field is centred on its gradient, not on the cell's box


def test_wide_1x1_heads_match_the_3x3_heads_in_parameters():
    n = {h: sum(p.numel() for p in det.MultiScaleDetector(head=h, width=0.5).heads[1:].parameters())
         for h in ("deep1x1", "deep1x1_wide", "deep")}
    assert abs(n["deep1x1_wide"] - n["deep"]) / n["deep"] < 0.02 and n["deep1x1"] < 0.5 * n["deep"]
    assert detector_rf(det.MultiScaleDetector(head="deep1x1_wide"))["S3"]["rf"] == \
        detector_rf(det.MultiScaleDetector(head="seed"))["S3"]["rf"]       # deeper and wider, the same field


def test_a_listed_head_without_a_branch_raises(monkeypatch):
    monkeypatch.setattr(det, "HEADS", det.HEADS + ("new",))
    with pytest.raises(NotImplementedError, match="new"):
        det.MultiScaleDetector(head="new")


def test_best_anchor_assignment_gives_one_positive_per_object():
    # a 24 px box fits S1's middle anchor (index 1); a 120 px box S3's 128 px anchor (index 7); a 60 px box S2's 64 (4)
    boxes = torch.tensor([[10.0, 10.0, 34.0, 34.0], [40.0, 40.0, 160.0, 160.0], [100.0, 20.0, 160.0, 80.0]])
    assert det.best_anchor_index(boxes[:, 2:] - boxes[:, :2], det.SEED_ANCHORS).tolist() == [1, 7, 4]
    # 96 px is an anchor of S2 and of S3: the tie goes to the lower index, S2
    assert det.best_anchor_index(torch.tensor([[96.0, 96.0]]), det.SEED_ANCHORS).tolist() == [5]
    targets = [{"boxes": boxes, "labels": torch.tensor([0, 1, 2])}]
    a = det.assign_targets(targets, [(56, 56), (28, 28), (14, 14)], neighbour_cells=False, assignment="best_anchor")
    assert [len(x["gt"]) for x in a] == [1, 1, 1]
    assert [x["gt"].tolist() for x in a] == [[0], [2], [1]] and [x["anchor"].tolist() for x in a] == [[1], [1], [1]]
    # ... in the cell holding its centre: (22, 22) / 4 -> (5, 5) on S1; (130, 50) / 8 -> (16, 6) on S2;
    # (100, 100) / 16 -> (6, 6) on S3; its target box in that head's grid units
    assert [(x["gx"].tolist(), x["gy"].tolist()) for x in a] == [([5], [5]), ([16], [6]), ([6], [6])]
    assert torch.allclose(a[1]["box"], torch.tensor([[130 / 8, 50 / 8, 60 / 8, 60 / 8]]))
    assert [x["cls"].tolist() for x in a] == [[0], [2], [1]]
    ratio = det.assign_targets(targets, [(56, 56), (28, 28), (14, 14)], neighbour_cells=False)
    assert sum(len(x["gt"]) for x in ratio) > 3                           # ratio matching: several per object
    with pytest.raises(ValueError, match="assignment"):
        det.assign_targets(targets, [(56, 56), (28, 28), (14, 14)], assignment="best")


def test_ignored_anchors_are_those_whose_predicted_box_overlaps_a_ground_truth():
    """Hand-worked: head S3 (stride 16), all outputs 0, so each anchor predicts a box of its own side centred at
    (gx + 0.5) * 16: the 128-px anchor of cell (7, 7) predicts [56, 56, 184, 184]. A ground truth equal to it is
    overlapped (IoU 1) by that anchor; the neighbouring cells' 128-px boxes, shifted by 16 px, by IoU
    (112 * 128) / (2 * 128^2 - 112 * 128) = 0.778; nothing far away is."""
    p = torch.zeros(1, 3, 14, 14, 8)
    gt = [{"boxes": torch.tensor([[56.0, 56.0, 184.0, 184.0]]), "labels": torch.tensor([2])}]
    ign = det.ignored_anchors(p, 2, (96, 128, 192), gt, 0.7)
    assert ign.shape == (1, 3, 14, 14) and ign.dtype == torch.bool
    assert ign[0, 1, 7, 7] and ign[0, 1, 7, 8] and ign[0, 1, 8, 7]          # IoU 1 and 0.778 > 0.7
    assert not ign[0, 1, 0, 0] and not ign[0, 1, 7, 9]                      # far / shifted 32 px: 0.6 < 0.7
    assert ign[0, 1].sum() == 5                                            # the cell and its four neighbours
    assert det.ignored_anchors(p, 2, (96, 128, 192), gt, 0.99)[0].sum() == 1   # only the exact box
    # the *predicted* box counts, not the anchor's prior: cell x = 6 pushed a full cell right (tx large: 2 sigmoid
    # - 0.5 -> 1.5) predicts the ground truth exactly
    p[0, 1, 7, 6, 0] = 20.0
    ign = det.ignored_anchors(p, 2, (96, 128, 192), gt, 0.99)
    assert ign[0, 1, 7, 6] and ign[0].sum() == 2
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert not det.ignored_anchors(p, 2, (96, 128, 192), empty, 0.5).any()


def test_the_ignore_threshold_exempts_negatives_but_not_positives():
    torch.manual_seed(0)
    m = det.MultiScaleDetector(width=0.25)
    with torch.no_grad():
        out = m(torch.rand(2, 3, 224, 224))
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0], [60.0, 50.0, 150.0, 170.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[100.0, 30.0, 160.0, 80.0]]), "labels": torch.tensor([1])}]
    cfg = DetectorConfig(width=0.25, assignment="best_anchor", neighbour_cells=False)
    _, off = det.DetectionLoss(cfg)(out, targets)
    _, on = det.DetectionLoss(dataclasses.replace(cfg, ignore_iou=0.3))(out, targets)
    _, none = det.DetectionLoss(dataclasses.replace(cfg, ignore_iou=0.999))(out, targets)
    assert on["obj"] < off["obj"] and on["box"] == off["box"] and on["cls"] == off["cls"] and on["pos"] == off["pos"]
    assert none["obj"] == pytest.approx(off["obj"], rel=1e-6)
    # every negative ignored (a threshold no box can miss): what is left is the positives' own objectness loss
    everything = [{"boxes": torch.tensor([[0.0, 0.0, 224.0, 224.0]] * 1 + t["boxes"].tolist()), "labels": torch.zeros(1 + len(t["boxes"]), dtype=torch.int64)} for t in targets]
    _, pos_only = det.DetectionLoss(dataclasses.replace(cfg, ignore_iou=1e-9))(out, everything)
    assert 0 < pos_only["obj"] < off["obj"]
    with pytest.raises(ValueError, match="ignore_iou"):
        from hwlib.config import load_profile
        load_profile("smoke", detector={"ignore_iou": 1.5})
