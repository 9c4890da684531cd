"""Keypoint models and their codecs: heatmaps (argmax / DARK), direct regression, integral regression.

Coordinate convention (one for every codec): keypoints are ``(x, y)`` in continuous image pixels,
pixel ``i`` covering ``[i, i + 1)``. A heatmap of size ``H`` over an image of size ``S`` has cells of
``S / H`` image pixels, and heatmap cell ``j`` is centred at image coordinate ``(j + 0.5) * S / H``.
So image ``x`` sits at heatmap coordinate ``u = x * H / S - 0.5`` (cell-centre units).

Codecs (the MMPose pattern): each is an ``encode``/``decode`` pair, so a model is trained on
``codec.encode(keypoints)`` and evaluated on ``codec.decode(outputs)`` in image pixels by the same
:func:`hwlib.metrics.pck`.

Models share one encoder (:class:`Encoder`, 128 -> 8 pixels, with a global-context bottleneck
whose receptive field covers the whole image):

- :class:`HeatmapNet`: U-Net decoder with (optional) skip connections -> ``[B, K, H, W]`` heatmaps.
- :class:`RegressionNet`: global average pooling + MLP -> ``[B, K, 2]`` normalized (x, y) in [0, 1].
- :class:`IntegralNet`: the HeatmapNet architecture, spatial softmax and expectation
  (soft-argmax, as in integral pose regression / DSNT) -> ``[B, K, 2]`` in [0, 1], trained on coordinates.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .boxes import check_tensor
from .layers import conv_bn_relu as _conv_bn, init_weights

IMAGE_SIZE = 128
METHODS = ("heatmap", "regression", "integral")


# ----------------------------------------------------------------------------- codecs
def _check_size(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def encode_heatmaps(keypoints: torch.Tensor, image_size: int = 128, heatmap_size: int = 64,
                    sigma: float = 2.0) -> torch.Tensor:
    """Gaussian heatmaps centred at each keypoint's exact sub-pixel position.

    Args:
        keypoints: ``Tensor[N, K, 2]`` (x, y) in image pixels.
        image_size: S, side of the (square) image.
        heatmap_size: H, side of the heatmap.
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        ``Tensor[N, K, H, H]``, peak value 1 at the keypoint (not rounded to the grid).
    """
    check_tensor(keypoints, "keypoints", ndim=3, last=2, floating=True)
    _check_size("image_size", image_size)
    _check_size("heatmap_size", heatmap_size)
    if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    u = keypoints.float() * (heatmap_size / image_size) - 0.5            # [N, K, 2]
    grid = torch.arange(heatmap_size, dtype=torch.float32, device=keypoints.device)
    gx = torch.exp(-((grid - u[..., 0:1]) ** 2) / (2 * sigma ** 2))      # [N, K, H]
    gy = torch.exp(-((grid - u[..., 1:2]) ** 2) / (2 * sigma ** 2))
    return gy[..., :, None] * gx[..., None, :]


def _gaussian_blur(h: torch.Tensor, kernel: int = 11) -> torch.Tensor:
    """DARK's distribution modulation: Gaussian smoothing (sigma from the kernel size, as OpenCV)."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    r = kernel // 2
    x = torch.arange(-r, r + 1, dtype=h.dtype, device=h.device)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    n, c, hh, ww = h.shape
    flat = h.reshape(n * c, 1, hh, ww)
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return flat.view(n, c, hh, ww)


