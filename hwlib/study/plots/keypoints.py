"""Figures of Part 2: the stick figures, PCK curves, prediction overlays and failure rates.
"""

from __future__ import annotations

import math
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter
from hwlib.config import KEYPOINT_NAMES
from hwlib.study.plots.style import FAILURE_COLOURS, FULL_WIDTH, GT_COLOUR, HALF_WIDTH, KEYPOINT_COLOURS, METHOD_COLOURS, MIN_FONT, PALETTE, PRED_COLOUR, _OI, _figure, _finish, _legend_above, _styled, _value_label


@_styled
def keypoint_samples(images, keypoints, path=None, n=12, meta=None):
    """Grid of stick figures with their five keypoints. Printed at FULL_WIDTH."""
    n = min(n, len(images))
    cols = min(6, n)
    rows = max(1, math.ceil(n / cols))
    side = FULL_WIDTH / cols
    fig, axes = _figure(FULL_WIDTH, (side + (0.15 if meta is not None else 0)) * rows + 0.3, rows, cols)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, extent=(0, 128, 128, 0))
        ax.scatter(keypoints[i, :, 0], keypoints[i, :, 1], c=KEYPOINT_COLOURS, s=20, edgecolors="k", linewidths=0.5)
        if meta is not None:
            ax.set_title({0: "normal", 1: "hands together", 2: "hands on torso"}[int(meta["hard"][i])], fontsize=MIN_FONT)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, mec="k", label=k.replace("_", " "))
               for c, k in zip(KEYPOINT_COLOURS, KEYPOINT_NAMES)]
    _legend_above(fig, handles)
    return _finish(fig, path)


@_styled
def keypoint_density(keypoints, path=None):
    """Where each keypoint type lies in the 128x128 image (2-D histograms, one colour scale). Printed at FULL_WIDTH."""
    fig, axes = _figure(FULL_WIDTH, 1.75, 1, 5, sharey=True)
    counts = [np.histogram2d(keypoints[:, k, 1].numpy(), keypoints[:, k, 0].numpy(), bins=32,
                             range=[[0, 128], [0, 128]])[0] for k in range(5)]
    vmax = max(1.0, max(c.max() for c in counts))
    for k, ax in enumerate(axes[0]):
        im = ax.imshow(counts[k], cmap="magma", vmin=0, vmax=vmax, extent=(0, 128, 128, 0), interpolation="nearest")
        ax.set_title(KEYPOINT_NAMES[k].replace("_", " "))
        ax.set_xticks([0, 64, 128])
        ax.set_yticks([0, 64, 128])
        ax.set_xlabel("x (px)")
    axes[0, 0].set_ylabel("y (px)")
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, pad=0.01, label="keypoints per bin")
    return _finish(fig, path)


@_styled
def pck_curves(errors_by_method: dict, path=None, taus=(0.05, 0.10, 0.15, 0.20)):
    """PCK against tau in [0, 0.2] for every method on one axis; errors_by_method: name -> normalized errors
    (array [S, N, K] over seeds, or [N, K]); shaded band: min-max over seeds. Printed at HALF_WIDTH."""
    grid = np.linspace(0, 0.2, 201)
    fig, axes = _figure(HALF_WIDTH, 2.7)
    ax = axes[0, 0]
    spare = [c for c in PALETTE if c not in METHOD_COLOURS.values()]      # unknown methods: colours not in use
    for i, (name, err) in enumerate(errors_by_method.items()):
        e = np.asarray(err)
        if e.ndim == 2:
            e = e[None]
        curves = np.stack([(s.reshape(-1)[:, None] <= grid[None] * (1 + 1e-6)).mean(0) for s in e])
        c = METHOD_COLOURS.get(name) or spare[i % len(spare)]
        ax.plot(grid, curves.mean(0), label=name.replace("_", " "), color=c)
        if len(curves) > 1:
            ax.fill_between(grid, curves.min(0), curves.max(0), alpha=0.2, color=c, lw=0)
        mk = [np.argmin(abs(grid - t)) for t in taus]
        ax.plot(grid[mk], curves.mean(0)[mk], "o", color=c, ms=4)
    for t in taus:
        ax.axvline(t, color="k", lw=0.5, ls=":")
    ax.set_xlabel(r"threshold $\tau$ (fraction of keypoint-box diagonal)")
    ax.set_ylabel("PCK")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    _legend_above(fig, ncol=2)
    return _finish(fig, path)


