"""The report's tables, built from result records (SPEC §7): ``(header, rows)`` for
:func:`hwlib.study.report.write_table`. A row is a list of cells (the first a plain-text label) or ``"midrule"``.

Every cell of a record's metric is ``mean ± std`` over its seeds (:func:`hwlib.study.results.pm`); an arm's
paired difference against its baseline is ``mean [95% CI]`` (:func:`hwlib.study.results.diff_cell`).
"""

from __future__ import annotations

from hwlib.config import CLASS_NAMES, KEYPOINT_NAMES
from hwlib.study.names import model_name, protocol_name
from hwlib.study.results import ci_cell, diff_cell, pm
from hwlib.vision.keypoints import DECODINGS

TAUS = ("0.05", "0.1", "0.15", "0.2")


def _n(record) -> str:
    return f" ({len(record['seeds'])} seed{'s' if len(record['seeds']) != 1 else ''})"


def ap_table(models: dict, seed_results: dict):
    """Per-class AP and mAP@0.5 of the two networks under both protocols, the original study's row first.

    ``models``: ``{name: record}`` with ``ap_standard`` / ``ap_seed`` dicts and ``map_*``."""
    sd = seed_results["detector"]
    rows = [["original study, original protocol", *[f"{sd['ap'][n]:.3f}" for n in CLASS_NAMES], f"{sd['map']:.3f}"], "midrule"]
    for name, r in models.items():
        for proto in ("seed", "standard"):
            rows.append([f"{model_name(name)}{_n(r)}, {protocol_name(proto)}",
                         *[pm(r, f"ap_{proto}", n) for n in CLASS_NAMES], pm(r, f"map_{proto}")])
    return ["", *CLASS_NAMES, "mAP@0.5"], rows


def head_size_table(record: dict, n_gt, seed_tp, buckets):
    """The head x size-bucket table over seeds: each head's true positives under the original protocol as a share of
    each size bucket's ground truth, mean [95% CI] over the record's seeds (:func:`~hwlib.study.results.ci_cell`),
    beside the original study's counts; recall per bucket under both protocols, mean [95% CI].

    ``record``: a detector record (``tp_share_seed`` ``[3 heads][3 buckets]``, ``recall_seed`` / ``recall_standard``
    ``[3 buckets]``); ``n_gt``: ground-truth objects per bucket of the test images; ``seed_tp``: the original counts."""
    rows = [[f"S{h + 1}", *[ci_cell(record, "tp_share_seed", h, b) for b in range(3)], *[str(v) for v in seed_tp[h]]]
            for h in range(3)]
    rows += ["midrule",
             ["recall (conf >= 0.5)", *[ci_cell(record, "recall_seed", b) for b in range(3)], "", "", ""],
             ["recall (conf >= 0.001)", *[ci_cell(record, "recall_standard", b) for b in range(3)], "", "", ""],
             ["GT objects", *[str(int(v)) for v in n_gt], "", "", ""]]
    n = len(record["seeds"])
    return ["head", *[f"ours {b} ({n} seed{'s' if n != 1 else ''})" for b in buckets],
            *[f"original {b} (count)" for b in buckets]], rows


def arms_table(arms: dict, headline: dict | None = None, headline_label: str = ""):
    """Detector arms: AP per class and mAP (mean ± std) and the paired difference in standard-protocol mAP
    against the baseline (mean [95% CI], * where the interval excludes 0); optional headline row."""
    def row(name, r):
        return [model_name(name) + _n(r), *[pm(r, "ap_standard", n) for n in CLASS_NAMES], pm(r, "map_standard"),
                pm(r, "map_seed"), diff_cell(r, "map_standard")]

    rows = [row(name, r) for name, r in arms.items()]
    if headline is not None:
        rows += ["midrule", row(headline_label, headline)]
    return ["arm", *[f"AP {n}" for n in CLASS_NAMES], "mAP std.", "mAP orig.", "$\\Delta$ mAP std. [95\\% CI]"], rows


def tp_share_table(arms: dict):
    """Each arm's true positives under the original protocol by head, as shares of each size bucket's ground truth
    (mean over seeds): ``S1 s/m/l | S2 s/m/l | S3 s/m/l``."""
    rows = [[model_name(name), *[" / ".join(f"{v:.2f}" for v in row) for row in r["mean"]["tp_share_seed"]]]
            for name, r in arms.items()]
    return ["arm", "S1 (s/m/l)", "S2 (s/m/l)", "S3 (s/m/l)"], rows


def positives_table(positives: dict, buckets):
    """Positives per image of each head under each assignment (anchor set, rule): rows ``{label: [3 heads][3 size
    buckets]}`` (:func:`hwlib.vision.analysis.assignment_statistics`, ``by="size"``); columns S1, S2, S3 (all objects)
    and, for the medium objects the seed says S2 and S3 contend for, the positives each of S2 and S3 takes."""
    rows = []
    for label, m in positives.items():
        rows.append([label, *[f"{sum(m[h]):.1f}" for h in range(3)], f"{m[1][1]:.1f}", f"{m[2][1]:.1f}"])
    return ["assignment", "S1", "S2", "S3", f"S2 from {buckets[1]}", f"S3 from {buckets[1]}"], rows