def decode_heatmaps(heatmaps: torch.Tensor, image_size: int = 128, method: str = "argmax",
                    blur_kernel: int = 11) -> torch.Tensor:
    """Keypoints from heatmaps, in image pixels.

    Args:
        heatmaps: ``Tensor[N, K, H, W]``.
        image_size: S; cell ``j`` maps to image coordinate ``(j + 0.5) * S / W``.
        method: ``"argmax"`` (the peak cell's centre) or ``"dark"`` (distribution-aware sub-pixel
            refinement: blur, log, then one Newton step ``-H^{-1} g`` of a second-order Taylor
            expansion around the peak, with finite-difference gradient and Hessian).

    Returns:
        ``Tensor[N, K, 2]`` (x, y) in image pixels.
    """
    check_tensor(heatmaps, "heatmaps", ndim=4, floating=True)
    if method not in ("argmax", "dark"):
        raise ValueError(f"method must be 'argmax' or 'dark', got {method!r}")
    _check_size("image_size", image_size)
    hm = heatmaps.float()
    n, k, h, w = hm.shape
    if n * k == 0 or h * w == 0:
        return torch.zeros(n, k, 2)
    idx = hm.reshape(n, k, -1).argmax(-1)
    px, py = (idx % w).float(), (idx // w).float()
    if method == "dark":
        lg = torch.log(_gaussian_blur(hm.clamp(min=1e-10), blur_kernel).clamp(min=1e-10))
        pad = F.pad(lg.reshape(n * k, 1, h, w), (2, 2, 2, 2), mode="replicate").reshape(n, k, h + 4, w + 4)
        xi, yi = idx % w + 2, idx // w + 2

        def at(dy, dx):
            return pad.reshape(n, k, -1).gather(-1, ((yi + dy) * (w + 4) + xi + dx)[..., None])[..., 0]

        c = at(0, 0)
        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = at(0, 2) - 2 * c + at(0, -2)
        dyy = at(2, 0) - 2 * c + at(-2, 0)
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        # second differences at step 2 estimate 4 * d2; rescale
        dxx, dyy = dxx / 4, dyy / 4
        det = dxx * dyy - dxy ** 2
        ok = (det > 1e-12) & (dxx < 0)
        ox = torch.where(ok, -(dyy * dx - dxy * dy) / det.where(ok, torch.ones_like(det)), torch.zeros_like(det))
        oy = torch.where(ok, -(dxx * dy - dxy * dx) / det.where(ok, torch.ones_like(det)), torch.zeros_like(det))
        px, py = px + ox.clamp(-1, 1), py + oy.clamp(-1, 1)
    return torch.stack([(px + 0.5) * image_size / w, (py + 0.5) * image_size / h], -1)


class HeatmapCodec:
    """encode: keypoints [N, K, 2] px -> heatmaps [N, K, H, H]; decode: heatmaps -> keypoints px."""

    def __init__(self, heatmap_size: int = 64, sigma: float = 2.0, image_size: int = IMAGE_SIZE, method: str = "dark"):
        self.heatmap_size, self.sigma, self.image_size, self.method = heatmap_size, sigma, image_size, method

    def encode(self, keypoints):
        return encode_heatmaps(keypoints, self.image_size, self.heatmap_size, self.sigma)

    def decode(self, heatmaps, method: str | None = None):
        return decode_heatmaps(heatmaps, self.image_size, method or self.method)


class RegressionCodec:
    """encode: keypoints [N, K, 2] px -> normalized (x, y) in [0, 1] (x / S); decode: the inverse."""

    def __init__(self, image_size: int = IMAGE_SIZE):
        self.image_size = image_size

    def encode(self, keypoints):
        check_tensor(keypoints, "keypoints", ndim=3, last=2, floating=True)
        return keypoints.float() / self.image_size

    def decode(self, normalized, method: str | None = None):
        check_tensor(normalized, "normalized", ndim=3, last=2, floating=True)
        return normalized.float() * self.image_size


# ----------------------------------------------------------------------------- models
class Encoder(nn.Module):
    """128x128 grayscale -> features at 128, 64, 32, 16 and 8 pixels (channels c/2, c, 2c, 4c, 8c).

    The 8x8 bottleneck adds two dilated 3x3 convolutions and a global-context branch (global
    average pooling -> 1x1 conv, broadcast back), so every bottleneck cell sees the whole figure:
    the theoretical receptive field exceeds the 128-pixel image (see ``hwlib.receptive``)."""

    def __init__(self, c: int = 32):
        super().__init__()
        self.channels = (c // 2, c, 2 * c, 4 * c, 8 * c)
        self.stem = _conv_bn(1, c // 2)                                   # 128
        self.e1 = nn.Sequential(_conv_bn(c // 2, c, 2), _conv_bn(c, c))       # 64
        self.e2 = nn.Sequential(_conv_bn(c, 2 * c, 2), _conv_bn(2 * c, 2 * c))  # 32
        self.e3 = nn.Sequential(_conv_bn(2 * c, 4 * c, 2), _conv_bn(4 * c, 4 * c))  # 16
        self.e4 = nn.Sequential(_conv_bn(4 * c, 8 * c, 2), _conv_bn(8 * c, 8 * c, dilation=2), _conv_bn(8 * c, 8 * c, dilation=2))  # 8
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8 * c, 8 * c, 1), nn.ReLU(inplace=True))

    def forward(self, x):
        f0 = self.stem(x)
        f1 = self.e1(f0)
        f2 = self.e2(f1)
        f3 = self.e3(f2)
        f4 = self.e4(f3)
        f4 = f4 + self.context(f4)
        return [f0, f1, f2, f3, f4]


class _Decoder(nn.Module):
    """U-Net decoder from the 8x8 bottleneck up to ``out_size`` (32, 64 or 128)."""

    def __init__(self, channels, out_size: int, skip: bool, num_out: int):
        super().__init__()
        if out_size not in (32, 64, 128):
            raise ValueError(f"heatmap_size must be 32, 64 or 128, got {out_size}")
        self.skip = skip
        n_up = {32: 2, 64: 3, 128: 4}[out_size]
        self.ups = nn.ModuleList()
        cin = channels[4]
        for i in range(n_up):
            level = 3 - i                                   # skip source: 16, 32, 64, 128 px
            cout = channels[level]
            self.ups.append(_conv_bn(cin + (cout if skip else 0), cout))
            cin = cout
        self.out = nn.Conv2d(cin, num_out, 1)

    def forward(self, feats):
        x = feats[4]
        for i, up in enumerate(self.ups):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            if self.skip:
                x = torch.cat([x, feats[3 - i]], 1)
            x = up(x)
        return self.out(x)


def _check_input(x):
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"input must be [B, 1, H, W] grayscale images, got shape {tuple(x.shape)}")


class HeatmapNet(nn.Module):
    """Shared encoder + U-Net decoder: ``[B, 1, 128, 128]`` -> heatmaps ``[B, K, H, H]``, H = ``heatmap_size``."""

    def __init__(self, num_keypoints: int = 5, heatmap_size: int = 64, skip: bool = True, base_channels: int = 32):
        super().__init__()
        self.num_keypoints, self.heatmap_size, self.skip = num_keypoints, heatmap_size, skip
        self.encoder = Encoder(base_channels)
        self.decoder = _Decoder(self.encoder.channels, heatmap_size, skip, num_keypoints)
        init_weights(self)

    def forward(self, x):
        _check_input(x)
        return self.decoder(self.encoder(x))


class RegressionNet(nn.Module):
    """Shared encoder + global average pooling + MLP: ``[B, 1, 128, 128]`` -> ``[B, K, 2]`` (x, y) in [0, 1]."""

    def __init__(self, num_keypoints: int = 5, base_channels: int = 32):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.encoder = Encoder(base_channels)
        c = self.encoder.channels[4]
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, c), nn.ReLU(inplace=True),
                                  nn.Linear(c, 2 * num_keypoints))
        init_weights(self)

    def forward(self, x):
        _check_input(x)
        return torch.sigmoid(self.head(self.encoder(x)[4]).float()).view(-1, self.num_keypoints, 2)


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Spatial softmax expectation: logits ``[B, K, H, W]`` -> ``[B, K, 2]`` normalized (x, y) in [0, 1]
    (cell ``j`` counts at ``(j + 0.5) / W``, the codec's convention)."""
    b, k, h, w = logits.shape
    p = logits.float().reshape(b, k, -1).softmax(-1).view(b, k, h, w)
    xs = (torch.arange(w, device=logits.device, dtype=torch.float32) + 0.5) / w
    ys = (torch.arange(h, device=logits.device, dtype=torch.float32) + 0.5) / h
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], -1)


