"""DARK decoding: probabilities not logits, border handling, scale invariance, codec selection."""

import pytest
import torch

from hwlib.config import KeypointConfig
from hwlib.vision.keypoints import (HeatmapCodec, KeypointLoss, METHODS, RegressionCodec, codec_for, decode_heatmaps,
                                    encode_heatmaps)

S = 128
BINS = ((0, 2), (2, 4), (4, 8), (8, 12), (12, S))          # distance from the nearest border, image px


def _uniform_kps(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 5, 2, generator=g) * S


def _log_gaussian(kp, size, sigma):
    """Exact log-softmax of the Gaussian target (what a perfect CE model outputs, up to a constant)."""
    u = kp * (size / S) - 0.5
    g = torch.arange(size, dtype=torch.float32)
    d2 = ((g - u[..., 0:1]) ** 2)[..., None, :] + ((g - u[..., 1:2]) ** 2)[..., :, None]
    logits = -d2 / (2 * sigma ** 2)
    n, k = kp.shape[:2]
    return logits - torch.logsumexp(logits.reshape(n, k, -1), -1)[..., None, None]


def _border_distance(kp):
    return torch.minimum(kp, S - kp).amin(-1)                # [N, K] image px


# ----------------------------------------------------------------------------- logits -> probabilities
def test_reproduction_keypoint_decodes_through_the_codec():
    kp = torch.tensor([[[50.3, 70.9]]])
    logits = _log_gaussian(kp, 64, 2.0)
    codec = codec_for("heatmap", KeypointConfig(heatmap_size=64, sigma=2.0))     # default loss: "ce"
    assert codec.loss == "ce"
    for c in (0.0, 10.0, -30.0):
        assert torch.allclose(codec.decode(logits + c, "dark"), kp, atol=0.01)
    assert torch.equal(codec.decode(logits, "argmax"), torch.tensor([[[51.0, 71.0]]]))


@pytest.mark.parametrize("method", ["argmax", "dark"])
def test_ce_codec_invariant_to_an_added_constant(method):
    g = torch.Generator().manual_seed(1)
    kp = 10 + torch.rand(8, 5, 2, generator=g) * (S - 20)
    logits = _log_gaussian(kp, 64, 2.0) + 0.3 * torch.randn(8, 5, 64, 64, generator=g)
    codec = HeatmapCodec(64, 2.0, loss="ce")
    ref = codec.decode(logits, method)
    for c in (-100.0, -5.0, -0.5, 3.0, 12.0, 80.0):
        assert torch.allclose(codec.decode(logits + c, method), ref, atol=1e-3), c
    # a per-keypoint constant too (the softmax is per keypoint)
    per_kp = torch.randn(8, 5, 1, 1, generator=g) * 20
    assert torch.allclose(codec.decode(logits + per_kp, method), ref, atol=1e-3)


def test_ce_codec_round_trip_of_perfect_logits():
    kp = 8 + torch.rand(20, 5, 2, generator=torch.Generator().manual_seed(2)) * (S - 16)
    codec = HeatmapCodec(64, 2.0, loss="ce")
    assert (codec.decode(_log_gaussian(kp, 64, 2.0), "dark") - kp).norm(dim=-1).max() < 0.05


def test_mse_codec_clamps_negative_outputs():
    g = torch.Generator().manual_seed(3)
    kp = 8 + torch.rand(20, 5, 2, generator=g) * (S - 16)
    codec = codec_for("heatmap", KeypointConfig(heatmap_loss="mse", heatmap_size=64, sigma=2.0))
    assert codec.loss == "mse"
    target = codec.encode(kp)
    out = target - 0.01 + 0.002 * torch.randn(target.shape, generator=g)     # slightly negative background
    assert (out < 0).any()
    assert (codec.decode(out, "dark") - kp).norm(dim=-1).mean() < 0.1
    assert torch.allclose(codec.decode(target, "dark"), kp, atol=0.05)


def test_dark_rejects_negative_maps():
    with pytest.raises(ValueError, match="non-negative"):
        decode_heatmaps(torch.randn(1, 1, 16, 16), S, "dark")
    decode_heatmaps(torch.randn(1, 1, 16, 16), S, "argmax")                  # argmax needs no sign


