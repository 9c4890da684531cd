"""Every figure of the report. Each function draws one figure, saves it atomically and returns it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() in ("", "agg") else None
import matplotlib.pyplot as plt
import numpy as np
import torch

from .config import CLASS_NAMES, KEYPOINT_NAMES
from .receptive import gradient_centre
from .report import save_figure

HEAD_COLOURS = ("tab:blue", "tab:orange", "tab:green")
CLASS_COLOURS = ("tab:red", "tab:purple", "tab:cyan")
METHOD_COLOURS = {"heatmap_argmax": "tab:blue", "heatmap_dark": "tab:green", "regression": "tab:red",
                  "integral": "tab:purple"}
plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "font.size": 9, "axes.titlesize": 10})


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- data
def detection_samples(images, targets, path=None, n=8, preds=None, title=None):
    """Grid of images with GT boxes (solid, coloured by class) and optional predictions (dashed, by head)."""
    n = min(n, len(images))
    cols = min(4, n)
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        for b, l in zip(targets[i]["boxes"].tolist(), targets[i]["labels"].tolist()):
            ax.add_patch(plt.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False,
                                       lw=1.5, ec=CLASS_COLOURS[l] if preds is None else "white"))
        if preds is not None:
            p = preds[i]
            for b, s, l, h in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), p["heads"].tolist()):
                ax.add_patch(plt.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False, lw=1.3,
                                           ls="--", ec=HEAD_COLOURS[h]))
                ax.text(b[0], b[1] - 2, f"{CLASS_NAMES[l][:3]} {s:.2f}", color=HEAD_COLOURS[h], fontsize=6,
                        bbox=dict(fc="white", alpha=0.6, pad=0.5, lw=0))
    handles = ([plt.Line2D([], [], color=c, lw=2, label=n) for c, n in zip(CLASS_COLOURS, CLASS_NAMES)] if preds is None else
               [plt.Line2D([], [], color="white", lw=2, label="ground truth", mec="k")] +
               [plt.Line2D([], [], color=c, lw=2, ls="--", label=f"head {h}") for c, h in zip(HEAD_COLOURS, ("S1", "S2", "S3"))])
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               facecolor="grey" if preds is not None else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    if path is not None:
        save_figure(fig, path)
    return fig


def box_sizes(targets):
    """sqrt(w*h) and labels of every GT box, numpy."""
    if not targets:
        return np.zeros(0), np.zeros(0, dtype=int)
    b = torch.cat([t["boxes"] for t in targets])
    l = torch.cat([t["labels"] for t in targets])
    return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt().numpy(), l.numpy()


def size_histogram(targets, anchors, buckets, path=None, title="Object size per class against each head's anchors"):
    """GT size sqrt(w*h) per class, with each head's anchor range and the size-bucket boundaries."""
    s, l = box_sizes(targets)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.geomspace(8, 256, 40)
    for c, name in enumerate(CLASS_NAMES):
        ax.hist(s[l == c], bins=bins, alpha=0.6, color=CLASS_COLOURS[c], label=f"{name} (n={int((l == c).sum())})")
    ymax = ax.get_ylim()[1]
    for h, anc in enumerate(anchors):
        ax.axvspan(min(anc), max(anc), ymin=0.92 - 0.06 * h, ymax=0.97 - 0.06 * h, color=HEAD_COLOURS[h], alpha=0.9)
        for a in anc:
            ax.plot([a], [ymax * (0.945 - 0.06 * h)], "k|", ms=8)
        ax.text(max(anc) * 1.04, ymax * (0.935 - 0.06 * h), f"S{h + 1} anchors", fontsize=7, color=HEAD_COLOURS[h], va="center")
    for b in buckets:
        ax.axvline(b, color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"object size $\sqrt{w h}$ (pixels, log scale); dotted: size-bucket boundaries")
    ax.set_ylabel("objects")
    ax.set_title(title)
    ax.legend(loc="center left", fontsize=8)
    return _finish(fig, path)


def keypoint_samples(images, keypoints, path=None, n=12, meta=None):
    """Grid of stick figures with their five keypoints."""
    n = min(n, len(images))
    cols = min(6, n)
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)
    colours = ["tab:green", "tab:red", "tab:blue", "tab:orange", "tab:cyan"]
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, extent=(0, 128, 128, 0))
        ax.scatter(keypoints[i, :, 0], keypoints[i, :, 1], c=colours, s=14, edgecolors="k", linewidths=0.4)
        if meta is not None:
            ax.set_title({0: "normal", 1: "hands together", 2: "hands on torso"}[int(meta["hard"][i])], fontsize=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k.replace("_", " ")) for c, k in zip(colours, KEYPOINT_NAMES)]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if path is not None:
        save_figure(fig, path)
    return fig


