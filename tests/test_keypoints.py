import math
from dataclasses import replace

import pytest
import torch

from hwlib.vision.keypoints import (HeatmapCodec, HeatmapNet, IntegralNet, KeypointLoss, RegressionCodec, RegressionNet,
                                    build_keypoint_model, coordinate_channels, decode_heatmaps, encode_heatmaps,
                                    heatmaps_as_targets, soft_argmax)
from hwlib.config import KeypointConfig, load_profile


def _kps(n=100, seed=0, margin=16):
    g = torch.Generator().manual_seed(seed)
    return margin + torch.rand(n, 5, 2, generator=g) * (128 - 2 * margin)


def test_gaussian_centred_at_subpixel_position():
    kp = torch.tensor([[[64.0, 32.0]]])            # 64x64 heatmap: u = 64*0.5-0.5 = 31.5, v = 15.5
    hm = encode_heatmaps(kp, 128, 64, 2.0)
    assert hm.shape == (1, 1, 64, 64)
    assert torch.isclose(hm[0, 0, 15, 31], hm[0, 0, 16, 32]) and torch.isclose(hm[0, 0, 15, 31], hm[0, 0, 15, 32])
    assert hm.max() < 1.0                            # the peak lies between grid points, not rounded onto one


@pytest.mark.parametrize("size", [32, 64, 128])
def test_codec_round_trip(size):
    kp = _kps()
    hm = encode_heatmaps(kp, 128, size, 2.0)
    cell = 128 / size
    argmax_err = (decode_heatmaps(hm, 128, "argmax") - kp).abs() / cell
    assert argmax_err.max() <= 0.5 + 1e-4           # within half a heatmap pixel per axis
    dark_err = (decode_heatmaps(hm, 128, "dark") - kp).norm(dim=-1) / cell
    assert dark_err.mean() < 0.05 and dark_err.mean() < argmax_err.norm(dim=-1).mean() / 5


def test_codec_classes_and_regression_codec():
    kp = _kps(10)
    c = HeatmapCodec(64, 2.0, loss="mse")          # MSE models output the Gaussian itself
    assert torch.allclose(c.decode(c.encode(kp)), kp, atol=0.05)
    ce = HeatmapCodec(64, 2.0, loss="ce")          # CE models output logits: log of the Gaussian + any constant
    assert ce.loss == "ce" and HeatmapCodec(64, 2.0).loss == "ce"
    assert torch.allclose(ce.decode(torch.log(ce.encode(kp).clamp(min=1e-30)) + 5.0), kp, atol=0.05)
    r = RegressionCodec()
    assert torch.allclose(r.decode(r.encode(kp)), kp)
    assert (r.encode(kp) >= 0).all() and (r.encode(kp) <= 1).all()


def test_soft_argmax_convention():
    logits = torch.full((1, 1, 64, 64), -1e4)
    logits[0, 0, 10, 20] = 0.0
    assert torch.allclose(soft_argmax(logits)[0, 0] * 128, torch.tensor([(20 + 0.5) * 2, (10 + 0.5) * 2]))


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("skip", [True, False])
def test_heatmap_net_shapes(size, skip):
    assert HeatmapNet(5, size, skip, base_channels=8)(torch.rand(2, 1, 128, 128)).shape == (2, 5, size, size)


def test_regression_and_integral_shapes():
    for m in (RegressionNet(5, base_channels=8), IntegralNet(5, 64, True, base_channels=8)):
        out = m(torch.rand(3, 1, 128, 128))
        assert out.shape == (3, 5, 2) and (out >= 0).all() and (out <= 1).all()


def test_coordinate_channels_hand_worked():
    """A 2 x 4 map: column centres (j + 0.5) / 4 -> [-0.75, -0.25, 0.25, 0.75], row centres -> [-0.5, 0.5]."""
    x = torch.rand(3, 1, 2, 4)
    out = coordinate_channels(x)
    assert out.shape == (3, 3, 2, 4) and torch.equal(out[:, :1], x)
    assert torch.equal(out[0, 1], torch.tensor([[-0.75, -0.25, 0.25, 0.75]] * 2))
    assert torch.equal(out[2, 2], torch.tensor([[-0.5] * 4, [0.5] * 4]))


