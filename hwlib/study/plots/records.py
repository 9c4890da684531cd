"""Figures of result records: training curves, accuracy against images seen, arms with their intervals, ablation
panels, and many runs of many arms against training progress (``run_curves``).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from hwlib.study.plots.style import (_PAD, FULL_WIDTH, HALF_WIDTH, METHOD_COLOURS, PALETTE, _figure, _finish,
                                     _legend_above, _log_x, _refit, _renderer, _styled)


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
    _log_x(ax)
    ax.set_xlabel("training images")
    ax.set_ylabel(metric_label or metric)
    ax.grid(alpha=0.3, which="both")
    _legend_above(fig, ncol=3)
    return _finish(fig, path)


@_styled
def ablation_panels(groups: dict, path=None, metric_keys=(("pck_0.05",), ("decodings", "heatmap_argmax", "pck_0.05")),
                    labels=("PCK@0.05 DARK", "PCK@0.05 argmax"), mse_key=None, ncols=3, mse_label="heatmap MSE"):
    """One panel per ablation group; x: the group's arms (categorical); for every metric a point with its 95% CI
    as error bar (none when missing/NaN), offset so they do not overlap, never joined across arms.
    ``groups``: group name -> {arm label: SPEC result record}; each metric key is a path into ``record["mean"]`` /
    ``record["ci95"]`` (a string is a one-element path). ``mse_key``: optional metric path drawn in grey on a twin
    axis where every arm has it, named ``mse_label`` in the legend and on that axis alike (name the split the
    records were evaluated on there, e.g. ``"test heatmap MSE"``). Printed at FULL_WIDTH."""
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
                        mse_label, horizontal=False)
                tw.set_ylabel(mse_label, color="0.35")
                tw.tick_params(axis="y", labelcolor="0.35")
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


def _arm_styles(n: int) -> list:
    """``n`` distinct line styles: the seven Okabe-Ito colours of ``PALETTE`` other than black (black is the goal's),
    then the same colours dashed, dash-dotted, then with markers: no two arms of a panel look alike."""
    colours = [c for c in PALETTE if c.upper() != "#000000"]
    dashes = ("-", "--", "-.")
    out = []
    for i in range(n):
        k = i // len(colours)
        out.append({"color": colours[i % len(colours)], "ls": dashes[k % len(dashes)],
                    "marker": ("", "o", "s", "^", "v", "D")[(k // len(dashes)) % 6]})
    return out


@_styled
def run_curves(panels: dict, path=None, xlabel="training images", ncols=3, axes_height=1.2):
    """A metric against training progress, one panel per task, one line per run, one colour (and line style) per
    arm, the goal dotted. ``panels``: ``{title: {"ylabel": str, "goal": float or None, "ylim": (lo, hi) or None,
    "runs": {arm label: [(x values, y values) per run]}}}``. Each panel's legend lies below it, outside the data,
    one entry per arm, its labels wrapped to the panel's width; each row of panels is as tall as its longest legend
    needs (axes ``axes_height`` inches tall). Printed at FULL_WIDTH."""
    ncol = max(1, min(ncols, len(panels)))
    nrow = max(1, -(-len(panels) // ncol))
    arms = [len(p["runs"]) for p in panels.values()]
    rows = [axes_height + 1.0 + 0.25 * max(arms[r * ncol:(r + 1) * ncol]) for r in range(nrow)]    # first guess
    fig = plt.figure(figsize=(FULL_WIDTH, sum(rows)), layout="constrained")
    gs = fig.add_gridspec(nrow, ncol, height_ratios=rows)
    drawn = []
    for i, (title, p) in enumerate(panels.items()):
        cell = fig.add_subfigure(gs[i // ncol, i % ncol])
        inner = cell.add_gridspec(2, 1, height_ratios=[1.0, 1e-3], hspace=0)
        sf = cell.add_subfigure(inner[0])                 # the panel and its legend; inner[1]: the room left below
        ax = sf.subplots()
        handles = []
        for (arm, runs), st in zip(p["runs"].items(), _arm_styles(len(p["runs"]))):
            for k, (x, y) in enumerate(runs):
                (h,) = ax.plot(x, y, lw=1, alpha=0.85, ms=3, markevery=max(1, len(x) // 6),
                               label=arm if k == 0 else None, **st)
                handles += [h] if k == 0 else []
        if p.get("goal") is not None:
            ax.axhline(p["goal"], color="k", ls=":", lw=1)
        if p.get("ylim") is not None:
            ax.set_ylim(*p["ylim"])
        xmax = max((max(x) for runs in p["runs"].values() for x, _ in runs if len(x)), default=0)
        if xmax >= 1e3:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(p.get("ylabel", ""))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        leg = sf.legend(handles=handles, loc="outside lower center", ncols=1, labelspacing=0.25,
                        handlelength=2.2) if handles else None
        drawn.append((i // ncol, sf, ax, leg, inner))
    # legend labels wrapped to the panel's width, then each row as tall as its panel and longest legend need
    renderer = _renderer(fig)
    for _, sf, _, leg, _ in drawn:
        texts = leg.get_texts() if leg is not None else []
        if not texts:
            continue
        frame = leg.get_window_extent(renderer).width - max(t.get_window_extent(renderer).width for t in texts)
        for t in texts:
            _refit(t, sf.bbox.width - frame - 2 * _PAD * fig.dpi / 72, renderer)
    _renderer(fig)
    need = [(sf.bbox.height - ax.get_window_extent(renderer).height) / fig.dpi + axes_height
            for _, sf, ax, _, _ in drawn]           # each panel: its axes, their labels and its legend
    rows = [max(n for (r, *_), n in zip(drawn, need) if r == row) for row in range(nrow)]
    for (r, *_, inner), n in zip(drawn, need):      # axes of a row equally tall: the room left goes below
        inner.set_height_ratios([n, max(rows[r] - n, 1e-3)])
    gs.set_height_ratios(rows)
    fig.set_size_inches(FULL_WIDTH, sum(rows))
    return _finish(fig, path)