def keypoint_density(keypoints, path=None):
    """Where each keypoint type lies in the 128x128 image (2-D histograms)."""
    fig, axes = plt.subplots(1, 5, figsize=(11, 2.5))
    for k, ax in enumerate(axes):
        ax.hist2d(keypoints[:, k, 0].numpy(), keypoints[:, k, 1].numpy(), bins=32, range=[[0, 128], [0, 128]], cmap="magma")
        ax.set_title(KEYPOINT_NAMES[k].replace("_", " "))
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_xticks([0, 64, 128])
        ax.set_yticks([0, 64, 128])
    return _finish(fig, path)


# ----------------------------------------------------------------------------- training
def training_curves(histories: dict, metric: str, path=None, metric_label=None, goal=None):
    """Loss against step, and a validation metric against step and against training seconds."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for i, (name, h) in enumerate(histories.items()):
        h = h if isinstance(h, dict) else h.to_dict()
        c = f"C{i}"
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
    for ax, xl in ((axes[1], "step"), (axes[2], "training seconds (evaluation excluded)")):
        ax.set_xlabel(xl)
        ax.set_ylabel(metric_label or metric)
        if goal is not None:
            ax.axhline(goal, color="k", ls=":", lw=1)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return _finish(fig, path)


# ----------------------------------------------------------------------------- detection
def pr_curves(matches_by_model: dict, path=None, conf_cut: float = 0.5):
    """Precision-recall per class; the marker shows where the seed's confidence cut ends the curve."""
    from .metrics import pr_curve

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for c, ax in enumerate(axes):
        for i, (name, m) in enumerate(matches_by_model.items()):
            r, p, s = pr_curve(m, c)
            if len(r) == 0:
                continue
            ax.plot(r, p, color=f"C{i}", label=name)
            k = np.searchsorted(-s, -conf_cut, side="right") - 1
            if k >= 0:
                ax.plot(r[k], p[k], "o", color=f"C{i}", ms=6, mfc="white")
        ax.set_title(CLASS_NAMES[c])
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title=f"open circle: conf = {conf_cut}", title_fontsize=7, loc="lower left")
    return _finish(fig, path)


def receptive_fields(erf: dict, trf: dict, anchors, size_ranges, path=None, title=""):
    """Effective receptive field maps of the three heads, and theoretical/effective RF against anchors and object sizes."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
    for i, name in enumerate(("S1", "S2", "S3")):
        g, side = erf[name]
        axes[i].imshow(g.numpy() ** 0.5, cmap="viridis", extent=(0, g.shape[1], g.shape[0], 0))
        cy, cx = gradient_centre(g)
        r = trf[name]["rf"] / 2
        axes[i].add_patch(plt.Rectangle((cx - r, cy - r), 2 * r, 2 * r, fill=False, ec="w", ls="--"))
        axes[i].add_patch(plt.Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, ec="r"))
        for a in anchors[i]:
            axes[i].add_patch(plt.Rectangle((cx - a / 2, cy - a / 2), a, a, fill=False, ec="orange", lw=0.8, ls=":"))
        axes[i].set_title(f"{name}: TRF {trf[name]['rf']} px, ERF(90%) {side:.0f} px", fontsize=8)
        axes[i].set_xticks([])
        axes[i].set_yticks([])
    ax = axes[3]
    for i, name in enumerate(("S1", "S2", "S3")):
        ax.plot([i, i], [min(anchors[i]), max(anchors[i])], color="orange", lw=8, alpha=0.6, solid_capstyle="butt",
                label="anchor range" if i == 0 else None)
        ax.plot(i - 0.15, trf[name]["rf"], "ws", mec="k", label="theoretical RF" if i == 0 else None)
        ax.plot(i + 0.15, erf[name][1], "r^", label="effective RF (90%)" if i == 0 else None)
    for c, (lo, hi) in enumerate(size_ranges):
        ax.axhspan(lo, hi, color=CLASS_COLOURS[c], alpha=0.12, label=f"{CLASS_NAMES[c]} sizes")
    ax.set_yscale("log")
    ax.set_xticks([0, 1, 2])
    ax.set_xticklabels(["S1", "S2", "S3"])
    ax.set_ylabel("pixels")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("what each head sees vs what it must box", fontsize=9)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def assignment_counts(counts, path=None):
    """Positive samples per head and class from the assignment rule (bar chart); counts [3 heads, 3 classes]."""
    counts = np.asarray(counts, dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 3))
    x = np.arange(3)
    for c in range(3):
        ax.bar(x + (c - 1) * 0.25, counts[:, c], 0.25, color=CLASS_COLOURS[c], label=CLASS_NAMES[c])
    ax.set_xticks(x)
    ax.set_xticklabels(["S1 (stride 4)", "S2 (stride 8)", "S3 (stride 16)"])
    ax.set_ylabel("positives per image")
    ax.set_title("positive samples per head (ratio matching, anchor_t = 4, 3 cells)", fontsize=9)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def anchor_coverage(sizes, labels, best_iou, anchors, path=None):
    """GT sizes against anchors, and the best-anchor IoU of every GT (an anchor centred on it)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
    ax = axes[0]
    for c in range(3):
        ax.scatter(sizes[labels == c], best_iou[labels == c], s=5, alpha=0.5, color=CLASS_COLOURS[c], label=CLASS_NAMES[c])
    for h, anc in enumerate(anchors):
        for a in anc:
            ax.axvline(a, color=HEAD_COLOURS[h], lw=1, alpha=0.7)
    ax.axhline(0.5, color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"GT size $\sqrt{wh}$ (px); vertical lines: anchors (blue S1, orange S2, green S3)")
    ax.set_ylabel("best-anchor IoU")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.hist(best_iou, bins=40, range=(0, 1), color="grey")
    ax.axvline(0.5, color="k", ls=":")
    ax.set_xlabel("best-anchor IoU")
    ax.set_ylabel("objects")
    ax.set_title(f"{(best_iou < 0.5).mean() * 100:.1f}% of objects have best-anchor IoU < 0.5", fontsize=9)
    return _finish(fig, path)


