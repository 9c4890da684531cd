"""Every figure is drawn at its printed size, with no text under 7 pt, and categorical arms are never joined."""

import math
import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer
from matplotlib.lines import Line2D
from matplotlib.text import Text

from hwlib.config import CLASS_NAMES
from hwlib.study import plots
from hwlib.vision.train import History

WIDTHS = (plots.FULL_WIDTH, plots.HALF_WIDTH)


def _check(fig, path):
    assert path.exists() and path.stat().st_size > 0
    assert isinstance(fig, matplotlib.figure.Figure)
    w = fig.get_size_inches()[0]
    assert any(math.isclose(w, t, abs_tol=1e-6) for t in WIDTHS), w
    small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() < plots.MIN_FONT - 1e-9]
    assert not small, small
    _layout_ok(fig)
    if path.suffix == ".pdf":     # saved (tight-cropped) page within a few percent of the printed width
        box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", path.read_bytes())
        assert box and abs(float(box.group(1)) / 72 - w) / w < 0.06, (box and float(box.group(1)) / 72, w)
    plt.close(fig)


def _no_joined_arms(fig, categorical_axis):
    """No drawn line in data coordinates visits two different categorical positions; every panel has error-bar
    points."""
    n_err = 0
    for ax in fig.axes:
        n_err += sum(isinstance(c, ErrorbarContainer) for c in ax.containers)
        for line in ax.lines:
            if line.get_linestyle() in ("None", "none", "", " ") or line.get_transform() != ax.transData:
                continue
            pos = np.asarray(line.get_xdata() if categorical_axis == "x" else line.get_ydata(), dtype=float)
            assert len(pos) < 2 or np.ptp(np.round(pos)) == 0, f"line joins arms at {pos}"
    assert n_err > 0


def _record(mean, ci=True, seeds=(0, 1, 2)):
    def ci_of(v):
        if isinstance(v, dict):
            return {k: ci_of(x) for k, x in v.items()}
        return [v - 0.03, v + 0.02] if ci else [float("nan"), float("nan")]

    def std_of(v):
        return {k: std_of(x) for k, x in v.items()} if isinstance(v, dict) else 0.02

    return {"seeds": list(seeds), "mean": mean, "std": std_of(mean), "ci95": ci_of(mean)}


def _det_data(n=4):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 128, 128, generator=g)
    targets, preds = [], []
    for _ in range(n):
        xy = torch.rand(3, 2, generator=g) * 80
        wh = 10 + torch.rand(3, 2, generator=g) * 40
        boxes = torch.cat([xy, xy + wh], 1)
        targets.append({"boxes": boxes, "labels": torch.tensor([0, 1, 2])})
        preds.append({"boxes": boxes + 2, "scores": torch.tensor([0.9, 0.7, 0.6]), "labels": torch.tensor([0, 1, 1]),
                      "heads": torch.tensor([0, 1, 2])})
    return images, targets, preds


def _kp_data(n=12):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 128, 128, generator=g), torch.rand(n, 5, 2, generator=g) * 128


ANCHORS = [[10, 14, 20], [28, 40, 56], [80, 110, 150]]


def test_detection_figures(tmp_path):
    images, targets, preds = _det_data()
    _check(plots.detection_samples(images, targets, tmp_path / "a.png", n=4), tmp_path / "a.png")
    _check(plots.detection_samples(images, targets, tmp_path / "b.png", n=4, preds=preds, title="predictions"),
           tmp_path / "b.png")
    _check(plots.size_histogram(targets, ANCHORS, [32, 96], tmp_path / "c.pdf"), tmp_path / "c.pdf")
    _check(plots.assignment_counts(np.arange(9).reshape(3, 3), tmp_path / "d.pdf"), tmp_path / "d.pdf")
    sizes, labels = plots.box_sizes(targets)
    iou = np.linspace(0.2, 0.9, len(sizes))
    _check(plots.anchor_coverage(sizes, labels, iou, ANCHORS, tmp_path / "e.pdf"), tmp_path / "e.pdf")
    raw = [torch.randn(3 * 8, s, s) for s in (32, 16, 8)]
    _check(plots.objectness_maps(images[0], raw, path=tmp_path / "f.png"), tmp_path / "f.png")
    _check(plots.confusion([[10, 1, 0, 2], [0, 9, 1, 3], [1, 0, 12, 0]], tmp_path / "g.pdf"), tmp_path / "g.pdf")
    table = {n: {"small": 0.3, "medium": 0.7, "large": 0.9} for n in CLASS_NAMES}
    _check(plots.ap_by_size(table, tmp_path / "h.pdf"), tmp_path / "h.pdf")


