"""Receptive fields: theoretical (from kernel, stride, dilation) and effective (input gradient).

Theoretical: walking the convolutions from the input, ``rf += (k - 1) * d * jump`` and
``jump *= s``. Effective (Luo et al., 2016): the absolute gradient of one output cell at the image
centre with respect to the input pixels, averaged over real images; its size is reported as the
side of the smallest square around the gradient's centroid holding ``mass`` (90%) of it.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def theoretical_rf(convs) -> tuple[int, int]:
    """``(receptive field side, stride)`` in input pixels of a chain of ``nn.Conv2d`` in forward order."""
    rf, jump = 1, 1
    for c in convs:
        if not isinstance(c, nn.Conv2d):
            raise ValueError(f"theoretical_rf expects nn.Conv2d layers, got {type(c).__name__}")
        k, s, d = c.kernel_size[0], c.stride[0], c.dilation[0]
        rf += (k - 1) * d * jump
        jump *= s
    return rf, jump


def _convs(*modules):
    return [m for mod in modules for m in mod.modules() if isinstance(m, nn.Conv2d)]


def detector_rf(model) -> dict:
    """Theoretical receptive field of each head of a :class:`hwlib.vision.detector.MultiScaleDetector`."""
    trunk = [model.block1, model.block2, model.block3, model.block4]
    out = {}
    for level, name in enumerate(("S1", "S2", "S3")):
        rf, stride = theoretical_rf(_convs(*trunk[:2 + level], model.heads[level]))
        out[name] = {"rf": rf, "stride": stride}
    return out


def gradient_centre(g: torch.Tensor) -> tuple[float, float]:
    """``(cy, cx)``: the centroid of a non-negative gradient map ``[H, W]`` (pixel-centre coordinates).

    The receptive field of cell ``i`` of a stride-``s`` map is not centred at ``(i + 0.5) * s``: with
    3x3 stride-2 convolutions and padding 1 each cell looks at ``s * i`` of its input. So the field is
    centred where its gradient is, not where the cell's box would put it."""
    H, W = g.shape
    ys = torch.arange(H, dtype=g.dtype) + 0.5
    xs = torch.arange(W, dtype=g.dtype) + 0.5
    total = g.sum().clamp(min=1e-20)
    return float((g.sum(1) * ys).sum() / total), float((g.sum(0) * xs).sum() / total)


def effective_rf(forward_fn, images: torch.Tensor, mass: float = 0.9):
    """Effective receptive field of the centre cell of one output map.

    Args:
        forward_fn: ``images [B, C, H, W] -> Tensor[B, C', h, w]``, one output map.
        images: float input ``Tensor[B, C, H, W]`` (real images).
        mass: share of the gradient the reported square must hold.

    Returns:
        ``(erf_map Tensor[H, W] normalized to max 1, side in input pixels)``: the side of the smallest
        square centred on the gradient's centroid that holds ``mass`` of it.
    """
    x = images.detach().clone().float().requires_grad_(True)
    out = forward_fn(x).float()
    h, w = out.shape[-2:]
    out[:, :, h // 2, w // 2].sum().backward()
    g = x.grad.abs().sum((0, 1))
    g = g / g.max().clamp(min=1e-20)
    H, W = g.shape
    cy, cx = gradient_centre(g)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    cheb = torch.maximum((ys - cy).abs(), (xs - cx).abs()).flatten()
    order = torch.argsort(cheb)
    cum = torch.cumsum(g.flatten()[order], 0)
    k = int(torch.searchsorted(cum, mass * cum[-1]))
    side = float(2 * cheb[order][min(k, len(order) - 1)])
    return g, side


def detector_erf(model, images: torch.Tensor, mass: float = 0.9) -> dict:
    """Effective receptive field of each detector head on float images ``[B, 3, 224, 224]`` in [0, 1];
    returns ``{"S1": (map, side), ...}``. The model is put in eval mode (BN running statistics)."""
    model.eval()
    res = {}
    for level, name in enumerate(("S1", "S2", "S3")):
        res[name] = effective_rf(lambda x: model(x)[level], images, mass)
    return res