@_styled
def keypoint_overlays(images, gt, preds: dict, path=None, n=10, idx=None):
    """For each method a row of ``n`` samples: GT circles, prediction crosses, dashed error lines.
    Printed at FULL_WIDTH."""
    idx = np.arange(min(n, len(images))) if idx is None else np.asarray(idx)[:n]
    cols = max(1, len(idx))
    side = (FULL_WIDTH - 0.25) / cols
    fig, axes = _figure(FULL_WIDTH, side * len(preds) + 0.35, len(preds), cols)
    # h_pad: room between the legend and the top row (saving with a tight bounding box moves figure legends
    # about 0.03 in towards the axes)
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.05, wspace=0.01, hspace=0.0)
    for r, (name, p) in enumerate(preds.items()):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(images[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, extent=(0, 128, 128, 0))
            g, q = gt[i].numpy(), p[i].numpy()
            for k in range(len(g)):
                ax.plot([g[k, 0], q[k, 0]], [g[k, 1], q[k, 1]], "--", color=_OI["yellow"], lw=0.8)
            ax.scatter(g[:, 0], g[:, 1], s=22, facecolors="none", edgecolors=GT_COLOUR, linewidths=1.1)
            ax.scatter(q[:, 0], q[:, 1], s=20, c=PRED_COLOUR, marker="x", linewidths=1.1)
            ax.set_xlim(0, 128)
            ax.set_ylim(128, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name.replace("_", " ").replace(" (", "\n("), fontsize=MIN_FONT)
    handles = [plt.Line2D([], [], ls="", marker="o", mfc="none", mec=GT_COLOUR, mew=1.1, label="ground truth"),
               plt.Line2D([], [], ls="", marker="x", color=PRED_COLOUR, mew=1.1, label="prediction"),
               plt.Line2D([], [], ls="--", color=_OI["yellow"], lw=0.8, label="error")]
    _legend_above(fig, handles, facecolor="0.55", frameon=True)
    return _finish(fig, path)


@_styled
def failure_rates(rates: dict, path=None):
    """rates: {attribute label: {"bins": [...labels], "A": [...], "B": [...], "C": [...], "n": [...]}}.
    Every bar is annotated with its value (in %), so the small type-B shares stay readable; the panels share one
    y axis (in %) and are as wide as their number of bins, so every bar is equally wide; value labels that would touch
    are raised above each other and long bin names wrapped when saved (``_fit_text``). Printed at FULL_WIDTH."""
    widths = [max(1, len(r["bins"])) for r in rates.values()]
    fig, axes = _figure(FULL_WIDTH, 2.6, 1, len(rates), sharey=True, gridspec_kw={"width_ratios": widths})
    top, w = 0.0, 0.28
    for ax, (attr, r) in zip(axes[0], rates.items()):
        x = np.arange(len(r["bins"]))
        for j, t in enumerate(("A", "B", "C")):
            v = np.asarray(r[t], dtype=float)
            bars = ax.bar(x + (j - 1) * w, v, w, label=f"type {t}", color=FAILURE_COLOURS[t])
            top = max(top, float(np.nanmax(v)) if np.isfinite(v).any() else 0.0)
            for bar, val in zip(bars, v):
                if np.isfinite(val):
                    _value_label(ax, bar.get_x() + bar.get_width() / 2, val, f"{100 * val:.1f}%")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{b}\nn={n}" for b, n in zip(r["bins"], r["n"])])
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_xlabel(attr)
    axes[0, 0].set_ylim(0, max(top, 1e-3) * 1.45)      # _fit_text raises it further where a label needs it
    axes[0, 0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.3g}%"))
    axes[0, 0].set_ylabel("share of hand keypoints")
    _legend_above(fig)
    return _finish(fig, path)