def positive_scores_table(diagnosis: dict):
    """How trained detectors treat their own positive anchors: rows ``{label: positive_anchor_scores result}``
    (:func:`hwlib.vision.analysis.positive_anchor_scores`, all classes); columns positives per object, the positives' median
    IoU with their object (and, in parentheses, that of their prior box: the anchor centred in its cell), their median
    probability of the right class and objectness, and the median score and rank (boxes of the image that score
    higher) of each object's best positive, beside the median of each image's top score."""
    f = lambda v, fmt: "--" if v is None else format(v, fmt)  # noqa: E731
    rows = []
    for label, d in diagnosis.items():
        a = d["all"]
        rows.append([label, f(a["positives"] / max(a["objects"], 1), ".1f"),
                     f"{f(a['iou'], '.2f')} ({f(a['prior_iou'], '.2f')})", f(a["class_prob"], ".2f"),
                     f(a["objectness"], ".2g"), f(a["object_score"], ".2g"), f(a["object_rank"], "d"),
                     f(d["image_top_score"], ".2g")])
    return ["arm", "positives per object", "IoU (prior)", "class prob.", "objectness", "object's score", "its rank",
            "top score"], rows


def pck_table(methods: dict, seed_results: dict):
    """PCK at the four thresholds (bbox norm) of every decoding of every method (mean ± std over seeds),
    and the original study's published figures."""
    rows = []
    for name, d in DECODINGS.items():
        r = methods.get(d.method)
        if r is None:
            continue
        sub = () if name == _headline(d.method) else ("decodings", name)
        rows.append([name.replace("_", " ") + _n(r), *[_pm_path(r, sub, f"pck_{t}") for t in TAUS]])
    sk = seed_results["keypoints"]
    rows += ["midrule",
             ["original study: heatmap", f"{sk['heatmap']['0.05']:.2f}", "", "", f"{sk['heatmap']['0.2']:.2f}"],
             ["original study: regression", f"{sk['regression']['0.05']:.2f}", "", "", f"{sk['regression']['0.2']:.2f}"]]
    return ["method", *[f"PCK@{t}" for t in TAUS]], rows


def per_keypoint_table(methods: dict):
    """PCK@0.05 of every keypoint and the mean error in pixels, every decoding (means over seeds)."""
    rows = []
    for name, d in DECODINGS.items():
        r = methods.get(d.method)
        if r is None:
            continue
        m = r["mean"] if name == _headline(d.method) else r["mean"]["decodings"][name]
        rows.append([name.replace("_", " "), *[f"{m['pck_per_keypoint_0.05'][k]:.3f}" for k in KEYPOINT_NAMES],
                     f"{m['mean_px_error']:.2f}"])
    return ["method", *[n.replace("_", " ") for n in KEYPOINT_NAMES], "mean error (px)"], rows


def ablation_table(arms: dict):
    """Heatmap ablation arms: seeds, PCK@0.05 with DARK and argmax, PCK@0.2 DARK, the original study's heatmap MSE
    (x 1000), and the paired difference in PCK@0.05 DARK against the baseline arm. Two-line headers and a
    seeds column keep it narrow enough to print at its font size."""
    rows = [[model_name(name), str(len(r["seeds"])), pm(r, "pck_0.05"), _pm_path(r, ("decodings", "heatmap_argmax"), "pck_0.05"),
             pm(r, "pck_0.2"), pm(r, "heatmap_mse", scale=1e3), diff_cell(r, "pck_0.05")] for name, r in arms.items()]
    # two lines of equal height (struts), the second braced: "\\\\[" would read "[" as a length
    two = lambda a, b: f"\\shortstack{{\\strut {a}\\\\{{\\strut {b}}}}}"   # noqa: E731
    return ["arm", "seeds", two("PCK@0.05", "DARK"), two("PCK@0.05", "argmax"), two("PCK@0.2", "DARK"),
            two("MSE", "$\\times 10^3$"), two("$\\Delta$ PCK@0.05 DARK", "[95\\% CI]")], rows


def decoding_arms_table(arms: dict):
    """The original study's decoding-only proposals re-decoding trained models (no training): mAP under the original
    protocol
    and the standard one (mean ± std) and each one's paired difference against the same models decoded as
    usual (mean [95% CI], * where the interval excludes 0). ``arms``: ``{"<model>, <proposal>": record}``."""
    rows = []
    for name, r in arms.items():
        model, _, proposal = name.partition(", ")
        rows.append([f"{model_name(model)}: {proposal}", str(len(r["seeds"])), pm(r, "map_seed"),
                     diff_cell(r, "map_seed"), pm(r, "map_standard"), diff_cell(r, "map_standard")])
    return ["model: decoding", "seeds", "mAP orig. prot.", "$\\Delta$ [95\\% CI]", "mAP std.",
            "$\\Delta$ [95\\% CI]"], rows


def subset_table(methods: dict, subset: str):
    """PCK@0.05 of each method's headline decoding on all test figures, on those in ``subset`` (e.g.
    ``"hand_under_brighter"``) and on the others, and the right hand's PCK@0.05 on each (means over seeds)."""
    rows = []
    for method, r in methods.items():
        sub = r["mean"]["subsets"]
        a, b = sub[subset], sub["not_" + subset]
        rows.append([f"{method} ({_headline(method).replace('_', ' ')})", f"{r['mean']['pck_0.05']:.3f}",
                     f"{a['pck_0.05']:.3f}", f"{b['pck_0.05']:.3f}",
                     f"{a['pck_per_keypoint_0.05']['right_hand']:.3f}", f"{b['pck_per_keypoint_0.05']['right_hand']:.3f}"])
    return ["method", "all", "in subset", "others", "right hand, in subset", "right hand, others"], rows


def _headline(method: str) -> str:
    from hwlib.vision.keypoints import headline_decoding

    return headline_decoding(method)


def _pm_path(record: dict, sub: tuple, metric: str) -> str:
    """:func:`pm` of a metric nested under ``sub`` (e.g. ``("decodings", "heatmap_argmax")``)."""
    if not sub:
        return pm(record, metric)
    mean, std = record["mean"], record["std"]
    for k in sub:
        mean, std = mean[k], std[k]
    return pm({"mean": mean, "std": std}, metric)