def objectness_maps(image, raw_outputs, num_anchors=3, path=None):
    """One image and the max-over-anchors objectness (sigmoid) of each head."""
    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    axes[0].imshow(image.permute(1, 2, 0).numpy())
    axes[0].set_title("image")
    for h in range(3):
        p = raw_outputs[h]
        a = p.view(num_anchors, -1, *p.shape[-2:])[:, 4].sigmoid().amax(0)
        im = axes[h + 1].imshow(a.numpy(), cmap="magma", vmin=0, vmax=1)
        axes[h + 1].set_title(f"S{h + 1} objectness ({p.shape[-1]}x{p.shape[-2]})")
    for ax in axes:
        ax.axis("off")
    fig.colorbar(im, ax=axes[1:].tolist(), fraction=0.02)
    if path is not None:
        save_figure(fig, path)
    return fig


def arm_bars(arms: dict, path=None, keys=("map_standard", "map_seed"), labels=("standard protocol", "seed protocol"),
             title="", ylabel="mAP@0.5"):
    """Mean +- std across seeds of one or two metrics per arm (horizontal bars)."""
    names = list(arms)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.2))
    y = np.arange(len(names))
    for j, (k, lab) in enumerate(zip(keys, labels)):
        m = [arms[n][k] for n in names]
        s = [arms[n].get(k + "_std", 0.0) for n in names]
        ax.barh(y + (j - 0.5 * (len(keys) - 1)) * 0.38, m, 0.38, xerr=s, capsize=2, label=lab, color=f"C{j}")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(ylabel + " (mean $\\pm$ std over seeds)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return _finish(fig, path)


def confusion(matrix, path=None, title="class confusion on data with every class at every size"):
    """Rows: GT class; columns: predicted class of the best-IoU detection (IoU >= 0.5), or missed."""
    m = np.asarray(matrix, dtype=float)
    frac = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(m.shape[1]))
    ax.set_xticklabels(list(CLASS_NAMES) + ["missed"])
    ax.set_yticks(range(m.shape[0]))
    ax.set_yticklabels(CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=9)
    return _finish(fig, path)