# ----------------------------------------------------------------------------- exact Gaussians
@pytest.mark.parametrize("size", [32, 64, 128])
def test_dark_never_worse_than_argmax_at_any_border_distance(size):
    kp = _uniform_kps(300, seed=size)                                        # 1500 keypoints
    dist = _border_distance(kp)
    for sigma in (1.0, 2.0, 3.0):
        hm = encode_heatmaps(kp, S, size, sigma)
        err_a = (decode_heatmaps(hm, S, "argmax") - kp).norm(dim=-1)
        err_d = (decode_heatmaps(hm, S, "dark") - kp).norm(dim=-1)
        for lo, hi in BINS:
            m = (dist >= lo) & (dist < hi)
            assert m.sum() >= 20, (lo, hi)
            assert err_d[m].mean() <= err_a[m].mean() + 1e-4, (size, sigma, lo, hi, err_d[m].mean(), err_a[m].mean())


@pytest.mark.parametrize("size", [32, 64, 128])
def test_dark_exact_away_from_the_border(size):
    """Exact away from the border: 12 px and more, and in fact wherever the keypoint is at least 1.5
    heatmap cells inside (the argmax cell is then not on the outermost ring)."""
    kp = _uniform_kps(200, seed=10 + size)
    dist = _border_distance(kp)
    for sigma in (1.0, 2.0, 3.0):
        err = (decode_heatmaps(encode_heatmaps(kp, S, size, sigma), S, "dark") - kp).norm(dim=-1)
        assert err[dist >= 12].max() < 0.05, (size, sigma)
        assert err[dist >= 1.5 * S / size].max() < 0.05, (size, sigma)


def test_dark_near_the_border_at_32():
    """The outside check's case: at 32x32, keypoints 4-12 px from the border (1-3 cells)."""
    g = torch.Generator().manual_seed(4)
    along = 20 + torch.rand(400, generator=g) * 88
    off = 6 + torch.rand(400, generator=g) * 6                               # 6-12 px from the left border
    kp = torch.stack([off, along], -1)[:, None]
    for sigma in (1.0, 2.0, 3.0):
        err = (decode_heatmaps(encode_heatmaps(kp, S, 32, sigma), S, "dark") - kp).norm(dim=-1)
        assert err.max() < 0.05, sigma


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 7.0, 1e6])
def test_dark_invariant_to_heatmap_scale(scale):
    g = torch.Generator().manual_seed(5)
    kp = _uniform_kps(20, seed=6)
    hm = (encode_heatmaps(kp, S, 64, 2.0) * torch.exp(0.2 * torch.randn(20, 5, 64, 64, generator=g)))
    assert torch.allclose(decode_heatmaps(hm * scale, S, "dark"), decode_heatmaps(hm, S, "dark"), atol=1e-3)


def test_batched_dark_equals_one_map_at_a_time():
    """The per-border-distance grouping must put every offset back on its own keypoint."""
    g = torch.Generator().manual_seed(7)
    kp = _uniform_kps(6, seed=8)
    hm = encode_heatmaps(kp, S, 32, 2.0) * torch.exp(0.3 * torch.randn(6, 5, 32, 32, generator=g))
    batched = decode_heatmaps(hm, S, "dark")
    single = torch.stack([torch.stack([decode_heatmaps(hm[i:i + 1, j:j + 1], S, "dark")[0, 0] for j in range(5)])
                          for i in range(6)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_flat_and_zero_maps_fall_back_to_argmax():
    for hm in (torch.zeros(1, 2, 16, 16), torch.ones(1, 2, 16, 16)):
        assert torch.equal(decode_heatmaps(hm, S, "dark"), decode_heatmaps(hm, S, "argmax"))


# ----------------------------------------------------------------------------- codec selection
def test_codec_for_methods():
    cfg = KeypointConfig()
    assert isinstance(codec_for("heatmap", cfg), HeatmapCodec)
    assert isinstance(codec_for("regression", cfg), RegressionCodec)
    assert isinstance(codec_for("integral", cfg), RegressionCodec)


@pytest.mark.parametrize("call, msg", [
    (lambda: codec_for("typo", KeypointConfig()), "heatmap.*regression.*integral"),
    (lambda: KeypointLoss("typo", KeypointConfig()), "method must be one of"),
    (lambda: HeatmapCodec(64, 2.0, loss="l1"), "loss"),
    (lambda: HeatmapCodec(64, 2.0, method="soft"), "method"),
    (lambda: decode_heatmaps(torch.rand(1, 1, 8, 8), S, "dark", blur_kernel=4), "odd"),
])
def test_bad_codec_input(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
    assert METHODS == ("heatmap", "regression", "integral")