def test_coord_channels_config_builds_coordconv_regression_only():
    """``coord_channels`` builds the CoordConv regression model (the stem's 3 x 3 filters read 2 more input
    channels, nothing else changes) and leaves the heatmap model as it is."""
    cfg = KeypointConfig(base_channels=8, coord_channels=True)
    plain, coord = RegressionNet(5, base_channels=8), build_keypoint_model("regression", cfg)
    assert coord.coords and not plain.coords
    n_plain, n_coord = (sum(p.numel() for p in m.parameters()) for m in (plain, coord))
    assert n_coord - n_plain == 2 * 9 * 4          # stem: 3 x 3 filters to c/2 = 4 channels, 2 more inputs
    assert coord(torch.rand(2, 1, 128, 128)).shape == (2, 5, 2)
    assert isinstance(build_keypoint_model("heatmap", cfg), HeatmapNet)


def test_heatmaps_as_targets_perfect_prediction():
    cfg = KeypointConfig(heatmap_loss="ce", sigma=2.0)
    kp = _kps(4, margin=30)
    target = encode_heatmaps(kp, 128, 64, 2.0)
    logits = torch.log(target.clamp(min=1e-30))
    assert torch.allclose(heatmaps_as_targets(logits, cfg), target, atol=1e-3)


def test_losses():
    cfg = KeypointConfig(sigma=2.0, heatmap_size=32)
    kp = _kps(2)
    for method, out in (("heatmap", torch.randn(2, 5, 32, 32)), ("regression", torch.rand(2, 5, 2)), ("integral", torch.rand(2, 5, 2))):
        loss, _ = KeypointLoss(method, cfg)(out, kp)
        assert torch.isfinite(loss) and loss > 0
    perfect, _ = KeypointLoss("regression", cfg)(kp / 128, kp)
    assert perfect.item() == pytest.approx(0.0, abs=1e-7)


def test_coordinate_losses_hand_worked_in_pixels():
    """Hand-worked at a 128-pixel image, errors in normalized units (px / 128), losses back in those units:
    wing (w 10 px, eps 2 px): 1 px -> 10 ln 1.5 = 4.0547 px; 20 px -> 20 - (10 - 10 ln 6) = 27.9176 px (continuous
    at 10 px: 10 ln 6 both sides); smooth L1 (beta 1 px): 0.5 px -> 0.125 px, 3 px -> 2.5 px; L1 is |e|."""
    from hwlib.vision.keypoints import coordinate_loss

    px = torch.tensor([-1.0, 20.0, 0.5, 3.0, 10.0, 0.0])
    wing = coordinate_loss(px / 128, "wing", 128.0) * 128
    assert wing.tolist() == pytest.approx([10 * math.log(1.5), 20 - 10 + 10 * math.log(6), 10 * math.log(1.25),
                                           10 * math.log(2.5), 10 * math.log(6), 0.0], abs=1e-4)
    smooth = coordinate_loss(px / 128, "smooth_l1", 128.0) * 128
    assert smooth.tolist() == pytest.approx([0.5, 19.5, 0.125, 2.5, 9.5, 0.0], abs=1e-4)
    assert (coordinate_loss(px / 128, "l1", 128.0) * 128).tolist() == pytest.approx(px.abs().tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="regression loss"):
        coordinate_loss(px, "l2")


def test_regression_loss_option_reaches_gap_fc_regression_only():
    """``regression_loss`` changes GAP+FC regression's loss (1 px off in x on every keypoint: wing's 4.05 px
    against L1's 1, halved by the mean over x and y), not integral regression's."""
    kp = _kps(2)
    out = kp / 128
    out[..., 0] += 1 / 128
    cfg = KeypointConfig(regression_loss="wing")
    wing, _ = KeypointLoss("regression", cfg)(out, kp)
    assert wing.item() * 128 == pytest.approx(10 * math.log(1.5) / 2, abs=1e-3)
    integral, _ = KeypointLoss("integral", cfg)(out, kp)
    assert integral.item() * 128 == pytest.approx(0.5, abs=1e-4)
    assert cfg.unread_by("heatmap") >= {"regression_loss"} and "regression_loss" not in cfg.unread_by("regression")
    with pytest.raises(ValueError, match="regression_loss"):
        load_profile("smoke", keypoint={"regression_loss": "l2"})


