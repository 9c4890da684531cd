"""Every figure of the report. Each function draws one figure, saves it atomically and returns it.

One style for every figure: each is drawn at the size it is printed at (``FULL_WIDTH`` = ``\\textwidth``,
``HALF_WIDTH`` = ``0.49\\textwidth``), with no text below 7 pt at that size (``STYLE``), Okabe-Ito
colours for every categorical colour, and legends outside the data.
"""

from __future__ import annotations

import functools
import math

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() in ("", "agg") else None
import matplotlib.pyplot as plt
import numpy as np
import torch
from cycler import cycler

from .config import CLASS_NAMES, KEYPOINT_NAMES
from .receptive import gradient_centre
from .report import save_figure

FULL_WIDTH = 6.3     # inches: printed at \textwidth
HALF_WIDTH = 3.1     # inches: printed at 0.49\textwidth
MIN_FONT = 7         # pt: no text smaller than this at printed size

# Okabe & Ito (2008), colour-blind safe
OKABE_ITO = {"orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000"}
_OI = OKABE_ITO
PALETTE = (_OI["blue"], _OI["orange"], _OI["green"], _OI["vermillion"], _OI["purple"], _OI["sky_blue"],
           _OI["yellow"], _OI["black"])
CLASS_COLOURS = (_OI["vermillion"], _OI["blue"], _OI["green"])             # circle, square, triangle
HEAD_COLOURS = (_OI["sky_blue"], _OI["orange"], _OI["purple"])              # S1, S2, S3
METHOD_COLOURS = {"heatmap_argmax": _OI["blue"], "heatmap_dark": _OI["green"], "regression": _OI["vermillion"],
                  "integral": _OI["purple"]}
KEYPOINT_COLOURS = (_OI["green"], _OI["vermillion"], _OI["blue"], _OI["orange"], _OI["sky_blue"])
FAILURE_COLOURS = {"A": _OI["orange"], "B": _OI["blue"], "C": _OI["vermillion"]}
GT_COLOUR, PRED_COLOUR = _OI["green"], _OI["vermillion"]

STYLE = {
    "figure.dpi": 100, "savefig.dpi": 300, "savefig.pad_inches": 0.02,
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9,
    "lines.linewidth": 1.2, "lines.markersize": 4.5, "lines.markeredgewidth": 0.8,
    "errorbar.capsize": 2.5, "axes.linewidth": 0.6, "grid.linewidth": 0.4, "grid.alpha": 0.4,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "patch.linewidth": 0.6,
    "axes.prop_cycle": cycler(color=PALETTE), "legend.frameon": False, "legend.handlelength": 1.6,
    "pdf.fonttype": 42, "figure.constrained_layout.use": True,
}
plt.rcParams.update(STYLE)