def test_pr_and_receptive_fields(tmp_path):
    from hwlib.vision.metrics import match_detections

    _, targets, preds = _det_data()
    m = match_detections([{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds], targets)
    _check(plots.pr_curves({"seed-exact": m, "rf-aware": m}, tmp_path / "pr.pdf", conf_cut=0.5), tmp_path / "pr.pdf")
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    g = torch.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 50)
    erf = {n: (g, s) for n, s in (("S1", 12.0), ("S2", 24.0), ("S3", 40.0))}
    trf = {n: {"rf": r} for n, r in (("S1", 19), ("S2", 43), ("S3", 91))}
    fig = plots.receptive_fields(erf, trf, ANCHORS, [(8, 20), (20, 60), (60, 200)], tmp_path / "rf.pdf", title="heads")
    _check(fig, tmp_path / "rf.pdf")


def test_data_and_training_figures(tmp_path):
    images, kps = _kp_data()
    meta = {"hard": np.arange(12) % 3}
    _check(plots.keypoint_samples(images, kps, tmp_path / "k.png", n=12, meta=meta), tmp_path / "k.png")
    _check(plots.keypoint_density(kps, tmp_path / "kd.pdf"), tmp_path / "kd.pdf")
    h = History(steps=list(range(100)), loss=list(np.linspace(2, 0.1, 100)), seconds=list(range(100)),
                evals=[{"step": s, "seconds": s * 0.5, "map_standard": s / 100} for s in (20, 60, 99)])
    fig = plots.training_curves({"seed-exact": h, "rf-aware": h.to_dict()}, "map_standard", tmp_path / "tc.pdf",
                                metric_label="validation mAP@0.5", goal=0.5)
    _check(fig, tmp_path / "tc.pdf")
    curves = {"detector": ([1, 2, 3], [0.2, 0.5, 0.7], 0.6, "mAP@0.5"), "keypoints": ([1, 2], [0.5, 0.9], 0.95, "PCK")}
    _check(plots.time_to_accuracy(curves, tmp_path / "tta.pdf"), tmp_path / "tta.pdf")


def test_keypoint_figures(tmp_path):
    images, kps = _kp_data()
    rng = np.random.default_rng(0)
    errors = {"heatmap_dark": rng.random((3, 50, 5)) * 0.2, "regression": rng.random((50, 5)) * 0.3,
              "some_other": rng.random((50, 5)) * 0.25}
    _check(plots.pck_curves(errors, tmp_path / "pck.pdf"), tmp_path / "pck.pdf")
    preds = {"heatmap (DARK)": kps + 3, "regression": kps - 4}
    _check(plots.keypoint_overlays(images, kps, preds, tmp_path / "ov.png", idx=np.arange(10)), tmp_path / "ov.png")
    rates = {"hand distance (px)": {"bins": ["<2", "2-5", "5-10", ">10"], "A": [0.2, 0.1, 0.05, 0.02],
                                    "B": [0.004, 0.002, 0.0, 0.001], "C": [0.1, 0.05, 0.02, 0.01], "n": [10, 20, 30, 40]},
             "pose": {"bins": ["normal", "hands together", "hands on torso"], "A": [0.02, 0.2, 0.1],
                      "B": [0.001, 0.01, 0.005], "C": [0.01, 0.1, 0.08], "n": [100, 20, 20]}}
    _check(plots.failure_rates(rates, tmp_path / "fr.pdf"), tmp_path / "fr.pdf")