def test_ohkm_keeps_each_images_hardest_keypoints():
    # hand-worked: image 0 misses keypoint 0 by 0.1 and keypoint 4 by 0.3 in x (normalized units), image 1 is exact;
    # per-keypoint L1 (mean over x, y): image 0 [0.05, 0, 0, 0, 0.15], image 1 zeros
    kp = _kps(2)
    out = kp / 128
    out[0, 0, 0] += 0.1
    out[0, 4, 0] += 0.3
    full, _ = KeypointLoss("regression", KeypointConfig())(out, kp)
    assert full.item() == pytest.approx(0.2 / 10, abs=1e-6)
    assert full.item() == pytest.approx(torch.nn.functional.l1_loss(out, kp / 128).item(), abs=1e-7)
    top2, _ = KeypointLoss("regression", KeypointConfig(ohkm=2))(out, kp)
    assert top2.item() == pytest.approx((0.05 + 0.15) / 4, abs=1e-6)     # 2 images x 2 hardest keypoints
    cfg = KeypointConfig(sigma=2.0, heatmap_size=32)
    logits = torch.randn(2, 5, 32, 32)
    per = KeypointLoss("heatmap", cfg).per_keypoint(logits, kp)
    top1, _ = KeypointLoss("heatmap", replace(cfg, ohkm=1))(logits, kp)
    assert top1.item() == pytest.approx(per.max(1).values.mean().item(), rel=1e-6)


@pytest.mark.parametrize("call, msg", [
    (lambda: encode_heatmaps(torch.zeros(2, 5), 128, 64), "3 dimensions"),
    (lambda: encode_heatmaps(torch.zeros(2, 5, 2), 128, 64, sigma=0), "sigma"),
    (lambda: encode_heatmaps(torch.full((1, 5, 2), float("nan"))), "NaN"),
    (lambda: decode_heatmaps(torch.zeros(2, 5, 64)), "4 dimensions"),
    (lambda: decode_heatmaps(torch.zeros(1, 5, 8, 8), method="soft"), "method"),
    (lambda: HeatmapNet(heatmap_size=48), "heatmap_size"),
    (lambda: HeatmapNet(base_channels=8)(torch.rand(1, 3, 128, 128)), r"\[B, 1, H, W\]"),
])
def test_bad_input(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_regression_head_options_change_only_what_they_name():
    """The standard head's three differences (linear output, fp32 head, LayerNorm after pooling): at their defaults
    the original network (same parameters, same output); linear output starts at the image centre like the sigmoid's
    0.5; the fp32 head's output does not depend on autocast; unknown output kinds are refused."""
    import dataclasses

    from hwlib.config import KeypointConfig
    from hwlib.vision.keypoints import RegressionNet, build_keypoint_model

    torch.manual_seed(0)
    base = RegressionNet(5, 8)
    torch.manual_seed(0)
    same = build_keypoint_model("regression", KeypointConfig(base_channels=8))
    x = torch.rand(2, 1, 128, 128)
    assert torch.equal(base(x), same(x))
    torch.manual_seed(0)
    lin = RegressionNet(5, 8, output="linear")
    assert torch.allclose(lin.head[-1].bias, torch.full((10,), 0.5))
    with torch.no_grad():
        lin.head[-1].weight.zero_()
        base.head[-1].weight.zero_()
        base.head[-1].bias.zero_()
    assert torch.allclose(lin(x), base(x))                   # both 0.5 everywhere
    normed = RegressionNet(5, 8, norm=True)
    assert any(isinstance(m, torch.nn.LayerNorm) for m in normed.head)
    fp32 = RegressionNet(5, 8, fp32_head=True).eval()
    with torch.no_grad():
        plain = fp32(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = fp32(x)
            head_in = fp32.encoder(x)[4]
    assert auto.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(auto, torch.sigmoid(fp32.head(head_in.float())).view(-1, 5, 2))
    assert plain.shape == (2, 5, 2)
    with pytest.raises(ValueError, match="output"):
        RegressionNet(5, 8, output="tanh")
    cfg = KeypointConfig()
    assert {"regression_output", "regression_norm", "regression_fp32_head"} <= cfg.unread_by("heatmap")
    assert not {"regression_output"} & cfg.unread_by("regression")
    assert dataclasses.replace(cfg, regression_output="linear").unread_by("regression") == cfg.unread_by("regression")
