"""Figures of Part 1: the shapes data, anchors against object sizes, receptive fields, assignment, PR curves,
objectness maps, class confusion and AP by size.
"""

from __future__ import annotations

import math
import matplotlib.pyplot as plt
import numpy as np
import torch
from hwlib.config import CLASS_NAMES
from hwlib.vision.receptive import gradient_centre
from hwlib.study.plots.style import CLASS_COLOURS, FULL_WIDTH, HALF_WIDTH, HEAD_COLOURS, MIN_FONT, PALETTE, _OI, _figure, _finish, _legend_above, _log_x, _styled


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
def pr_curves(matches_by_model: dict, path=None, conf_cut: float = 0.5):
    """Precision-recall per class; the marker shows where the seed's confidence cut ends the curve.
    Printed at FULL_WIDTH."""
    from hwlib.vision.metrics import pr_curve

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
    _log_x(ax)
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
        axes[h + 1].set_title(f"S{h + 1} objectness\n({p.shape[-1]}x{p.shape[-2]} cells)")
        axes[h + 1].set_xlabel("x (cell)")
        axes[h + 1].set_ylabel("y (cell)")
        axes[h + 1].locator_params(nbins=3)
    fig.colorbar(im, ax=axes[1:].tolist(), fraction=0.03, pad=0.025, label="objectness")
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
    ax.set_title(title, fontsize=8)                # wrapped to the axes' width when saved (_fit_text)
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
    ax.set_title(title, fontsize=8)                # wrapped to the axes' width when saved (_fit_text)
    _legend_above(fig)
    return _finish(fig, path)