def test_arm_bars_points_not_joined(tmp_path):
    arms = {"baseline (seed)": _record({"map_standard": 0.6, "map_seed": 0.55}),
            "anchor proposals from k-means": _record({"map_standard": 0.62, "map_seed": 0.5}),
            "one seed only": _record({"map_standard": 0.4, "map_seed": 0.38}, ci=False, seeds=(0,)),
            "ci missing": {**_record({"map_standard": 0.5, "map_seed": 0.45}), "ci95": {"map_standard": None}}}
    fig = plots.arm_bars(arms, tmp_path / "arms.pdf", title="arms")
    assert fig.get_size_inches()[0] == plots.FULL_WIDTH
    _no_joined_arms(fig, "y")
    ax = fig.axes[0]
    assert ax.get_legend() is None and fig.legends, "legend must sit outside the axes"
    _check(fig, tmp_path / "arms.pdf")


def test_ablation_panels_points_not_joined(tmp_path):
    def rec(d, a, ci=True):
        return _record({"pck_0.05": d, "heatmap_mse": 0.01, "decodings": {"heatmap_argmax": {"pck_0.05": a}}}, ci=ci)

    groups = {"resolution": {"32": rec(0.7, 0.6), "64 (seed)": rec(0.8, 0.7), "128": rec(0.85, 0.8, ci=False)},
              "decoder": {"skip": rec(0.8, 0.7), "no skip": rec(0.75, 0.65)},
              "loss": {"cross-entropy": rec(0.8, 0.7), "MSE (seed)": rec(0.7, 0.6)},
              "sigma": {"1": rec(0.8, 0.7), "2": rec(0.78, 0.69)}}
    fig = plots.ablation_panels(groups, tmp_path / "abl.pdf")
    _no_joined_arms(fig, "x")
    assert all(ax.get_legend() is None for ax in fig.axes) and fig.legends
    _check(fig, tmp_path / "abl.pdf")
    fig = plots.ablation_panels(groups, tmp_path / "abl2.pdf", metric_keys=("pck_0.05",), labels=("PCK",),
                                mse_key="heatmap_mse")
    _no_joined_arms(fig, "x")
    _check(fig, tmp_path / "abl2.pdf")


def test_no_joined_check_catches_lines(tmp_path):
    """The check above fails for points joined across arms."""
    fig, ax = plt.subplots()
    ax.errorbar([0, 1, 2], [0.5, 0.6, 0.7], yerr=0.1, fmt="o-")
    with pytest.raises(AssertionError):
        _no_joined_arms(fig, "x")
    plt.close(fig)