def ap_by_size(table, path=None, title="AP by class and size on data with every class at every size"):
    """table: {class: {bucket: AP}}."""
    fig, ax = plt.subplots(figsize=(5.5, 3))
    buckets = ["small", "medium", "large"]
    x = np.arange(3)
    for c, name in enumerate(CLASS_NAMES):
        ax.bar(x + (c - 1) * 0.25, [table[name].get(b, np.nan) for b in buckets], 0.25, color=CLASS_COLOURS[c], label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(buckets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AP@0.5 (standard protocol)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _finish(fig, path)


# ----------------------------------------------------------------------------- keypoints
def pck_curves(errors_by_method: dict, path=None, taus=(0.05, 0.10, 0.15, 0.20)):
    """PCK against tau in [0, 0.2] for every method on one axis; errors_by_method: name -> normalized errors
    (array [S, N, K] over seeds, or [N, K]); shaded band: min-max over seeds."""
    grid = np.linspace(0, 0.2, 201)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, err in errors_by_method.items():
        e = np.asarray(err)
        if e.ndim == 2:
            e = e[None]
        curves = np.stack([(s.reshape(-1)[:, None] <= grid[None] * (1 + 1e-6)).mean(0) for s in e])
        c = METHOD_COLOURS.get(name)
        ax.plot(grid, curves.mean(0), label=name.replace("_", " "), color=c)
        if len(curves) > 1:
            ax.fill_between(grid, curves.min(0), curves.max(0), alpha=0.2, color=c)
        mk = [np.argmin(abs(grid - t)) for t in taus]
        ax.plot(grid[mk], curves.mean(0)[mk], "o", color=c, ms=4)
    for t in taus:
        ax.axvline(t, color="k", lw=0.5, ls=":")
    ax.set_xlabel(r"threshold $\tau$ (fraction of the keypoint-box diagonal)")
    ax.set_ylabel("PCK")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _finish(fig, path)


def keypoint_overlays(images, gt, preds: dict, path=None, n=10, idx=None):
    """For each method a row of ``n`` samples: GT green circles, prediction red crosses, dashed error lines."""
    idx = np.arange(min(n, len(images))) if idx is None else np.asarray(idx)[:n]
    fig, axes = plt.subplots(len(preds), len(idx), figsize=(1.45 * len(idx), 1.6 * len(preds)), squeeze=False)
    for r, (name, p) in enumerate(preds.items()):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(images[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, extent=(0, 128, 128, 0))
            g, q = gt[i].numpy(), p[i].numpy()
            for k in range(len(g)):
                ax.plot([g[k, 0], q[k, 0]], [g[k, 1], q[k, 1]], "y--", lw=0.8)
            ax.scatter(g[:, 0], g[:, 1], s=22, facecolors="none", edgecolors="lime", linewidths=1.0)
            ax.scatter(q[:, 0], q[:, 1], s=18, c="red", marker="x", linewidths=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name.replace("_", " "), fontsize=8)
    return _finish(fig, path)


def ablation_panels(groups: dict, path=None, metric_keys=("pck_dark_0.05", "pck_argmax_0.05"),
                    labels=("PCK@0.05 DARK", "PCK@0.05 argmax"), mse_key="val_mse"):
    """One panel per ablation group (resolution, sigma, skip): PCK with error bars, and heatmap MSE on a twin axis."""
    ncol = min(2, len(groups))
    nrow = -(-len(groups) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, (gname, arms) in zip(axes.flat, groups.items()):
        names = list(arms)
        x = np.arange(len(names))
        for j, (k, lab) in enumerate(zip(metric_keys, labels)):
            ax.errorbar(x + (j - 0.5) * 0.1, [arms[n][k] for n in names], yerr=[arms[n].get(k + "_std", 0) for n in names],
                        fmt="o-", capsize=3, label=lab, color=f"C{j}")
        ax.set_xticks(x)
        ax.set_xticklabels(names)
        ax.set_xlabel(gname)
        ax.set_ylabel("PCK")
        ax.grid(alpha=0.3)
        if mse_key and all(mse_key in arms[n] for n in names):
            tw = ax.twinx()
            tw.errorbar(x, [arms[n][mse_key] for n in names], yerr=[arms[n].get(mse_key + "_std", 0) for n in names],
                        fmt="s:", color="grey", capsize=2, label="val heatmap MSE")
            tw.set_ylabel("validation heatmap MSE (not comparable across arms)", fontsize=7, color="grey")
            tw.tick_params(axis="y", labelcolor="grey", labelsize=7)
        ax.legend(fontsize=7, loc="lower left")
    return _finish(fig, path)


def failure_rates(rates: dict, path=None):
    """rates: {attribute label: {"bins": [...labels], "A": [...], "B": [...], "C": [...], "n": [...]}}."""
    fig, axes = plt.subplots(1, len(rates), figsize=(4.3 * len(rates), 3.2), squeeze=False)
    for ax, (attr, r) in zip(axes[0], rates.items()):
        x = np.arange(len(r["bins"]))
        for j, t in enumerate(("A", "B", "C")):
            ax.bar(x + (j - 1) * 0.27, r[t], 0.27, label=f"type {t}", color=("tab:orange", "tab:blue", "tab:red")[j])
        ax.set_xticks(x)
        ax.set_xticklabels([f"{b}\n(n={n})" for b, n in zip(r["bins"], r["n"])], fontsize=7)
        ax.set_xlabel(attr)
        ax.set_ylabel("share of hand keypoints")
        ax.legend(fontsize=7)
    return _finish(fig, path)


def time_to_accuracy(curves: dict, path=None):
    """curves: {label: (seconds [..], metric [..], goal, ylabel)}: metric against training seconds."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.2), squeeze=False)
    for ax, (label, (sec, val, goal, ylabel)) in zip(axes[0], curves.items()):
        ax.plot(sec, val, "o-", ms=3)
        ax.axhline(goal, color="k", ls=":", lw=1)
        ax.set_xlabel("training seconds (2 CPU cores, evaluation excluded)")
        ax.set_ylabel(ylabel)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    return _finish(fig, path)
