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