class IntegralNet(HeatmapNet):
    """HeatmapNet architecture read out by soft-argmax: ``[B, 1, 128, 128]`` -> ``[B, K, 2]`` in [0, 1]."""

    def forward(self, x):
        return soft_argmax(super().forward(x))


def build_keypoint_model(method: str, cfg) -> nn.Module:
    """``method`` in ``("heatmap", "regression", "integral")`` with a :class:`hwlib.config.KeypointConfig`."""
    if method == "heatmap":
        return HeatmapNet(5, cfg.heatmap_size, cfg.skip, cfg.base_channels)
    if method == "integral":
        return IntegralNet(5, cfg.heatmap_size, cfg.skip, cfg.base_channels)
    if method == "regression":
        return RegressionNet(5, cfg.base_channels)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def codec_for(method: str, cfg):
    return HeatmapCodec(cfg.heatmap_size, cfg.sigma) if method == "heatmap" else RegressionCodec()


def heatmaps_as_targets(out: torch.Tensor, cfg) -> torch.Tensor:
    """A heatmap model's output ``[N, K, H, W]`` in the units of :func:`encode_heatmaps` (peak 1), so the
    seed's heatmap MSE can be computed for either loss: MSE-trained outputs are already in those units;
    cross-entropy-trained logits become ``softmax * (2 pi sigma^2)`` (a perfect prediction then equals
    the target Gaussian up to its truncation at the border)."""
    if getattr(cfg, "heatmap_loss", "mse") == "ce":
        n, k, h, w = out.shape
        return out.float().reshape(n, k, -1).softmax(-1).view(n, k, h, w) * (2 * math.pi * cfg.sigma ** 2)
    return out.float()


class KeypointLoss:
    """Heatmap: MSE against Gaussian targets; regression and integral: L1 on normalized coordinates."""

    def __init__(self, method: str, cfg):
        self.method, self.codec = method, codec_for(method, cfg)
        self.heatmap_loss = getattr(cfg, "heatmap_loss", "mse")

    def __call__(self, out, keypoints):
        target = self.codec.encode(keypoints).to(out.device)
        if self.method == "heatmap" and self.heatmap_loss == "ce":
            b, k, h, w = out.shape
            t = target.reshape(b, k, -1)
            t = t / t.sum(-1, keepdim=True).clamp(min=1e-12)
            loss = -(t * out.float().reshape(b, k, -1).log_softmax(-1)).sum(-1).mean()
        elif self.method == "heatmap":
            loss = F.mse_loss(out.float(), target)
        else:
            loss = F.l1_loss(out.float(), target)
        return loss, {}