def test_metric_vs_images_draws_every_run_and_dashes_the_doubled(tmp_path):
    def h(steps):
        return History(steps=list(range(steps)), loss=[1.0] * steps, seconds=list(range(steps)),
                       evals=[{"step": s, "seconds": s, "pck_0.05": s / (2 * steps)} for s in (steps // 4, steps // 2, steps)])
    curves = {"heatmap": [h(100), h(100), h(200)], "regression": [h(400).to_dict()]}
    fig = plots.metric_vs_images(curves, 16, "pck_0.05", tmp_path / "mi.pdf", metric_label="validation PCK@0.05", goal=0.9)
    _check(fig, tmp_path / "mi.pdf")
    ax = fig.axes[0]
    lines = [l for l in ax.get_lines() if l.get_linestyle() != ":"]               # all but the dotted goal
    assert len(lines) == 4 and ax.get_xscale() == "log"
    assert [l.get_linestyle() for l in lines] == ["-", "-", "--", "-"]      # the 200-step heatmap run: twice the schedule
    assert lines[0].get_xdata()[-1] == 100 * 16                              # x in training images


# --- layout: text fits whatever the data (labels, titles, tick labels, value labels, legends) -------------------------

def _drawn(fig):
    """The renderer of ``fig``, laid out and drawn once (the checks below change nothing)."""
    if not getattr(fig, "_test_drawn", False):
        fig.draw_without_rendering()
        fig._test_drawn = True
    return fig.canvas.get_renderer()


def _live(t):
    return t.get_visible() and t.get_text().strip()


def _overlap(a, b, tol=0.5):
    """Boxes overlapping by more than ``tol`` pixels in both directions."""
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def _tick_labels(axis):
    """The tick labels an axis draws: major and minor, at ticks inside its view."""
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks),
                        (axis.get_minorticklocs(), axis.get_minor_ticks)):
        out += [tk.label1 for tk, x in zip(ticks(len(locs)), locs)
                if lo - 1e-9 * (hi - lo) <= x <= hi + 1e-9 * (hi - lo) and tk.get_visible() and _live(tk.label1)]
    return out


def _tick_label_clashes(fig):
    """Pairs of tick labels of one axis that overlap: their boxes where level or upright; tilted (parallel boxes),
    where the gap across their slant (spacing x sin(tilt)) is less than their height."""
    r = _drawn(fig)
    clashes = []
    for ax in fig.axes:
        if not (ax.get_visible() and ax.axison):
            continue
        for axis, i in ((ax.xaxis, 0), (ax.yaxis, 1)):
            labels = _tick_labels(axis)
            tilts = {round(t.get_rotation() % 180, 6) for t in labels}
            if tilts <= {0.0, 90.0}:
                boxes = [(t.get_text(), t.get_window_extent(r)) for t in labels]
                clashes += [(a, b) for k, (a, ba) in enumerate(boxes) for b, bb in boxes[k + 1:] if _overlap(ba, bb)]
                continue
            sin = min(abs(math.sin(math.radians(t))) for t in tilts)
            centres = sorted((t.get_window_extent(r).get_points().mean(0)[i], t) for t in labels)
            for (a, ta), (b, tb) in zip(centres, centres[1:]):
                rot = ta.get_rotation()
                ta.set_rotation(0)
                h = ta.get_window_extent(r).height
                ta.set_rotation(rot)
                if (b - a) * sin < h:
                    clashes.append((ta.get_text(), tb.get_text()))
    return clashes


def _overflowing_labels(fig):
    """Y labels taller than their axes (clipped or running into a legend), and titles running into another axes
    (e.g. a colour bar) or another title."""
    r = _drawn(fig)
    bad = []
    shown = [ax for ax in fig.axes if ax.get_visible()]
    for ax in shown:
        box = ax.get_window_extent(r)
        if ax.axison and _live(ax.yaxis.label) and ax.yaxis.label.get_window_extent(r).height > box.height + 1:
            bad.append(("ylabel", ax.yaxis.label.get_text()))
        if _live(ax.title):
            tb = ax.title.get_window_extent(r)
            for other in shown:
                if other is ax or np.allclose(other.get_position().bounds, ax.get_position().bounds):
                    continue                                                   # itself, or its twin
                if _overlap(tb, other.get_window_extent(r)):
                    bad.append(("title over another axes", ax.title.get_text()))
                if _live(other.title) and _overlap(tb, other.title.get_window_extent(r)):
                    bad.append(("title over another title", ax.title.get_text()))
    return bad


def _texts_outside(fig):
    """Drawn texts (labels, titles, tick labels, annotations, legend entries) not wholly inside the figure."""
    r = _drawn(fig)
    fb = fig.bbox
    texts = [t for ax in fig.axes if ax.get_visible()
             for t in [ax.title, *ax.texts] + ([ax.xaxis.label, ax.yaxis.label, *_tick_labels(ax.xaxis),
                                                *_tick_labels(ax.yaxis)] if ax.axison else [])]
    texts += [t for leg in fig.findobj(matplotlib.legend.Legend) for t in leg.get_texts()]
    out = []
    for t in texts:
        if _live(t):
            b = t.get_window_extent(r)
            if b.x0 < fb.x0 - 1 or b.y0 < fb.y0 - 1 or b.x1 > fb.x1 + 1 or b.y1 > fb.y1 + 1:
                out.append(t.get_text())
    return out


def _value_label_clashes(fig):
    """Texts written inside a plot's axes (e.g. a bar's value) that overlap or touch each other (less than 1 pt
    apart), or leave their axes. (Labels of boxes drawn on images, axes off, follow their boxes.)"""
    r = _drawn(fig)
    bad = []
    for ax in fig.axes:
        if not ax.axison:
            continue
        texts = [(t.get_text(), t.get_window_extent(r)) for t in ax.texts if _live(t)]
        bad += [(a, b) for k, (a, ba) in enumerate(texts) for b, bb in texts[k + 1:] if _overlap(ba, bb, -fig.dpi / 72)]
        box = ax.get_window_extent(r)
        bad += [(a, "outside the axes") for a, b in texts if b.y1 > box.y1 + 1 or b.y0 < box.y0 - 1]
    return bad


def _legends_over_data(fig):
    """Legends that cover part of an axes holding data (lines, points, bars, images)."""
    r = _drawn(fig)
    bad = []
    for leg in fig.findobj(matplotlib.legend.Legend):
        lb = leg.get_window_extent(r)
        for ax in fig.axes:
            has_data = ax.lines or ax.collections or ax.patches or ax.images
            if ax.get_visible() and has_data and _overlap(lb, ax.get_window_extent(r)):
                bad.append([t.get_text() for t in leg.get_texts()][:2])
    return bad


def _alike_entries(fig):
    """Legend entries of one legend drawn alike (same colour, line style and marker)."""
    bad = []
    for leg in fig.findobj(matplotlib.legend.Legend):
        seen = {}
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            if isinstance(h, Line2D):
                key = (matplotlib.colors.to_hex(h.get_color()), h.get_linestyle(), h.get_marker())
                if key in seen:
                    bad.append((seen[key], t.get_text()))
                seen[key] = t.get_text()
    return bad


def _layout_ok(fig):
    assert not _tick_label_clashes(fig), _tick_label_clashes(fig)
    assert not _overflowing_labels(fig), _overflowing_labels(fig)
    assert not _texts_outside(fig), _texts_outside(fig)
    assert not _value_label_clashes(fig), _value_label_clashes(fig)
    assert not _legends_over_data(fig), _legends_over_data(fig)


def _history(steps, metric, every=100):
    evals = [{"step": s, "seconds": s * 0.25, metric: 0.5 + 0.4 * s / steps} for s in range(every, steps + 1, every)]
    return History(steps=list(range(steps)), loss=list(np.linspace(1.0, 0.1, steps)), seconds=list(range(steps)),
                   evals=evals)


def test_long_axis_labels_fit_their_axes(tmp_path):
    """The report's training curves (a metric label longer than the axes are tall) and prediction rows (method
    names longer than a row is tall): the labels are wrapped, never clipped or run into the legend or each other."""
    hs = {"heatmap": _history(2000, "pck_0.05"), "regression": _history(4000, "pck_0.05"),
          "integral": _history(2000, "pck_0.05")}
    fig = plots.training_curves(hs, "pck_0.05", tmp_path / "tc.pdf", metric_label="validation PCK@0.05 (heatmap: DARK)",
                                goal=0.95)
    _layout_ok(fig)
    assert [ax.get_ylabel().replace("\n", " ") for ax in fig.axes[1:]] == ["validation PCK@0.05 (heatmap: DARK)"] * 2
    _check(fig, tmp_path / "tc.pdf")
    images, kps = _kp_data(10)
    preds = {m: kps + 2 for m in ("heatmap_dark", "heatmap_argmax", "regression", "integral")}
    fig = plots.keypoint_overlays(images, kps, preds, tmp_path / "ov.png", idx=np.arange(10))
    _layout_ok(fig)
    _check(fig, tmp_path / "ov.png")


def test_titles_clear_of_colour_bars(tmp_path):
    """Objectness maps of a 224-pixel image (titles as wide as their maps) and the confusion matrix (a long title
    beside its colour bar)."""
    images, _, _ = _det_data(1)
    raw = [torch.randn(3 * 8, s, s) for s in (56, 28, 14)]
    fig = plots.objectness_maps(images[0], raw, path=tmp_path / "om.png")
    _layout_ok(fig)
    _check(fig, tmp_path / "om.png")
    fig = plots.confusion([[240, 0, 43, 40], [79, 136, 0, 121], [32, 0, 22, 265]], tmp_path / "cm.pdf")
    _layout_ok(fig)
    _check(fig, tmp_path / "cm.pdf")


def test_tick_labels_never_overlap(tmp_path):
    """Object sizes on a log axis over 15..200 px (the seed's anchors), and failure-rate bins with long names."""
    rng = np.random.default_rng(0)
    sizes = np.exp(rng.uniform(np.log(15), np.log(190), 300))
    fig = plots.anchor_coverage(sizes, rng.integers(0, 3, 300), rng.uniform(0.6, 1, 300),
                                [[16, 24, 32], [48, 64, 96], [96, 128, 192]], tmp_path / "ac.pdf")
    _layout_ok(fig)
    _check(fig, tmp_path / "ac.pdf")


FAILURE_RATES = {
    "hand distance (px)": {"bins": ["<5", "5-10", "10-20", ">20"], "A": [0.092, 0.033, 0.036, 0.014],
                           "B": [0.028, 0.024, 0.018, 0.004], "C": [0.055, 0.038, 0.028, 0.009],
                           "n": [417, 420, 702, 1461]},
    "hand-torso distance (px)": {"bins": ["<2", "2-5", "5-10", ">10"], "A": [0.067, 0.044, 0.031, 0.007],
                                 "B": [0.018, 0.030, 0.010, 0.004], "C": [0.041, 0.031, 0.032, 0.004],
                                 "n": [636, 588, 735, 1041]},
    "pose": {"bins": ["normal", "hands together", "hands on torso"], "A": [0.021, 0.097, 0.061],
             "B": [0.011, 0.034, 0.014], "C": [0.018, 0.079, 0.025], "n": [2367, 279, 354]}}


def test_failure_rates_labels_never_collide(tmp_path):
    """The report's failure rates (similar shares side by side), and more bins than fit side by side at 7 pt."""
    fig = plots.failure_rates(FAILURE_RATES, tmp_path / "fr.pdf")
    _layout_ok(fig)
    _check(fig, tmp_path / "fr.pdf")
    many = {"hand distance (px)": {"bins": [f"{k}-{k + 2}" for k in range(0, 20, 2)], "A": [0.05] * 10,
                                   "B": [0.049] * 10, "C": [0.051] * 10, "n": list(range(1000, 1010))}}
    fig = plots.failure_rates(many, tmp_path / "fr2.pdf")
    _layout_ok(fig)
    _check(fig, tmp_path / "fr2.pdf")


def test_run_curves_legends_beside_the_data_and_every_arm_distinct(tmp_path):
    """Many arms per panel (more than the palette's colours), long arm names: every legend lies outside the axes,
    no two arms of a panel are drawn alike, the figure stays within a page."""
    def runs(i, n=3):
        x = np.arange(1, 11) * 320
        return [(x, 1 - np.exp(-x / (800 + 100 * i)) - 0.01 * s) for s in range(n)]

    long_names = {f"batch 8, 400 steps, setting number {i}, linear decay": runs(i) for i in range(16)}
    panels = {"detector": {"ylabel": "validation mAP@0.5", "goal": 0.85, "ylim": (0, 1), "runs": long_names},
              "heatmap": {"ylabel": "validation PCK@0.05", "goal": 0.95,
                          "runs": {f"lr {i}e-3": runs(i) for i in range(10)}},
              "regression": {"ylabel": "validation PCK@0.05", "goal": None, "runs": {"initial": runs(0, 1)}},
              "ablation": {"ylabel": "validation PCK@0.05", "goal": 0.9, "runs": {"a": runs(1), "b": runs(2)}}}
    fig = plots.run_curves(panels, tmp_path / "rc.pdf")
    _layout_ok(fig)
    assert not _alike_entries(fig), _alike_entries(fig)
    assert len(fig.findobj(matplotlib.legend.Legend)) == len(panels)
    assert fig.get_size_inches()[1] < 9.3
    _check(fig, tmp_path / "rc.pdf")


def test_ablation_mse_named_alike_in_legend_and_axis(tmp_path):
    """The grey MSE points carry one name, in the legend and on their axis (no "test" in one, "val." in the other)."""
    rec = _record({"pck_0.05": 0.9, "heatmap_mse": 0.01, "decodings": {"heatmap_argmax": {"pck_0.05": 0.8}}})
    groups = {"resolution (sigma 2 heatmap px)": {"32": rec, "64": rec, "128": rec},
              "loss": {"cross-entropy": rec, "MSE (seed)": rec}}
    for kwargs in ({}, {"mse_label": "test heatmap MSE"}):
        fig = plots.ablation_panels(groups, tmp_path / "abl.pdf", mse_key="heatmap_mse", **kwargs)
        twins = [ax for ax in fig.axes if ax.get_ylabel() and ax.yaxis.get_label_position() == "right"]
        names = {ax.get_ylabel().replace("\n", " ") for ax in twins}
        entries = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(names) == 1 and names.pop() in entries, (names, entries)
        assert kwargs.get("mse_label", "heatmap MSE") in entries
        _layout_ok(fig)
        _check(fig, tmp_path / "abl.pdf")