def _styled(fn):
    """Draw (and save) the figure under ``STYLE`` whatever the caller's rcParams are."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def _figure(width, height, nrows=1, ncols=1, **kwargs):
    """A constrained-layout figure at its printed size."""
    kwargs.setdefault("squeeze", False)
    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", **kwargs)


def _legend_above(fig, handles=None, labels=None, ncol=None, **kwargs):
    """Figure legend above every axes (below them when the figure has a suptitle; constrained layout makes room for
    it), never over the data."""
    if handles is None:
        handles, labels = [], []
        for ax in fig.axes:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels and not l.startswith("_"):
                    handles.append(h)
                    labels.append(l)
    elif labels is None:
        labels = [h.get_label() for h in handles]
    if not handles:
        return None
    where = "outside lower center" if fig._suptitle is not None else "outside upper center"   # suptitle is on top
    return fig.legend(handles, labels, loc=where, ncol=ncol or len(handles), **kwargs)


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- data
@_styled
def detection_samples(images, targets, path=None, n=8, preds=None, title=None):
    """Grid of images with GT boxes (solid, coloured by class) and optional predictions (dashed, by head).
    Printed at FULL_WIDTH."""
    n = min(n, len(images))
    cols = min(4, n)
    rows = max(1, math.ceil(n / cols))
    side = FULL_WIDTH / cols
    fig, axes = _figure(FULL_WIDTH, side * rows + 0.45 + (0.2 if title else 0), rows, cols)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        for b, l in zip(targets[i]["boxes"].tolist(), targets[i]["labels"].tolist()):
            ax.add_patch(plt.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False,
                                       lw=1.2, ec=CLASS_COLOURS[l] if preds is None else "white"))
        if preds is not None:
            p = preds[i]
            for b, s, l, h in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), p["heads"].tolist()):
                ax.add_patch(plt.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False, lw=1.2,
                                           ls="--", ec=HEAD_COLOURS[h]))
                ax.text(b[0], b[1] - 2, f"{CLASS_NAMES[l][:3]} {s:.2f}", color="black", fontsize=MIN_FONT,
                        bbox=dict(fc=HEAD_COLOURS[h], alpha=0.7, pad=0.4, lw=0))
    if preds is None:
        handles = [plt.Line2D([], [], color=c, lw=2, label=n) for c, n in zip(CLASS_COLOURS, CLASS_NAMES)]
    else:
        handles = ([plt.Line2D([], [], color="white", lw=2, label="ground truth")] +
                   [plt.Line2D([], [], color=c, lw=2, ls="--", label=f"head {h}")
                    for c, h in zip(HEAD_COLOURS, ("S1", "S2", "S3"))])
    if title:
        fig.suptitle(title)
    _legend_above(fig, handles, frameon=preds is not None, facecolor="0.55")
    return _finish(fig, path)


def box_sizes(targets):
    """sqrt(w*h) and labels of every GT box, numpy."""
    if not targets:
        return np.zeros(0), np.zeros(0, dtype=int)
    b = torch.cat([t["boxes"] for t in targets])
    l = torch.cat([t["labels"] for t in targets])
    return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt().numpy(), l.numpy()


@_styled
def size_histogram(targets, anchors, buckets, path=None, title="Object size per class against each head's anchors"):
    """GT size sqrt(w*h) per class, with each head's anchor range and the size-bucket boundaries.
    Printed at FULL_WIDTH."""
    s, l = box_sizes(targets)
    fig, axes = _figure(FULL_WIDTH, 2.6)
    ax = axes[0, 0]
    bins = np.geomspace(8, 256, 40)
    for c, name in enumerate(CLASS_NAMES):
        ax.hist(s[l == c], bins=bins, alpha=0.6, color=CLASS_COLOURS[c], label=f"{name} (n={int((l == c).sum())})")
    ymax = ax.get_ylim()[1]
    for h, anc in enumerate(anchors):
        ax.axvspan(min(anc), max(anc), ymin=0.92 - 0.07 * h, ymax=0.97 - 0.07 * h, color=HEAD_COLOURS[h], alpha=0.9,
                   label=f"S{h + 1} anchor range")
        for a in anc:
            ax.plot([a], [ymax * (0.945 - 0.07 * h)], "k|", ms=7, mew=1.0)
    for j, b in enumerate(buckets):
        ax.axvline(b, color="k", ls=":", lw=1, label="size-bucket boundary" if j == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel(r"object size $\sqrt{w h}$ (pixels, log scale)")
    ax.set_ylabel("objects")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _finish(fig, path)


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


# ----------------------------------------------------------------------------- training
@_styled
def training_curves(histories: dict, metric: str, path=None, metric_label=None, goal=None):
    """Loss against step, and a validation metric against step and against training seconds. Printed at FULL_WIDTH."""
    fig, axes = _figure(FULL_WIDTH, 2.3, 1, 3)
    axes = axes[0]
    for i, (name, h) in enumerate(histories.items()):
        h = h if isinstance(h, dict) else h.to_dict()
        c = PALETTE[i % len(PALETTE)]
        loss = np.asarray(h["loss"])
        w = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        axes[0].plot(np.asarray(h["steps"])[w - 1:], smooth, color=c, label=name)
        ev = [e for e in h["evals"] if metric in e]
        if ev:
            axes[1].plot([e["step"] for e in ev], [e[metric] for e in ev], "o-", color=c, label=name, ms=3)
            axes[2].plot([e["seconds"] for e in ev], [e[metric] for e in ev], "o-", color=c, label=name, ms=3)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss (smoothed)")
    axes[0].grid(alpha=0.3)
    for ax, xl in ((axes[1], "step"), (axes[2], "training seconds\n(evaluation excluded)")):
        ax.set_xlabel(xl)
        ax.set_ylabel(metric_label or metric)
        if goal is not None:
            ax.axhline(goal, color="k", ls=":", lw=1, label="goal" if ax is axes[1] else None)
        ax.grid(alpha=0.3)
    _legend_above(fig)
    return _finish(fig, path)


# ----------------------------------------------------------------------------- detection
@_styled
def pr_curves(matches_by_model: dict, path=None, conf_cut: float = 0.5):
    """Precision-recall per class; the marker shows where the seed's confidence cut ends the curve.
    Printed at FULL_WIDTH."""
    from .metrics import pr_curve

    fig, axes = _figure(FULL_WIDTH, 2.35, 1, 3, sharey=True)
    for c, ax in enumerate(axes[0]):
        for i, (name, m) in enumerate(matches_by_model.items()):
            col = PALETTE[i % len(PALETTE)]
            r, p, s = pr_curve(m, c)
            if len(r) == 0:
                continue
            ax.plot(r, p, color=col, label=name)
            k = np.searchsorted(-s, -conf_cut, side="right") - 1
            if k >= 0:
                ax.plot(r[k], p[k], "o", color=col, ms=6, mfc="white", mew=1.2)
        ax.set_title(CLASS_NAMES[c])
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("precision")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    handles.append(plt.Line2D([], [], ls="", marker="o", ms=6, mfc="white", mec="k", mew=1.2))
    labels.append(f"confidence = {conf_cut}")
    _legend_above(fig, handles, labels)
    return _finish(fig, path)


@_styled
def receptive_fields(erf: dict, trf: dict, anchors, size_ranges, path=None, title=""):
    """Effective receptive field maps of the three heads, and theoretical/effective RF against anchors and
    object sizes. Printed at FULL_WIDTH."""
    fig, axes = _figure(FULL_WIDTH, 2.5, 1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.5]})
    axes = axes[0]
    for i, name in enumerate(("S1", "S2", "S3")):
        g, side = erf[name]
        g = g.detach().float().numpy() if torch.is_tensor(g) else np.asarray(g, dtype=float)
        im = axes[i].imshow((g / max(float(g.max()), 1e-12)) ** 0.5, cmap="viridis", vmin=0, vmax=1,
                            extent=(0, g.shape[1], g.shape[0], 0))
        cy, cx = gradient_centre(torch.as_tensor(g))
        r = trf[name]["rf"] / 2
        axes[i].add_patch(plt.Rectangle((cx - r, cy - r), 2 * r, 2 * r, fill=False, ec="w", ls="--", lw=1.0))
        axes[i].add_patch(plt.Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, ec=_OI["vermillion"],
                                        lw=1.2))
        for a in anchors[i]:
            axes[i].add_patch(plt.Rectangle((cx - a / 2, cy - a / 2), a, a, fill=False, ec=_OI["orange"], lw=0.9, ls=":"))
        axes[i].set_title(f"{name}: TRF {trf[name]['rf']} px\nERF(90%) {side:.0f} px", fontsize=8)
        axes[i].set_xlabel("x (px)")
        axes[i].locator_params(nbins=3)
    axes[0].set_ylabel("y (px)")
    fig.colorbar(im, ax=axes[2], fraction=0.08, pad=0.03, label=r"$\sqrt{\mathrm{gradient}/\max}$")
    ax = axes[3]
    for i, name in enumerate(("S1", "S2", "S3")):
        ax.plot([i, i], [min(anchors[i]), max(anchors[i])], color=_OI["orange"], lw=7, alpha=0.7, solid_capstyle="butt",
                label="anchor range" if i == 0 else None)
        ax.plot(i - 0.15, trf[name]["rf"], "s", color="white", mec="k", ms=5, label="theoretical RF" if i == 0 else None)
        ax.plot(i + 0.15, erf[name][1], "^", color=_OI["vermillion"], ms=5, label="effective RF (90%)" if i == 0 else None)
    for c, (lo, hi) in enumerate(size_ranges):
        ax.axhspan(lo, hi, color=CLASS_COLOURS[c], alpha=0.15, label=f"{CLASS_NAMES[c]} sizes")
    ax.set_yscale("log")
    ax.set_xticks([0, 1, 2])
    ax.set_xticklabels(["S1", "S2", "S3"])
    ax.set_xlim(-0.5, 2.5)
    ax.set_xlabel("head")
    ax.set_ylabel("pixels")
    ax.set_title("seen vs to be boxed")
    handles, labels = ax.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="k", ls="--", lw=1.0), plt.Line2D([], [], color=_OI["vermillion"], lw=1.2),
                plt.Line2D([], [], color=_OI["orange"], ls=":", lw=0.9)]
    labels += ["TRF (map)", "ERF 90% (map)", "anchors (map)"]
    if title:
        fig.suptitle(title)
    _legend_above(fig, handles, labels, ncol=5)
    return _finish(fig, path)


@_styled
def assignment_counts(counts, path=None):
    """Positive samples per head and class from the assignment rule (bar chart); counts [3 heads, 3 classes].
    Printed at HALF_WIDTH."""
    counts = np.asarray(counts, dtype=float)
    fig, axes = _figure(HALF_WIDTH, 2.4)
    ax = axes[0, 0]
    x = np.arange(3)
    for c in range(3):
        ax.bar(x + (c - 1) * 0.27, counts[:, c], 0.27, color=CLASS_COLOURS[c], label=CLASS_NAMES[c])
    ax.set_xticks(x)
    ax.set_xticklabels(["S1\n(stride 4)", "S2\n(stride 8)", "S3\n(stride 16)"])
    ax.set_xlabel("head")
    ax.set_ylabel("positives per image")
    ax.set_title("positive samples per head\n(side-ratio matching, ratio < 4, 3 cells)", fontsize=8)
    _legend_above(fig)
    return _finish(fig, path)


@_styled
def anchor_coverage(sizes, labels, best_iou, anchors, path=None):
    """GT sizes against anchors, and the best-anchor IoU of every GT (an anchor centred on it). Printed at FULL_WIDTH."""
    sizes, labels, best_iou = np.asarray(sizes), np.asarray(labels), np.asarray(best_iou)
    fig, axes = _figure(FULL_WIDTH, 2.5, 1, 2)
    ax = axes[0, 0]
    for c in range(3):
        ax.scatter(sizes[labels == c], best_iou[labels == c], s=6, alpha=0.6, color=CLASS_COLOURS[c], lw=0,
                   label=CLASS_NAMES[c])
    for h, anc in enumerate(anchors):
        for j, a in enumerate(anc):
            ax.axvline(a, color=HEAD_COLOURS[h], lw=1, alpha=0.8, label=f"S{h + 1} anchors" if j == 0 else None)
    ax.axhline(0.5, color="k", ls=":", lw=1, label="IoU = 0.5")
    ax.set_xscale("log")
    ax.set_xlabel(r"GT size $\sqrt{wh}$ (px)")
    ax.set_ylabel("best-anchor IoU")
    ax = axes[0, 1]
    ax.hist(best_iou, bins=40, range=(0, 1), color="0.5")
    ax.axvline(0.5, color="k", ls=":", lw=1)
    ax.set_xlabel("best-anchor IoU")
    ax.set_ylabel("objects")
    ax.set_title(f"{(best_iou < 0.5).mean() * 100 if len(best_iou) else 0:.1f}% of objects have best-anchor IoU < 0.5",
                 fontsize=8)
    _legend_above(fig, markerscale=2.5)
    return _finish(fig, path)


@_styled
def objectness_maps(image, raw_outputs, num_anchors=3, path=None):
    """One image and the max-over-anchors objectness (sigmoid) of each head. Printed at FULL_WIDTH."""
    fig, axes = _figure(FULL_WIDTH, 1.9, 1, 4)
    axes = axes[0]
    axes[0].imshow(image.permute(1, 2, 0).numpy())
    axes[0].set_title("image")
    axes[0].axis("off")
    for h in range(3):
        p = raw_outputs[h]
        a = p.view(num_anchors, -1, *p.shape[-2:])[:, 4].sigmoid().amax(0)
        im = axes[h + 1].imshow(a.numpy(), cmap="magma", vmin=0, vmax=1)
        axes[h + 1].set_title(f"S{h + 1} objectness ({p.shape[-1]}x{p.shape[-2]})")
        axes[h + 1].set_xlabel("x (cell)")
        axes[h + 1].set_ylabel("y (cell)")
        axes[h + 1].locator_params(nbins=3)
    fig.colorbar(im, ax=axes[1:].tolist(), fraction=0.03, pad=0.01, label="objectness")
    return _finish(fig, path)


# ----------------------------------------------------------------------------- result records
def _key_path(key) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)


def _lookup(d, key):
    for k in _key_path(key):
        d = d[k]
    return d


def _mean_err(record: dict, key):
    """``(mean, (below, above))`` from a SPEC result record; the error is None where the 95% CI is missing or
    NaN (e.g. one seed)."""
    m = float(_lookup(record["mean"], key))
    try:
        ci = _lookup(record.get("ci95") or {}, key)
    except (KeyError, TypeError, IndexError):
        ci = None
    if ci is None:
        return m, None
    try:
        lo, hi = (float(v) if v is not None else math.nan for v in ci)
    except (TypeError, ValueError):
        return m, None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return m, None
    return m, (max(m - lo, 0.0), max(hi - m, 0.0))


def _points(ax, pos, vals, errs, colour, marker, label, horizontal):
    """Points with error bars at categorical positions, never joined; points without an error bar drawn alone."""
    pos, vals = np.asarray(pos, dtype=float), np.asarray(vals, dtype=float)
    has = np.array([e is not None for e in errs], dtype=bool)
    kw = dict(fmt=marker, color=colour, ms=5, elinewidth=1.2, capsize=2.5, capthick=1.2)
    drawn = False
    if has.any():
        err = np.array([e for e in errs if e is not None], dtype=float).T
        xy = (vals[has], pos[has]) if horizontal else (pos[has], vals[has])
        ax.errorbar(*xy, **({"xerr": err} if horizontal else {"yerr": err}), label=label, **kw)
        drawn = True
    if (~has).any():
        xy = (vals[~has], pos[~has]) if horizontal else (pos[~has], vals[~has])
        ax.errorbar(*xy, label=None if drawn else label, **kw)


@_styled
def arm_bars(arms: dict, path=None, keys=("map_standard", "map_seed"), labels=("standard protocol", "seed protocol"),
             title=None, xlabel="mAP@0.5"):
    """Mean and 95% CI over seeds of one or more metrics per arm: one row per arm (arms on the y axis), a point per
    metric with its CI as error bar (none when the CI is missing/NaN, e.g. one seed), never joined across arms.
    ``arms``: name -> SPEC result record (``mean``, ``ci95``, ...). Printed at FULL_WIDTH."""
    names = list(arms)
    fig, axes = _figure(FULL_WIDTH, 0.24 * len(names) + 1.0 + (0.2 if title else 0))
    ax = axes[0, 0]
    y = np.arange(len(names))
    markers = ("o", "s", "D", "^", "v")
    k = len(keys)
    for j, (key, lab) in enumerate(zip(keys, labels)):
        me = [_mean_err(arms[n], key) for n in names]
        off = (j - 0.5 * (k - 1)) * min(0.22, 0.6 / max(k, 1))
        _points(ax, y + off, [m for m, _ in me], [e for _, e in me], PALETTE[j % len(PALETTE)],
                markers[j % len(markers)], lab, horizontal=True)
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_ylabel("arm")
    ax.set_xlabel(xlabel + " (mean and 95% CI over seeds)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    _legend_above(fig)
    return _finish(fig, path)


@_styled
def confusion(matrix, path=None, title="class confusion on data with every class at every size"):
    """Rows: GT class; columns: predicted class of the best-IoU detection (IoU >= 0.5), or missed.
    Annotated cells (count and row fraction) and a colour bar. Printed at HALF_WIDTH."""
    m = np.asarray(matrix, dtype=float)
    frac = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, axes = _figure(HALF_WIDTH, 2.7)
    ax = axes[0, 0]
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=MIN_FONT,
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(m.shape[1]))
    ax.set_xticklabels((list(CLASS_NAMES) + ["missed"])[:m.shape[1]], rotation=20, ha="right")
    ax.set_yticks(range(m.shape[0]))
    ax.set_yticklabels(CLASS_NAMES[:m.shape[0]])
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title if len(title) < 40 else title.replace(" on ", "\non ", 1), fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="fraction of row")
    return _finish(fig, path)


@_styled
def ap_by_size(table, path=None, title="AP by class and size on data with every class at every size"):
    """table: {class: {bucket: AP}}. Grouped bars, each annotated with its value. Printed at HALF_WIDTH."""
    fig, axes = _figure(HALF_WIDTH, 2.6)
    ax = axes[0, 0]
    buckets = ["small", "medium", "large"]
    x = np.arange(3)
    for c, name in enumerate(CLASS_NAMES):
        v = np.array([table.get(name, {}).get(b, np.nan) for b in buckets], dtype=float)
        bars = ax.bar(x + (c - 1) * 0.27, v, 0.27, color=CLASS_COLOURS[c], label=name)
        for bar, val in zip(bars, v):
            if np.isfinite(val):
                ax.text(bar.get_x() + bar.get_width() / 2, val + 0.02, f"{val:.2f}", rotation=90, ha="center",
                        va="bottom", fontsize=MIN_FONT)
    ax.set_xticks(x)
    ax.set_xticklabels(buckets)
    ax.set_xlabel("object size bucket")
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("AP@0.5 (standard protocol)")
    ax.set_title(title if len(title) < 40 else title.replace(" on ", "\non ", 1), fontsize=8)
    _legend_above(fig)
    return _finish(fig, path)


# ----------------------------------------------------------------------------- keypoints
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
def metric_vs_images(curves: dict, batch_size: int, metric: str, path=None, metric_label=None, goal=None):
    """A validation metric against training images (log axis), one colour per method, one line per run: each method's
    seeds and, where trained, its runs of twice the schedule (dashed), so that where each method plateaus can be read
    off one axis. ``curves``: ``{method: [History or its dict per run]}`` (runs of ``batch_size`` images per step;
    a run longer than the method's shortest is drawn dashed). Printed at HALF_WIDTH."""
    fig, axes = _figure(HALF_WIDTH, 2.7)
    ax = axes[0, 0]
    spare = [c for c in PALETTE if c not in METHOD_COLOURS.values()]
    for i, (name, hists) in enumerate(curves.items()):
        c = METHOD_COLOURS.get(name) or spare[i % len(spare)]
        evs = [[e for e in (h if isinstance(h, dict) else h.to_dict())["evals"] if metric in e] for h in hists]
        evs = [e for e in evs if e]
        shortest = min((e[-1]["step"] for e in evs), default=0)
        for k, ev in enumerate(evs):
            ax.plot([e["step"] * batch_size for e in ev], [e[metric] for e in ev], marker="o" if len(ev) < 6 else None,
                    color=c, lw=1, ms=2.5, alpha=0.85, ls="--" if ev[-1]["step"] > shortest else "-",
                    label=name.replace("_", " ") if k == 0 else None)
    if goal is not None:
        ax.axhline(goal, color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel(metric_label or metric)
    ax.grid(alpha=0.3, which="both")
    _legend_above(fig, ncol=3)
    return _finish(fig, path)


@_styled
def keypoint_overlays(images, gt, preds: dict, path=None, n=10, idx=None):
    """For each method a row of ``n`` samples: GT circles, prediction crosses, dashed error lines.
    Printed at FULL_WIDTH."""
    idx = np.arange(min(n, len(images))) if idx is None else np.asarray(idx)[:n]
    cols = max(1, len(idx))
    side = (FULL_WIDTH - 0.25) / cols
    fig, axes = _figure(FULL_WIDTH, side * len(preds) + 0.35, len(preds), cols)
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.01, hspace=0.01)
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
def ablation_panels(groups: dict, path=None, metric_keys=(("pck_0.05",), ("decodings", "heatmap_argmax", "pck_0.05")),
                    labels=("PCK@0.05 DARK", "PCK@0.05 argmax"), mse_key=None, ncols=3):
    """One panel per ablation group; x: the group's arms (categorical); for every metric a point with its 95% CI
    as error bar (none when missing/NaN), offset so they do not overlap, never joined across arms.
    ``groups``: group name -> {arm label: SPEC result record}; each metric key is a path into ``record["mean"]`` /
    ``record["ci95"]`` (a string is a one-element path). ``mse_key``: optional metric path drawn in grey on a twin
    axis where every arm has it. Printed at FULL_WIDTH."""
    ncol = max(1, min(ncols, len(groups)))
    nrow = max(1, -(-len(groups) // ncol))
    fig, axes = _figure(FULL_WIDTH, 1.95 * nrow + 0.3, nrow, ncol)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    markers = ("o", "s", "D", "^")
    k = len(metric_keys) + (1 if mse_key else 0)
    step = min(0.15, 0.6 / max(k, 1))
    for ax, (gname, arms) in zip(axes.flat, groups.items()):
        names = list(arms)
        x = np.arange(len(names))
        for j, (key, lab) in enumerate(zip(metric_keys, labels)):
            me = [_mean_err(arms[n], key) for n in names]
            _points(ax, x + (j - 0.5 * (k - 1)) * step, [m for m, _ in me], [e for _, e in me],
                    PALETTE[j % len(PALETTE)], markers[j % len(markers)], lab, horizontal=False)
        ax.set_xticks(x)
        long = max((len(str(n)) for n in names), default=0) * len(names) > 24
        ax.set_xticklabels(names, rotation=25 if long else 0, ha="right" if long else "center")
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_xlabel(gname)
        ax.set_ylabel("PCK@0.05")
        ax.grid(axis="y", alpha=0.3)
        if mse_key:
            try:
                me = [_mean_err(arms[n], mse_key) for n in names]
            except (KeyError, TypeError):
                me = None
            if me is not None:
                tw = ax.twinx()
                _points(tw, x + (k - 1 - 0.5 * (k - 1)) * step, [m for m, _ in me], [e for _, e in me], "0.45", "v",
                        "heatmap MSE (test)", horizontal=False)
                tw.set_ylabel("val. heatmap MSE", color="0.35")
                tw.tick_params(axis="y", labelcolor="0.35")
    _legend_above(fig)
    return _finish(fig, path)


@_styled
def failure_rates(rates: dict, path=None):
    """rates: {attribute label: {"bins": [...labels], "A": [...], "B": [...], "C": [...], "n": [...]}}.
    Every bar is annotated with its value (in %), so the small type-B shares stay readable. Printed at FULL_WIDTH."""
    fig, axes = _figure(FULL_WIDTH, 2.6, 1, len(rates))
    for ax, (attr, r) in zip(axes[0], rates.items()):
        x = np.arange(len(r["bins"]))
        top = 0.0
        for j, t in enumerate(("A", "B", "C")):
            v = np.asarray(r[t], dtype=float)
            bars = ax.bar(x + (j - 1) * 0.27, v, 0.27, label=f"type {t}", color=FAILURE_COLOURS[t])
            top = max(top, np.nanmax(v) if len(v) else 0.0)
            for bar, val in zip(bars, v):
                if np.isfinite(val):
                    ax.text(bar.get_x() + bar.get_width() / 2, val, f" {100 * val:.1f}%", rotation=90, ha="center",
                            va="bottom", fontsize=MIN_FONT)
        ax.set_ylim(0, max(top, 1e-3) * 1.45)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{b}\n(n={n})" for b, n in zip(r["bins"], r["n"])])
        ax.set_xlabel(attr)
        ax.set_ylabel("share of hand keypoints")
    _legend_above(fig)
    return _finish(fig, path)


@_styled
def time_to_accuracy(curves: dict, path=None):
    """curves: {label: (seconds [..], metric [..], goal, ylabel)}: metric against training seconds.
    Printed at FULL_WIDTH."""
    fig, axes = _figure(FULL_WIDTH, 2.3, 1, len(curves))
    for i, (ax, (label, (sec, val, goal, ylabel))) in enumerate(zip(axes[0], curves.items())):
        ax.plot(sec, val, "o-", ms=3, color=PALETTE[0], label="validation")
        ax.axhline(goal, color="k", ls=":", lw=1, label="goal")
        ax.set_xlabel("training seconds\n(2 CPU cores, evaluation excluded)")
        ax.set_ylabel(ylabel)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    _legend_above(fig)
    return _finish(fig, path)
