"""Failure analysis of notebook 06: heatmap (DARK) against regression and integral regression, every seed.

Each keypoint of each held-out figure is of type A (heatmap right, the other model wrong), B (the other
right, heatmap wrong), C (both wrong) or ok (both right) at a normalized-error threshold ``tau``
(:func:`hwlib.vision.analysis.failure_types`). Counts are made for every seed (heatmap seed ``s`` against the
other method's seed ``s``) and summarized as mean and sample std over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwlib.config import KEYPOINT_NAMES
from hwlib.vision.analysis import failure_types, rates_by_attribute

TYPES = ("A", "B", "C")
REFERENCE = "heatmap"
KEYPOINT_ABBREV = {"head": "H", "left_hand": "LH", "right_hand": "RH", "left_foot": "LF", "right_foot": "RF"}

# per-figure attributes of the rates figures: (meta key, bin edges, bin labels), as in the seed's notebook
ATTRIBUTES = {
    "hand distance (px)": ("hand_distance", [5, 10, 20], ["<5", "5-10", "10-20", ">20"]),
    "hand-torso distance (px)": ("hand_torso_distance", [2, 5, 10], ["<2", "2-5", "5-10", ">10"]),
    "pose": ("hard", [1, 2], ["normal", "hands together", "hands on torso"]),
}


# ----------------------------------------------------------------------------- pure counting
def count_types(types_per_seed: list[dict]) -> dict:
    """Count failure types for each seed, per keypoint and per figure, and summarize over seeds.

    A keypoint is counted once, as its own type. A *figure* counts as type X when **any** of its keypoints
    is of type X, so one figure can count as A and as C at once (the per-figure counts of A, B and C need not
    add up to the number of figures); ``"none"`` counts the figures with no keypoint of type A, B or C.

    Args:
        types_per_seed (list[dict]): one :func:`hwlib.vision.analysis.failure_types` result per seed:
            ``{"A", "B", "C", "ok": bool array [N, K]}``.

    Returns:
        dict: ``"per_seed"``: a list (one per seed) of ``{"keypoints": {A, B, C, ok: int},
        "per_keypoint": {A, B, C: [K] int}, "figures": {A, B, C, none: int}}``; ``"mean"`` and ``"std"``
        (sample std, ddof=1; 0 for one seed) of the same nested counts as floats; ``"seeds"``: number of seeds.
    """
    if not types_per_seed:
        raise ValueError("count_types needs at least one seed")
    per_seed = []
    for t in types_per_seed:
        failed = np.zeros_like(np.asarray(t["A"], dtype=bool))
        for k in TYPES:
            failed |= np.asarray(t[k], dtype=bool)
        per_seed.append({
            "keypoints": {k: int(np.asarray(t[k]).sum()) for k in (*TYPES, "ok")},
            "per_keypoint": {k: np.asarray(t[k]).sum(0).astype(int).tolist() for k in TYPES},
            "figures": {**{k: int(np.asarray(t[k]).any(1).sum()) for k in TYPES}, "none": int((~failed.any(1)).sum())},
        })

    def reduce(fn, path):
        def get(r):
            for p in path:
                r = r[p]
            return r
        a = np.asarray([get(r) for r in per_seed], dtype=float)
        return fn(a).tolist()

    def summary(fn):
        return {group: {k: reduce(fn, (group, k)) for k in per_seed[0][group]} for group in per_seed[0]}

    std = (lambda a: a.std(0, ddof=1)) if len(per_seed) > 1 else (lambda a: np.zeros_like(a[0]))
    return {"per_seed": per_seed, "mean": summary(lambda a: a.mean(0)), "std": summary(std), "seeds": len(per_seed)}


def pool_types(types_per_seed: list[dict]) -> dict:
    """Concatenate per-seed failure types along the figure axis: ``{type: bool [S * N, K]}``."""
    return {k: np.concatenate([np.asarray(t[k]) for t in types_per_seed]) for k in types_per_seed[0]}


def attribute_rates(types_per_seed: list[dict], meta: dict, keypoints=(1, 2)) -> dict:
    """:func:`hwlib.vision.analysis.rates_by_attribute` for each attribute of :data:`ATTRIBUTES`, over all seeds
    pooled (the same figures once per seed, so the ``"n"`` of a bin is seeds x figures)."""
    pooled = pool_types(types_per_seed)
    reps = len(types_per_seed)
    return {label: rates_by_attribute(pooled, np.tile(np.asarray(meta[key]), reps), edges, bins, keypoints)
            for label, (key, edges, bins) in ATTRIBUTES.items()}


# ----------------------------------------------------------------------------- models -> types
# bins of the share of the right hand's knob that is drawn on top (meta ``hand_knob_visible``, hwlib.vision.data)
KNOB_BINS = ([0.25, 0.5, 0.75], ["under_25", "25_to_50", "50_to_75", "over_75"])


def right_hand_by_knob_visible(types_per_seed: list[dict], visible, bins=KNOB_BINS) -> dict:
    """The heatmap model's right hand against how much of its knob shows.

    Args:
        types_per_seed: :func:`hwlib.vision.analysis.failure_types` results (heatmap against any other method), one per
            seed: the heatmap is right on a keypoint of type ``ok`` or ``A``.
        visible: float ``[N]``, the share of each figure's right-hand knob drawn on top (``hand_knob_visible[:, 1]``).
        bins: ``(edges, names)``: a share ``v`` falls in bin ``i`` when ``edges[i - 1] <= v < edges[i]``.

    Returns:
        ``{bin name: {"figures": int, "heatmap_pck": mean over seeds of the share of right hands the heatmap gets
        right (NaN for an empty bin), "heatmap_pck_std": sample std over seeds}}``.
    """
    edges, names = bins
    k = KEYPOINT_NAMES.index("right_hand")
    which = np.digitize(np.asarray(visible), edges)
    right = [~(np.asarray(t["B"], dtype=bool) | np.asarray(t["C"], dtype=bool))[:, k] for t in types_per_seed]
    out = {}
    for i, name in enumerate(names):
        m = which == i
        vals = np.array([r[m].mean() if m.any() else np.nan for r in right])
        out[name] = {"figures": int(m.sum()), "heatmap_pck": float(vals.mean()),
                     "heatmap_pck_std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out


@dataclass
class FailureAnalysis:
    """Result of :func:`failure_analysis`.

    Attributes:
        tau: the threshold (normalized error).
        seeds: the seeds evaluated.
        n_samples: test figures per seed.
        types: ``{other method: [failure_types per seed]}`` (bool ``[N, K]`` arrays).
        counts: ``{other method: count_types(...)}``.
        rates: ``{other method: attribute_rates(...)}`` (seeds pooled).
        predictions: seed 0's headline predictions ``{method: Tensor[N, K, 2]}`` (pixels), for galleries.
        decodings: the headline decoding of each method.
        right_hand_knob: :func:`right_hand_by_knob_visible` of the test figures (heatmap, every seed).
    """

    tau: float
    seeds: list
    n_samples: int
    types: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    decodings: dict = field(default_factory=dict)
    right_hand_knob: dict = field(default_factory=dict)

    def facts(self) -> str:
        """Machine-independent facts (what nbval checks): sizes, the types found, and whether every keypoint
        of every seed is of exactly one type."""
        lines = [f"seeds {list(self.seeds)}, test figures {self.n_samples}, tau {self.tau}, "
                 f"decodings {self.decodings}"]
        for other, per_seed in self.types.items():
            shapes = {tuple(np.asarray(t["A"]).shape) for t in per_seed}
            exact = all((sum(np.asarray(t[k], dtype=int) for k in t) == 1).all() for t in per_seed)
            lines.append(f"heatmap vs {other}: types {list(per_seed[0])}, shape per seed {sorted(shapes)}; "
                         f"each keypoint of every seed in exactly one type: {exact}")
        return "\n".join(lines)

    def results(self) -> dict:
        """The JSON of notebook 06 (keys used by the report's ``\\Fail*`` macros, plus the per-seed detail)."""
        c = self.counts
        return {
            "tau": self.tau, "n_samples": self.n_samples, "eval_split": "test", "seeds": len(self.seeds),
            "counts": {o: c[o]["mean"]["keypoints"] for o in c},
            "counts_std": {o: c[o]["std"]["keypoints"] for o in c},
            "counts_per_keypoint": {o: c[o]["mean"]["per_keypoint"] for o in c},
            "counts_per_keypoint_std": {o: c[o]["std"]["per_keypoint"] for o in c},
            "counts_per_figure": {o: c[o]["mean"]["figures"] for o in c},
            "counts_per_figure_std": {o: c[o]["std"]["figures"] for o in c},
            "counts_per_seed": {o: c[o]["per_seed"] for o in c},
            "rates": self.rates,
            "right_hand_by_knob_visible": self.right_hand_knob,
        }


def failure_analysis(predictions: dict, seeds, n: int = 1000, data_seed: int | None = None, tau: float = 0.05,
                     hard_fraction: float = 0.2, methods=("heatmap", "regression", "integral")) -> FailureAnalysis:
    """Classify failures of every seed's headline predictions on the test figures.

    For every seed ``s``, the first method's (the heatmap's) predictions of seed ``s`` are compared with each other
    method's of seed ``s`` through :func:`hwlib.vision.analysis.failure_types`.

    Args:
        predictions: ``{decoding: [Tensor[N, K, 2] per seed]}`` (x, y) image px, as
            :func:`hwlib.study.arms.run_keypoint_methods` returns them (``Runs.extra["predictions"]``, read from the
            run store); each method's headline decoding (:func:`hwlib.vision.keypoints.headline_decoding`) is used.
        seeds (iterable[int]): the training seeds, one per entry of each list.
        n (int): number of test figures.
        data_seed (int, optional): seed of the test figures; default :data:`hwlib.study.splits.TEST_SEED`.
        tau (float): normalized-error threshold of a correct keypoint.
        hard_fraction (float): share of hard poses among the test figures.
        methods (tuple[str]): the reference method first, then the methods it is compared with.

    Returns:
        FailureAnalysis: per-seed types and counts (per keypoint and per figure; a figure counts as type
        X if any of its keypoints is type X), mean and std over seeds, attribute rates over all seeds
        pooled, and the first seed's predictions. The test figures are not stored: rebuild them with
        :func:`hwlib.study.splits.keypoint_data` ``(n, data_seed, hard_fraction)``.

    Raises:
        ValueError: a method's headline decoding is missing, or a list's length is not the number of seeds.
    """
    from hwlib.study.splits import TEST_SEED, keypoint_data
    from hwlib.vision.keypoints import headline_decoding
    from hwlib.vision.metrics import keypoint_errors

    data_seed = TEST_SEED if data_seed is None else data_seed
    seeds = list(seeds)
    images, kps, meta = keypoint_data(n, data_seed, hard_fraction)
    ref, others = methods[0], methods[1:]
    out = FailureAnalysis(tau=tau, seeds=seeds, n_samples=len(images),
                          decodings={m: headline_decoding(m) for m in methods})
    for m, d in out.decodings.items():
        if len(predictions.get(d, [])) != len(seeds):
            raise ValueError(f"failure analysis needs {len(seeds)} seeds of {m}'s {d} predictions, "
                             f"got {len(predictions.get(d, []))}")
    types = {o: [] for o in others}
    for i, seed in enumerate(seeds):
        err = {m: keypoint_errors(predictions[d][i], kps).numpy() for m, d in out.decodings.items()}
        if i == 0:
            out.predictions = {m: predictions[d][0] for m, d in out.decodings.items()}
        for o in others:
            types[o].append(failure_types(err[ref], err[o], tau))
    out.types = types
    out.counts = {o: count_types(types[o]) for o in others}
    out.rates = {o: attribute_rates(types[o], meta) for o in others}
    out.right_hand_knob = right_hand_by_knob_visible(types[others[0]], meta["hand_knob_visible"][:, 1])
    return out


def table_rows(result: FailureAnalysis) -> tuple[list, list]:
    """Header and rows of the failure table: per comparison and type, mean $\\pm$ std over seeds of the
    keypoint count, per figure, and per keypoint."""
    header = ["comparison", "type", "keypoints", "figures", *[n.replace("_", " ") for n in KEYPOINT_NAMES]]
    rows = []
    pm = lambda m, s: f"{m:.1f} $\\pm$ {s:.1f}" if result.counts and len(result.seeds) > 1 else f"{m:.0f}"  # noqa: E731
    for o, c in result.counts.items():
        if rows:
            rows.append("midrule")
        mean, std = c["mean"], c["std"]
        for k in TYPES:
            rows.append([f"vs {o}", k, pm(mean["keypoints"][k], std["keypoints"][k]),
                         pm(mean["figures"][k], std["figures"][k]), *[f"{v:.1f}" for v in mean["per_keypoint"][k]]])
        rows.append([f"vs {o}", "none", "", pm(mean["figures"]["none"], std["figures"]["none"]),
                     *[""] * len(KEYPOINT_NAMES)])
    return header, rows


# ----------------------------------------------------------------------------- figures
def failure_gallery(images, gt, preds_by_model: dict, types: dict, kind: str, path=None, n: int = 8):
    """Up to ``n`` figures with a keypoint of type ``kind``: one row per model, one column per figure.

    Ground truth is drawn as green circles; each model's predictions as crosses (first model red, second
    blue) joined to the ground truth by dashed error lines; the keypoints of type ``kind`` are ringed in
    orange and named above the column (H head, LH/RH hands, LF/RF feet). With no such figure, the saved
    figure says so. 6.3 in wide, fonts of 7 pt and more; saved with :func:`hwlib.study.report.save_figure`.

    Args:
        images: ``Tensor[N, 1, 128, 128]`` in [0, 1]. gt: ``Tensor[N, K, 2]`` pixels.
        preds_by_model (dict): ``{row label: Tensor[N, K, 2]}``.
        types (dict): one :func:`hwlib.vision.analysis.failure_types` result (bool ``[N, K]``).
        kind (str): ``"A"``, ``"B"`` or ``"C"``.
    """
    import matplotlib.pyplot as plt

    from hwlib.study.report import save_figure

    mask = np.asarray(types[kind], dtype=bool)
    idx = np.flatnonzero(mask.any(1))[:n]
    colours = ("red", "tab:blue", "tab:purple")
    if len(idx) == 0:
        fig, ax = plt.subplots(figsize=(6.3, 0.8), layout="constrained")
        ax.axis("off")
        ax.text(0.5, 0.5, f"no figure with a type {kind} keypoint", ha="center", va="center", fontsize=9)
    else:
        cols = n
        fig, axes = plt.subplots(len(preds_by_model), cols, figsize=(6.3, 0.95 * len(preds_by_model) + 0.3),
                                 squeeze=False, layout="constrained")
        for ax in axes.flat:
            ax.axis("off")
        for r, (name, p) in enumerate(preds_by_model.items()):
            for c, i in enumerate(idx):
                ax = axes[r, c]
                ax.axis("on")
                ax.imshow(np.asarray(images[i, 0]), cmap="gray", vmin=0, vmax=1, extent=(0, 128, 128, 0))
                g, q = np.asarray(gt[i]), np.asarray(p[i])
                for k in range(len(g)):
                    ax.plot([g[k, 0], q[k, 0]], [g[k, 1], q[k, 1]], ls="--", color=colours[r % 3], lw=0.7)
                bad = mask[i]
                ax.scatter(g[bad, 0], g[bad, 1], s=90, facecolors="none", edgecolors="orange", linewidths=1.2)
                ax.scatter(g[:, 0], g[:, 1], s=14, facecolors="none", edgecolors="lime", linewidths=0.9)
                ax.scatter(q[:, 0], q[:, 1], s=14, c=colours[r % 3], marker="x", linewidths=0.9)
                ax.set_xlim(0, 128)
                ax.set_ylim(128, 0)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    names = ",".join(KEYPOINT_ABBREV.get(KEYPOINT_NAMES[k], str(k)) for k in np.flatnonzero(bad))
                    ax.set_title(f"#{i} {names}", fontsize=7, pad=2)
                if c == 0:
                    ax.set_ylabel(name.replace("_", " "), fontsize=7)
        fig.suptitle(f"type {kind} (ringed and named above: the keypoints of type {kind}; green circles ground truth, "
                     "crosses predictions)", fontsize=7)
    if path is not None:
        save_figure(fig, path)
    return fig


def failure_galleries(result: FailureAnalysis, images, gt, figures_dir, other: str = "regression", n: int = 8,
                      prefix: str = "06_gallery") -> dict:
    """The three galleries ``<prefix>_A.png``, ``_B.png``, ``_C.png`` of heatmap against ``other`` with
    seed 0's predictions (see :func:`failure_gallery`). Returns ``{kind: number of figures of that type}``."""
    ref = next(iter(result.predictions))
    preds = {f"{ref} ({result.decodings[ref].replace('heatmap_', '').upper()})" if ref == "heatmap" else ref:
             result.predictions[ref], other: result.predictions[other]}
    t0 = result.types[other][0]
    out = {}
    for kind in TYPES:
        failure_gallery(images, gt, preds, t0, kind, Path(figures_dir) / f"{prefix}_{kind}.png", n=n)
        out[kind] = int(np.asarray(t0[kind]).any(1).sum())
    return out
