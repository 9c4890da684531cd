"""The one result record (SPEC §7) every headline model and every arm reports, and what is built from it.

A :class:`Record` holds one metric dict per seed and derives the rest: mean, sample std and a 95%
t-interval over seeds for every numeric leaf (scalars, per-class / per-keypoint dicts and lists; a proportion's
interval intersected with [0, 1], :func:`metric_range`),
the plateau verdict from validation histories, and, for an arm, paired differences against its
baseline (seed *s* of the arm minus seed *s* of the baseline, on the same data).

Metric keys have one spelling everywhere (JSON, macros, tables, figures):

- detectors: ``map_standard``, ``map_seed``, ``ap_standard`` / ``ap_seed`` (dicts by class name);
- keypoint models: ``pck_<tau>`` (bbox-diagonal norm), ``pck_torso_<tau>``, ``pck_per_keypoint_<tau>``
  (dict by keypoint name), ``mean_px_error`` — for one *decoding* of
  :data:`hwlib.vision.keypoints.DECODINGS`; a record of a heatmap model keeps its other decodings under
  ``"decodings"`` (see :func:`hwlib.study.keypointing.keypoint_metrics`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hwlib.io import to_jsonable

# two-sided 97.5% quantiles of Student's t (df = 1 .. 30); beyond 30 the normal 1.96 is close enough
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]

PLATEAU_TOL = 0.005   # SPEC §7: reached when the validation metric gains less than this over the last quarter


def t_quantile(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` degrees of freedom (``df >= 1``)."""
    if df < 1:
        raise ValueError(f"a t-interval needs at least 2 values (df >= 1), got df={df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci(values) -> tuple[float, float, tuple[float, float]]:
    """``(mean, sample std, (lo, hi))`` of a 1-D sample: the 95% t-interval of the mean.

    NaNs are dropped; with one value std is 0 and the interval is ``(nan, nan)`` (unknown, not zero)."""
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if len(a) == 0:
        return math.nan, math.nan, (math.nan, math.nan)
    m = float(a.mean())
    if len(a) == 1:
        return m, 0.0, (math.nan, math.nan)
    sd = float(a.std(ddof=1))
    h = t_quantile(len(a) - 1) * sd / math.sqrt(len(a))
    return m, sd, (m - h, m + h)


# Metrics that are proportions (AP, mAP, PCK and its area, recall, shares): their means lie in [0, 1], so their 95%
# intervals are intersected with [0, 1], and the intervals of their paired differences with [-1, 1]. The true mean
# lies in that range, so the intersection covers it exactly as often as the t-interval does; only the printed bounds
# change (an interval of a mean over three seeds near 1 no longer reads "1.038").
PROPORTIONS = ("map_", "ap_", "pck", "recall", "tp_share")


def metric_range(metric: str) -> tuple[float, float]:
    """``(lo, hi)`` of the values a metric can take: ``(0, 1)`` for :data:`PROPORTIONS`, else unbounded."""
    return (0.0, 1.0) if metric.startswith(PROPORTIONS) else (-math.inf, math.inf)


def _clipped(interval, lo: float, hi: float) -> list:
    a, b = interval
    return [a if math.isnan(a) else min(max(a, lo), hi), b if math.isnan(b) else min(max(b, lo), hi)]


def _ranged_leaves(runs: list, fn, rng=(-math.inf, math.inf)):
    """:func:`_leaves` with the range of each leaf's metric passed on (``fn(values, (lo, hi))``): a key that names a
    proportion (:func:`metric_range`) bounds everything beneath it, however deep (``decodings`` -> a decoding ->
    ``pck_0.05``; ``ap_standard`` -> a class)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _ranged_leaves([r[k] for r in runs], fn,
                                  metric_range(k) if isinstance(k, str) and k.startswith(PROPORTIONS) else rng)
                for k in first}
    if isinstance(first, (list, tuple)):
        return [_ranged_leaves([r[i] for r in runs], fn, rng) for i in range(len(first))]
    return _leaves(runs, lambda v: fn(v, rng))


def _leaves(runs: list, fn):
    """Apply ``fn`` to the list of per-seed values of every numeric leaf; keep the nesting of the metrics."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _leaves([r[k] for r in runs], fn) for k in first}
    if isinstance(first, (list, tuple)):
        return [_leaves([r[i] for r in runs], fn) for i in range(len(first))]
    if isinstance(first, bool) or not isinstance(first, (int, float, np.floating, np.integer)):
        raise ValueError(f"metric values must be numbers, dicts or lists, got {type(first).__name__}")
    return fn([float(v) for v in runs])


def plateau(histories: list, metric: str, tol: float = PLATEAU_TOL, of: int | None = None) -> dict:
    """SPEC §7's plateau verdict from validation histories (one per seed; evals of ``{"step", metric}``).

    ``last_gain`` is the largest, over seeds, of the metric's gain from the last evaluation at or
    before 3/4 of the schedule to the final one; the plateau is reached when it is below ``tol``.
    Seeds without at least two evaluations give ``reached: None`` (not measured); ``of``: how many seeds the
    record has, when only some were validated (the criterion says so)."""
    gains = []
    for h in histories:
        ev = [e for e in (h.evals if hasattr(h, "evals") else h["evals"]) if metric in e]
        if len(ev) < 2:
            continue
        last = ev[-1]
        early = [e for e in ev if e["step"] <= 0.75 * last["step"]] or ev[:1]
        gains.append(float(last[metric] - early[-1][metric]))
    criterion = f"gain of validation {metric} over the last quarter of the schedule < {tol:g}"
    if of is not None and of != len(histories):
        criterion += f" (validated seeds: {len(histories)} of {of})"
    if not gains:
        return {"reached": None, "criterion": criterion + " (not measured)", "last_gain": math.nan}
    g = max(gains)
    return {"reached": bool(g < tol), "criterion": criterion, "last_gain": g}


def _final(h, metric: str) -> float:
    ev = [e for e in (h.evals if hasattr(h, "evals") else h["evals"]) if metric in e]
    return float(ev[-1][metric]) if ev else math.nan


def ceiling_plateau(histories: list, doubled: list, metric: str, last_quarter: dict | None = None,
                    tol: float = PLATEAU_TOL) -> dict:
    """The plateau verdict of a ceiling: per seed, the final validation ``metric`` of the run trained for twice the
    schedule (``doubled``, one history per seed, in the order of ``histories``) minus that of the run itself; reached
    when the largest gain over seeds is below ``tol``. A cosine schedule ends flat however far from its ceiling it
    stops; doubling it cannot be satisfied by annealing alone. ``last_quarter``: the run's own :func:`plateau` verdict,
    kept beside it (``last_quarter_gain``).

    Returns:
        ``{"reached", "criterion", "last_gain" (largest doubling gain), "doubling_gains" (per seed),
        "doubled_final" (per seed), "last_quarter_gain"}``; ``reached: None`` where a seed lacks a validation value.
    """
    if len(doubled) != len(histories):
        raise ValueError(f"{len(doubled)} doubled runs for {len(histories)} runs: one per seed")
    gains = [_final(d, metric) - _final(h, metric) for h, d in zip(histories, doubled)]
    criterion = f"doubling the schedule gains less than {tol:g} validation {metric} (largest over seeds)"
    lq = (last_quarter or {}).get("last_gain", math.nan)
    out = {"criterion": criterion, "doubling_gains": gains, "doubled_final": [_final(d, metric) for d in doubled],
           "last_quarter_gain": lq}
    if not gains or any(math.isnan(g) for g in gains):
        return {"reached": None, **out, "criterion": criterion + " (not measured)", "last_gain": math.nan}
    return {"reached": bool(max(gains) < tol), **out, "last_gain": max(gains)}


def _paired_stat(diffs: list, metric: str = "") -> dict:
    """Mean, 95% t-interval and count of per-seed differences of ``metric``; significant when the interval excludes 0.
    The differences of a proportion lie in [-1, 1], and so does their interval (:func:`metric_range`)."""
    m, _, ci = mean_ci([float(d) for d in diffs])
    r = metric_range(metric)[1]
    lo, hi = _clipped(ci, -r, r)
    return {"mean": m, "ci95": [lo, hi], "n": len(diffs), "significant": bool(np.isfinite(lo) and (lo > 0 or hi < 0))}


def value_at_images(history, batch_size: int, images: int, metric: str):
    """A run's validation ``metric`` after ``images`` training images: its last evaluation at or before that many
    (``step * batch_size <= images``); ``None`` when it has none. ``history``: a History or its dict."""
    evals = history["evals"] if isinstance(history, dict) else history.evals
    before = [e for e in evals if metric in e and e["step"] * batch_size <= images]
    return float(before[-1][metric]) if before else None


def claim_verdict(diff: dict, worse_if: str) -> str:
    """A claim "A is worse than B" judged by the paired difference A - B (``{"mean", "ci95"}``, :meth:`Record.paired`):
    ``"yes"`` when the 95% interval lies wholly on the worse side of 0, ``"no"`` when wholly on the other side, and
    ``"not resolved"`` when it contains 0 (or is undefined, one seed). ``worse_if``: ``"lower"`` (a score such as PCK)
    or ``"higher"`` (an error such as MSE)."""
    if worse_if not in ("lower", "higher"):
        raise ValueError(f"worse_if must be 'lower' or 'higher', got {worse_if!r}")
    lo, hi = diff["ci95"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not resolved"
    below, above = hi < 0, lo > 0
    if not (below or above):
        return "not resolved"
    return "yes" if (below if worse_if == "lower" else above) else "no"


@dataclasses.dataclass
class Record:
    """SPEC §7's model record: one metric dict per seed and everything derived from them.

    Args:
        seeds: the training seeds, one per entry of ``per_seed_metrics``.
        per_seed_metrics: list (one per seed) of metric dicts with the same keys; values are numbers,
            dicts of numbers (per class / per keypoint) or lists of numbers.
        train_seconds: training wall-clock seconds per seed (NaN where unknown).
        train_images: training images seen per seed (steps x batch size).
        plateau: :func:`plateau`'s verdict (``None``: not measured).
        setting: for an arm, a short name of the setting it ran at.
        extra: further per-model facts (``params``, ``gflops``, ``infer_ms`` ...), written at the top level.
    """

    seeds: list
    per_seed_metrics: list
    train_seconds: list
    train_images: list
    plateau: dict | None = None
    setting: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    paired_diff: dict | None = None

    def __post_init__(self):
        n = len(self.seeds)
        if n == 0:
            raise ValueError("a record needs at least one seed")
        for name in ("per_seed_metrics", "train_seconds", "train_images"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} seeds")
        keys = set(self.per_seed_metrics[0])
        for m in self.per_seed_metrics[1:]:
            if set(m) != keys:
                raise ValueError(f"every seed must report the same metrics: {sorted(keys)} vs {sorted(m)}")

    # -- derived -------------------------------------------------------------------------------------
    @property
    def per_seed(self) -> dict:
        """``{metric: [value per seed]}`` (dict- and list-valued metrics stay per seed inside the list)."""
        return {k: [m[k] for m in self.per_seed_metrics] for k in self.per_seed_metrics[0]}

    @property
    def mean(self) -> dict:
        return _leaves(self.per_seed_metrics, lambda v: mean_ci(v)[0])

    @property
    def std(self) -> dict:
        return _leaves(self.per_seed_metrics, lambda v: mean_ci(v)[1])

    @property
    def ci95(self) -> dict:
        """95% t-interval of each metric's mean over seeds; a proportion's intersected with [0, 1]
        (:func:`metric_range`)."""
        return _ranged_leaves(self.per_seed_metrics, lambda v, r: _clipped(mean_ci(v)[2], *r))

    def paired(self, baseline: "Record", metrics=None) -> dict:
        """Paired differences ``self - baseline`` over the seeds both have: ``{metric: {"mean", "ci95", "n",
        "significant"}}`` for every scalar metric (or those named); significant = the interval excludes 0. A named
        dict-valued metric (per class, per keypoint) gets one such entry per key: ``{metric: {key: {...}}}``."""
        common = [s for s in self.seeds if s in baseline.seeds]
        if len(common) == 0:
            raise ValueError("an arm and its baseline share no seed: nothing to pair")
        mine = {s: m for s, m in zip(self.seeds, self.per_seed_metrics)}
        base = {s: m for s, m in zip(baseline.seeds, baseline.per_seed_metrics)}
        keys = metrics or [k for k, v in self.per_seed_metrics[0].items()
                           if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)]
        out = {}
        for k in keys:
            if isinstance(mine[common[0]][k], dict):
                out[k] = {sub: _paired_stat([mine[s][k][sub] - base[s][k][sub] for s in common], k)
                          for sub in mine[common[0]][k]}
            else:
                out[k] = _paired_stat([float(mine[s][k]) - float(base[s][k]) for s in common], k)
        return out

    def with_baseline(self, baseline: "Record", metrics=None) -> "Record":
        """This record with ``paired_diff`` against ``baseline`` filled in."""
        return dataclasses.replace(self, paired_diff=self.paired(baseline, metrics))

    def to_json(self) -> dict:
        """The JSON shape of SPEC §7 (plain Python types; NaN stays NaN)."""
        out: dict[str, Any] = {"seeds": list(self.seeds), "per_seed": self.per_seed, "mean": self.mean,
                               "std": self.std, "ci95": self.ci95,
                               "plateau": self.plateau or {"reached": None, "criterion": "not measured",
                                                           "last_gain": math.nan},
                               "train_seconds": list(self.train_seconds), "train_images": list(self.train_images)}
        if self.setting is not None:
            out["setting"] = self.setting
        if self.paired_diff is not None:
            out["paired_diff"] = self.paired_diff
        out.update(self.extra)
        return to_jsonable(out)


def _stat_pair(record, stat: str, metric: str, sub) -> tuple:
    """``(mean, <stat>)`` of one metric of a record (JSON or :class:`Record`), indexed by ``sub`` into dict- or
    list-valued metrics."""
    rec = record.to_json() if isinstance(record, Record) else record
    m, s = rec["mean"][metric], rec[stat][metric]
    for k in sub:
        m, s = m[k], s[k]
    return m, s


def pm(record: dict, metric: str, *sub, digits: int = 3, scale: float = 1.0) -> str:
    """``"0.957 $\\pm$ 0.002"``: a record's (JSON or :class:`Record`) mean and std of one metric, for tables.

    ``sub`` indexes into dict-valued metrics (``pm(r, "ap_standard", "circle")``)."""
    m, s = _stat_pair(record, "std", metric, sub)
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    return f"{m * scale:.{digits}f} $\\pm$ {s * scale:.{digits}f}"


def ci_cell(record: dict, metric: str, *sub, digits: int = 2) -> str:
    """``"0.95 [0.93, 0.97]"``: a record's mean of one metric and its 95% interval over seeds (the mean alone where
    one seed gives no interval). ``sub`` indexes into dict- or list-valued metrics (``ci_cell(r, "tp_share_seed", 0,
    1)``: head S1, medium objects)."""
    m, ci = _stat_pair(record, "ci95", metric, sub)
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    lo, hi = ci
    if lo is None or not np.isfinite(lo):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def diff_cell(record: dict, metric: str, *sub, digits: int = 3) -> str:
    """``"+0.012 [-0.004, 0.028]"`` from an arm's ``paired_diff``; a star marks an interval that excludes 0 as printed
    (``[+0.000, +0.009]`` touches 0 at this precision: no star).
    ``sub`` indexes into a dict-valued metric's differences (``diff_cell(r, "ap_standard", "circle")``)."""
    d = record.get("paired_diff", {}).get(metric)
    for k in sub:
        d = None if d is None else d.get(k)
    if d is None:
        return ""
    lo, hi = d["ci95"]
    if lo is None or not np.isfinite(lo):
        return f"{d['mean']:+.{digits}f}"
    lo_s, hi_s = f"{lo:+.{digits}f}", f"{hi:+.{digits}f}"
    # the star marks an interval that excludes 0 as printed: one that reads "+0.000" at a bound touches 0
    star = "$^*$" if d["significant"] and float(lo_s) != 0 and float(hi_s) != 0 else ""
    return f"{d['mean']:+.{digits}f} [{lo_s}, {hi_s}]{star}"
