"""Keypoint models and their codecs: heatmaps (argmax / DARK), direct regression, integral regression.

Coordinate convention (one for every codec): keypoints are ``(x, y)`` in continuous image pixels,
pixel ``i`` covering ``[i, i + 1)``. A heatmap of size ``H`` over an image of size ``S`` has cells of
``S / H`` image pixels, and heatmap cell ``j`` is centred at image coordinate ``(j + 0.5) * S / H``.
So image ``x`` sits at heatmap coordinate ``u = x * H / S - 0.5`` (cell-centre units).

Codecs (the MMPose pattern): each is an ``encode``/``decode`` pair, so a model is trained on
``codec.encode(keypoints)`` and evaluated on ``codec.decode(outputs)`` in image pixels by the same
:func:`hwlib.vision.metrics.pck`.

Models share one encoder (:class:`Encoder`, 128 -> 8 pixels, with a global-context bottleneck
whose receptive field covers the whole image):

- :class:`HeatmapNet`: U-Net decoder with (optional) skip connections -> ``[B, K, H, W]`` heatmaps.
- :class:`RegressionNet`: global average pooling + MLP -> ``[B, K, 2]`` normalized (x, y) in [0, 1].
- :class:`IntegralNet`: the HeatmapNet architecture, spatial softmax and expectation
  (soft-argmax, as in integral pose regression / DSNT) -> ``[B, K, 2]`` in [0, 1], trained on coordinates.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hwlib.config import HEATMAP_LOSSES, REGRESSION_LOSSES, REGRESSION_OUTPUTS
from hwlib.vision.boxes import check_tensor
from hwlib.vision.layers import conv_bn_relu as _conv_bn, init_weights

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
    """DARK's distribution modulation: separable Gaussian smoothing with zero padding, rescaled so that
    every map keeps its original maximum.

    Args:
        h: ``Tensor[N, K, H, W]`` non-negative heatmaps.
        kernel: odd number of taps; the Gaussian's sigma follows the kernel size as in OpenCV,
            ``0.3 * ((kernel - 1) / 2 - 1) + 0.8`` (11 taps: sigma 2.0; 3 taps: 0.8; 1 tap: identity).

    Returns:
        ``Tensor[N, K, H, W]``, the smoothed maps; cells outside the map count as 0, so a cell's value
        is only unbiased where the kernel's footprint lies inside the map. An all-zero map stays zero.
    """
    r = kernel // 2
    if r == 0:
        return h
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = torch.arange(-r, r + 1, dtype=h.dtype, device=h.device)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    n, c, hh, ww = h.shape
    flat = h.reshape(n * c, 1, hh, ww)
    flat = F.conv2d(flat, k.view(1, 1, 1, -1), padding=(0, r))
    flat = F.conv2d(flat, k.view(1, 1, -1, 1), padding=(r, 0))
    out = flat.view(n, c, hh, ww)
    peak_in, peak_out = h.amax((-2, -1), keepdim=True), out.amax((-2, -1), keepdim=True)
    return out * (peak_in / peak_out.clamp(min=torch.finfo(out.dtype).tiny))


def _taylor_offset(logmap: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor):
    """One Newton step of a second-order Taylor expansion of ``logmap`` around integer cells.

    Args:
        logmap: ``Tensor[M, H, W]`` log-heatmaps.
        cx, cy: ``Tensor[M]`` int64 column and row of the expansion point; the 3x3 stencil around it
            must lie inside the map (indices are clamped, so elsewhere the result is meaningless).

    Returns:
        ``(ox, oy, ok)``: ``Tensor[M]`` float offsets in heatmap cells, ``-H^{-1} g`` with central
        differences (step 1), and ``Tensor[M]`` bool, True where the Hessian is negative definite
        (a maximum), the only cells where the step is meaningful.
    """
    m, h, w = logmap.shape
    flat = logmap.reshape(m, h * w)

    def at(dx, dy):
        i = (cy + dy).clamp(0, h - 1) * w + (cx + dx).clamp(0, w - 1)
        return flat.gather(1, i[:, None])[:, 0]

    c = at(0, 0)
    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    dxx, dyy = at(1, 0) - 2 * c + at(-1, 0), at(0, 1) - 2 * c + at(0, -1)
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy ** 2
    ok = (dxx < 0) & (det > 1e-12) & torch.isfinite(det)
    safe = torch.where(ok, det, torch.ones_like(det))
    ox = torch.where(ok, -(dyy * gx - dxy * gy) / safe, torch.zeros_like(det))
    oy = torch.where(ok, -(dxx * gy - dxy * gx) / safe, torch.zeros_like(det))
    return ox, oy, ok


def decode_heatmaps(heatmaps: torch.Tensor, image_size: int = 128, method: str = "argmax",
                    blur_kernel: int = 11) -> torch.Tensor:
    """Keypoints from non-negative heatmaps, in image pixels.

    This decodes maps that are (proportional to) probabilities or Gaussian heatmaps, never raw network
    logits: a cross-entropy model's output must go through a spatial softmax first, which
    :class:`HeatmapCodec` (built by :func:`codec_for`) does. DARK is invariant to the scale of each map.

    Args:
        heatmaps: ``Tensor[N, K, H, W]``, non-negative for ``method="dark"`` (ValueError otherwise).
        image_size: S; cell ``j`` maps to image coordinate ``(j + 0.5) * S / W`` (``S / H`` for rows).
        method: ``"argmax"`` (the peak cell's centre) or ``"dark"`` (distribution-aware sub-pixel
            refinement: normalize each map to peak 1, blur (:func:`_gaussian_blur`, zero padding), take
            the log, then one Newton step ``-H^{-1} g`` of a second-order Taylor expansion around the
            argmax cell with central finite differences, the offset clamped to one cell).
            Near the border the blur shrinks to the largest odd kernel whose footprint, together with
            the 3x3 stencil, stays inside the map (no blur one cell from the border), so zero padding
            never biases the step; on the outermost ring of cells the argmax cell centre is kept.
        blur_kernel: odd number of taps of the blur away from the border (11 as in DARK; 1: no blur).

    Returns:
        ``Tensor[N, K, 2]`` (x, y) in image pixels.
    """
    check_tensor(heatmaps, "heatmaps", ndim=4, floating=True)
    if method not in ("argmax", "dark"):
        raise ValueError(f"method must be 'argmax' or 'dark', got {method!r}")
    _check_size("image_size", image_size)
    _check_size("blur_kernel", blur_kernel)
    if blur_kernel % 2 == 0:
        raise ValueError(f"blur_kernel must be odd, got {blur_kernel}")
    hm = heatmaps.float()
    n, k, h, w = hm.shape
    if n * k == 0 or h * w == 0:
        return torch.zeros(n, k, 2, device=hm.device)
    if method == "dark" and (hm < 0).any():
        raise ValueError("heatmaps must be non-negative for method='dark' (probabilities or Gaussian heatmaps); "
                         "decode network outputs with codec_for(...).decode, which applies the spatial softmax "
                         "to cross-entropy logits")
    idx = hm.reshape(n, k, -1).argmax(-1)
    cx, cy = idx % w, idx // w
    px, py = cx.float(), cy.float()
    if method == "dark":
        tiny = torch.finfo(hm.dtype).tiny
        p = hm / hm.amax((-2, -1), keepdim=True).clamp(min=tiny)         # peak 1: scale invariance
        margin = torch.minimum(torch.minimum(cx, w - 1 - cx), torch.minimum(cy, h - 1 - cy))
        radius = (margin - 1).clamp(0, blur_kernel // 2)                    # blur footprint + stencil inside
        ox, oy = torch.zeros_like(px), torch.zeros_like(py)
        for r in radius[margin >= 1].unique().tolist():                     # at most blur_kernel // 2 + 1 groups
            sel = (radius == r) & (margin >= 1)
            logmap = torch.log(_gaussian_blur(p[sel][:, None], 2 * r + 1)[:, 0].clamp(min=tiny))
            dx, dy, ok = _taylor_offset(logmap, cx[sel], cy[sel])
            ox[sel] = torch.where(ok, dx, torch.zeros_like(dx)).clamp(-1, 1)
            oy[sel] = torch.where(ok, dy, torch.zeros_like(dy)).clamp(-1, 1)
        px, py = px + ox, py + oy
    return torch.stack([(px + 0.5) * image_size / w, (py + 0.5) * image_size / h], -1)


# REGRESSION_LOSSES (hwlib.config): losses of GAP+FC regression on coordinates; integral regression always trains
# with L1. Wing loss (Feng et al. 2018, their 2-D landmark setting): log-shaped below WING_W pixels, with curvature
# WING_EPS; smooth L1 is quadratic below SMOOTH_L1_BETA pixels
WING_W, WING_EPS, SMOOTH_L1_BETA = 10.0, 2.0, 1.0


def coordinate_loss(err: torch.Tensor, kind: str = "l1", scale: float = 1.0) -> torch.Tensor:
    """Elementwise loss of coordinate errors ``err`` (any shape, in the units of ``1 / scale`` pixels: keypoints
    normalized by the image side ``S`` give ``scale = S``), in those same units, so that every kind has slope 1
    (L1's) for large errors:

    - ``"l1"``: ``|e|``;
    - ``"smooth_l1"``: ``e^2 / (2 b)`` below ``b = SMOOTH_L1_BETA`` px, ``|e| - b / 2`` above;
    - ``"wing"``: ``w ln(1 + |e| / eps)`` below ``w = WING_W`` px, ``|e| - C`` above, ``C = w - w ln(1 + w / eps)``
      (continuous at ``w``); its slope at 0 is ``w / eps = 5`` times L1's, so small errors keep pulling.
    """
    a = err.abs()
    if kind == "l1":
        return a
    if kind == "smooth_l1":
        b = SMOOTH_L1_BETA / scale
        return torch.where(a < b, 0.5 * a * a / b, a - 0.5 * b)
    if kind == "wing":
        w, eps = WING_W / scale, WING_EPS / scale
        c = w - w * math.log1p(w / eps)
        return torch.where(a < w, w * torch.log1p(a / eps), a - c)
    raise ValueError(f"regression loss must be one of {REGRESSION_LOSSES}, got {kind!r}")


class HeatmapCodec:
    """Heatmap codec for a model trained with ``loss``.

    - ``encode``: keypoints ``Tensor[N, K, 2]`` (x, y) image px -> Gaussian targets ``Tensor[N, K, H, H]``
      (peak 1, :func:`encode_heatmaps`).
    - ``decode``: the network's output ``Tensor[N, K, H, H]`` -> keypoints ``Tensor[N, K, 2]`` (x, y) image
      px. The output is first turned into non-negative maps (:meth:`probabilities`): for ``loss="ce"``
      (spatial-softmax cross-entropy) the output is a logit map, defined only up to an added constant
      per keypoint, so it goes through a spatial softmax; for ``loss="mse"`` it is already a Gaussian-like
      heatmap and its (slightly) negative values are clamped to 0.
    """

    def __init__(self, heatmap_size: int = 64, sigma: float = 2.0, image_size: int = IMAGE_SIZE,
                 method: str = "dark", loss: str = "ce"):
        if method not in ("argmax", "dark"):
            raise ValueError(f"method must be 'argmax' or 'dark', got {method!r}")
        if loss not in HEATMAP_LOSSES:
            raise ValueError(f"loss must be one of {HEATMAP_LOSSES}, got {loss!r}")
        self.heatmap_size, self.sigma, self.image_size, self.method = heatmap_size, sigma, image_size, method
        self.loss = loss

    def encode(self, keypoints):
        return encode_heatmaps(keypoints, self.image_size, self.heatmap_size, self.sigma)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Network outputs ``Tensor[N, K, H, W]`` -> non-negative maps ``Tensor[N, K, H, W]`` for
        :func:`decode_heatmaps`: per-keypoint softmax over the ``H * W`` cells (``"ce"``, each map sums
        to 1) or the outputs clamped at 0 (``"mse"``; DARK floors them at a tiny fraction of the peak)."""
        check_tensor(outputs, "heatmaps", ndim=4, floating=True)
        out = outputs.float()
        if self.loss == "ce":
            n, k, h, w = out.shape
            return out.reshape(n, k, h * w).softmax(-1).view(n, k, h, w)
        return out.clamp(min=0)

    def decode(self, heatmaps, method: str | None = None):
        return decode_heatmaps(self.probabilities(heatmaps), self.image_size, method or self.method)


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
    the theoretical receptive field exceeds the 128-pixel image (see ``hwlib.vision.receptive``)."""

    def __init__(self, c: int = 32, in_channels: int = 1):
        super().__init__()
        self.channels = (c // 2, c, 2 * c, 4 * c, 8 * c)
        self.stem = _conv_bn(in_channels, c // 2)                         # 128
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


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``Tensor[B, C, H, W]`` with two channels appended: each pixel's column and row centre, ``(j + 0.5) / W``
    and ``(i + 0.5) / H`` mapped to [-1, 1] (CoordConv, Liu et al. 2018) -> ``Tensor[B, C + 2, H, W]``."""
    b, _, h, w = x.shape
    xs = ((torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w * 2 - 1).view(1, 1, 1, w).expand(b, 1, h, w)
    ys = ((torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h * 2 - 1).view(1, 1, h, 1).expand(b, 1, h, w)
    return torch.cat([x, xs, ys], 1)


class RegressionNet(nn.Module):
    """Shared encoder + global average pooling + MLP: ``[B, 1, 128, 128]`` -> ``[B, K, 2]`` (x, y) in [0, 1].

    With ``coords`` the image enters the encoder with two coordinate channels (:func:`coordinate_channels`), so
    that convolutions, which are translation-equivariant, can carry where a feature lies into what global average
    pooling keeps; still direct regression (no heatmap, no spatial read-out).

    The original head ends in a sigmoid (``output="sigmoid"``), runs under the training's autocast and feeds the
    pooled features to its first linear layer as they are. The standard regression head (DeepPose, MMPose's
    ``RegressionHead``) differs in three ways, each an option here: ``output="linear"`` (no squashing: the
    sigmoid's slope, at most 0.25, shrinks the gradient of keypoints near the border; the last layer's bias starts
    at 0.5, the image centre, so the untrained output is where the sigmoid's was; its output is not clamped, so it
    can leave [0, 1]), ``fp32_head`` (the head computed in float32 outside autocast: bf16 rounds the pooled
    features to about 0.4%) and ``norm`` (a LayerNorm on the pooled features)."""

    def __init__(self, num_keypoints: int = 5, base_channels: int = 32, coords: bool = False,
                 output: str = "sigmoid", fp32_head: bool = False, norm: bool = False):
        super().__init__()
        if output not in REGRESSION_OUTPUTS:
            raise ValueError(f"output must be one of {REGRESSION_OUTPUTS}, got {output!r}")
        self.num_keypoints, self.coords, self.output, self.fp32_head = num_keypoints, coords, output, fp32_head
        self.encoder = Encoder(base_channels, in_channels=3 if coords else 1)
        c = self.encoder.channels[4]
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), *([nn.LayerNorm(c)] if norm else []),
                                  nn.Linear(c, c), nn.ReLU(inplace=True), nn.Linear(c, 2 * num_keypoints))
        init_weights(self)
        if output == "linear":
            nn.init.constant_(self.head[-1].bias, 0.5)

    def forward(self, x):
        _check_input(x)
        if self.coords:
            x = coordinate_channels(x)
        features = self.encoder(x)[4]
        if self.fp32_head:
            with torch.autocast(features.device.type, enabled=False):
                out = self.head(features.float())
        else:
            out = self.head(features).float()
        out = torch.sigmoid(out) if self.output == "sigmoid" else out
        return out.view(-1, self.num_keypoints, 2)


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
        return RegressionNet(5, cfg.base_channels, getattr(cfg, "coord_channels", False),
                             getattr(cfg, "regression_output", "sigmoid"), getattr(cfg, "regression_fp32_head", False),
                             getattr(cfg, "regression_norm", False))
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def codec_for(method: str, cfg):
    """The codec of a ``method`` in ``("heatmap", "regression", "integral")`` model trained with ``cfg``
    (:class:`hwlib.config.KeypointConfig`): a :class:`HeatmapCodec` that knows ``cfg.heatmap_loss``, or a
    :class:`RegressionCodec` (integral models output normalized coordinates too)."""
    if method == "heatmap":
        return HeatmapCodec(cfg.heatmap_size, cfg.sigma, loss=getattr(cfg, "heatmap_loss", "mse"))
    if method in ("regression", "integral"):
        return RegressionCodec()
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


@dataclasses.dataclass(frozen=True)
class Decoding:
    """One way of turning a keypoint model's output into image-pixel keypoints.

    ``method``: the model it decodes (``"heatmap"``, ``"regression"``, ``"integral"``); ``codec_method``:
    the argument of the codec's ``decode`` (``"argmax"``, ``"dark"``; ``None`` for coordinate outputs)."""

    method: str
    codec_method: str | None = None


# Every decoding the report knows, by the one name used in results, tables and figures. The first
# decoding listed for a method is its headline decoding (the record's top-level metrics); adding a
# decoding is one entry here (and, for a new codec method, one branch in ``decode_heatmaps``).
DECODINGS = {
    "heatmap_dark": Decoding("heatmap", "dark"),
    "heatmap_argmax": Decoding("heatmap", "argmax"),
    "regression": Decoding("regression"),
    "integral": Decoding("integral"),
}


def decodings_of(method: str) -> list[str]:
    """Names of the decodings of a ``method`` model, its headline decoding first."""
    names = [n for n, d in DECODINGS.items() if d.method == method]
    if not names:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return names


def headline_decoding(method: str) -> str:
    """The decoding a ``method`` model is reported with (``"heatmap"`` -> ``"heatmap_dark"``)."""
    return decodings_of(method)[0]


def decode_outputs(method: str, outputs: torch.Tensor, cfg, names=None) -> dict:
    """A ``method`` model's raw outputs -> ``{decoding name: keypoints Tensor[N, K, 2] (x, y) image px}`` for
    every decoding of that method in :data:`DECODINGS` (or only those in ``names``).

    Args:
        outputs: ``Tensor[N, K, H, W]`` (heatmap logits or maps) or ``Tensor[N, K, 2]`` normalized (x, y).
        cfg: the model's :class:`hwlib.config.KeypointConfig` (heatmap size, sigma, loss).
        names: decodings to run (each must be one of ``method``'s); ``None``: all of them.
    """
    codec = codec_for(method, cfg)
    own = decodings_of(method)
    if names is not None:
        bad = [n for n in names if n not in own]
        if bad:
            raise ValueError(f"{bad} are not decodings of {method!r}; its decodings: {own}")
    return {name: codec.decode(outputs, DECODINGS[name].codec_method) for name in (own if names is None else names)}


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
    """Training loss ``(out, keypoints) -> (scalar loss, {})`` for ``method`` with ``cfg``.

    - heatmap, ``cfg.heatmap_loss == "ce"`` (the default): spatial-softmax cross-entropy. ``out``
      ``Tensor[B, K, H, W]`` are logits; the Gaussian target (:func:`encode_heatmaps`) is normalized to
      sum 1 per keypoint and the loss is ``-sum(target * log_softmax(out over H * W))``, averaged over
      ``B * K``. The logits are defined up to an added constant, so decode them through
      :func:`codec_for` (which applies the softmax), not with :func:`decode_heatmaps` directly.
    - heatmap, ``"mse"`` (the seed's loss): mean squared error between ``out`` and the peak-1 Gaussian.
    - regression and integral: L1 between ``out`` ``Tensor[B, K, 2]`` and the keypoints normalized to
      [0, 1] (``keypoints / S``); GAP+FC regression with ``cfg.regression_loss`` ``"smooth_l1"`` or ``"wing"``
      uses that :func:`coordinate_loss` instead (summed over x and y like L1, averaged the same way).

    With ``cfg.ohkm = m > 0`` (online hard keypoint mining, as in CPN) only the ``m`` keypoints of each image
    with the largest loss count: the loss is the mean over ``B * m`` instead of ``B * K``.

    ``keypoints``: ``Tensor[B, K, 2]`` (x, y) in image pixels.
    """

    def __init__(self, method: str, cfg):
        self.method, self.codec = method, codec_for(method, cfg)
        self.heatmap_loss = getattr(cfg, "heatmap_loss", "mse")
        self.coord_loss = getattr(cfg, "regression_loss", "l1") if method == "regression" else "l1"
        if self.coord_loss not in REGRESSION_LOSSES:
            raise ValueError(f"regression_loss must be one of {REGRESSION_LOSSES}, got {self.coord_loss!r}")
        self.ohkm = int(getattr(cfg, "ohkm", 0))

    def per_keypoint(self, out, keypoints) -> torch.Tensor:
        """The loss of each image's each keypoint, ``Tensor[B, K]`` (the training loss is its mean)."""
        target = self.codec.encode(keypoints).to(out.device)
        b, k = out.shape[:2]
        if self.method == "heatmap" and self.heatmap_loss == "ce":
            t = target.reshape(b, k, -1)
            t = t / t.sum(-1, keepdim=True).clamp(min=1e-12)
            return -(t * out.float().reshape(b, k, -1).log_softmax(-1)).sum(-1)
        if self.method == "heatmap":
            return (out.float() - target).pow(2).reshape(b, k, -1).mean(-1)
        return coordinate_loss(out.float() - target, self.coord_loss, self.codec.image_size).mean(-1)

    def __call__(self, out, keypoints):
        per = self.per_keypoint(out, keypoints)
        if 0 < self.ohkm < per.shape[1]:
            per = per.topk(self.ohkm, dim=1).values
        return per.mean(), {}
