"""The result record (SPEC §7): mean, std and t-interval over seeds, paired differences, plateau verdict."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwlib.study.results import Record, ceiling_plateau, claim_verdict, diff_cell, mean_ci, plateau, pm, t_quantile
from hwlib.vision.train import History


def _rec(values, seeds=None, **kw):
    seeds = seeds or list(range(len(values)))
    return Record(seeds, [{"map": v, "ap": {"circle": v / 2}, "tp": [v, 1 - v]} for v in values],
                  [1.0] * len(values), [100] * len(values), **kw)


def test_mean_std_ci_hand_worked():
    # values 1, 2, 3: mean 2, sample std 1, t(2) = 4.303 -> half width 4.303 / sqrt(3)
    m, sd, (lo, hi) = mean_ci([1.0, 2.0, 3.0])
    assert (m, sd) == (2.0, 1.0)
    assert hi - m == pytest.approx(4.303 / math.sqrt(3)) and m - lo == pytest.approx(4.303 / math.sqrt(3))
    m, sd, ci = mean_ci([0.7])
    assert m == 0.7 and sd == 0.0 and all(math.isnan(c) for c in ci), "one seed: interval unknown, not zero"
    assert t_quantile(1) == pytest.approx(12.706) and t_quantile(1000) == pytest.approx(1.96)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=8))
def test_record_leaves_match_numpy(values):
    r = _rec(values).to_json()
    a = np.asarray(values)
    assert r["mean"]["map"] == pytest.approx(a.mean(), abs=1e-12)
    assert r["std"]["map"] == pytest.approx(a.std(ddof=1), abs=1e-12)
    assert r["mean"]["ap"]["circle"] == pytest.approx(a.mean() / 2, abs=1e-12)
    assert r["mean"]["tp"] == pytest.approx([a.mean(), 1 - a.mean()], abs=1e-12)
    lo, hi = r["ci95"]["map"]
    assert lo <= a.mean() + 1e-12 <= hi + 2e-12
    assert r["per_seed"]["map"] == pytest.approx(list(values))


def test_paired_difference_pairs_seed_with_seed():
    base = _rec([0.5, 0.6, 0.7])
    arm = _rec([0.52, 0.621, 0.719])           # +0.020, +0.021, +0.019: always better, by a steady margin
    d = arm.paired(base)["map"]
    assert d["mean"] == pytest.approx(0.02) and d["n"] == 3
    # the paired interval is far tighter than the unpaired one: seeds differ more than arms do
    assert d["significant"] and d["ci95"][0] > 0
    shuffled = _rec([0.719, 0.52, 0.621])      # same values, other seeds: no longer a consistent gain
    assert not shuffled.paired(base)["map"]["significant"]
    with pytest.raises(ValueError, match="no seed"):
        _rec([0.5], seeds=[7]).paired(base)
    cell = diff_cell(arm.with_baseline(base).to_json(), "map")
    assert cell.startswith("+0.020 [") and cell.endswith("$^*$")


def test_paired_difference_per_class_when_named():
    """A named dict-valued metric is paired key by key (seed with seed); unnamed, only scalars are paired."""
    base, arm = _rec([0.5, 0.6, 0.7]), _rec([0.56, 0.62, 0.74])  # ap.circle = map / 2: +0.03, +0.01, +0.02
    assert set(arm.paired(base)) == {"map"}
    d = arm.paired(base, metrics=["map", "ap"])
    assert d["map"]["mean"] == pytest.approx(0.04)
    assert d["ap"]["circle"]["mean"] == pytest.approx(0.02) and d["ap"]["circle"]["n"] == 3
    assert d["ap"]["circle"]["ci95"] == pytest.approx(list(mean_ci([0.03, 0.01, 0.02])[2]))
    cell = diff_cell(arm.with_baseline(base, metrics=["ap"]).to_json(), "ap", "circle")
    assert cell.startswith("+0.020 [") and diff_cell(arm.with_baseline(base).to_json(), "ap", "circle") == ""


def test_record_validates_its_input():
    with pytest.raises(ValueError, match="2 seeds"):
        Record([0, 1], [{"map": 0.1}], [1.0, 1.0], [1, 1])
    with pytest.raises(ValueError, match="same metrics"):
        Record([0, 1], [{"map": 0.1}, {"mAP": 0.1}], [1.0, 1.0], [1, 1])
    with pytest.raises(ValueError, match="numbers"):
        Record([0], [{"map": "high"}], [1.0], [1]).mean


def _hist(values, every=100):
    h = History()
    h.evals = [{"step": every * (i + 1), "seconds": float(i), "m": v} for i, v in enumerate(values)]
    return h


def test_plateau_from_the_last_quarter():
    # 8 evals at steps 100..800: the last quarter starts after step 600 -> gain = v(800) - v(600)
    flat = _hist([0.1, 0.5, 0.7, 0.8, 0.85, 0.9, 0.901, 0.903])
    rising = _hist([0.1, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99])
    assert plateau([flat], "m")["reached"] is True
    assert plateau([flat], "m")["last_gain"] == pytest.approx(0.903 - 0.9)
    p = plateau([flat, rising], "m")
    assert p["reached"] is False and p["last_gain"] == pytest.approx(0.99 - 0.9), "every seed must have plateaued"
    assert plateau([_hist([0.5])], "m")["reached"] is None


def test_pm_formats_mean_and_std():
    r = _rec([0.5, 0.7]).to_json()
    assert pm(r, "map") == f"0.600 $\\pm$ {math.sqrt(0.02):.3f}"
    assert pm(r, "ap", "circle", digits=2) == "0.30 $\\pm$ 0.07"


def test_intervals_of_proportions_stay_in_their_range():
    # 0.93, 0.99, 1.0: mean 0.9733, t-interval (0.879, 1.068) -> (0.879, 1.0); a pixel error keeps its interval
    rec = Record([0, 1, 2], [{"map_standard": v, "ap_standard": {"circle": v}, "mean_px_error": v}
                             for v in (0.93, 0.99, 1.0)], [1.0] * 3, [1] * 3).to_json()
    m, _, (lo, hi) = mean_ci([0.93, 0.99, 1.0])
    assert hi > 1 and rec["ci95"]["map_standard"] == [pytest.approx(lo), 1.0]
    assert rec["ci95"]["ap_standard"]["circle"] == [pytest.approx(lo), 1.0]
    assert rec["ci95"]["mean_px_error"] == [pytest.approx(lo), pytest.approx(hi)]
    # a paired difference of a proportion lies in [-1, 1]; its significance is unchanged by the cut
    # differences -0.2, 1, 1: t-interval (-1.12, 2.32) -> (-1, 1), not significant either way
    base = Record([0, 1, 2], [{"pck_0.05": v} for v in (0.2, 0.0, 0.0)], [1.0] * 3, [1] * 3)
    arm = Record([0, 1, 2], [{"pck_0.05": v} for v in (0.0, 1.0, 1.0)], [1.0] * 3, [1] * 3)
    d = arm.paired(base)["pck_0.05"]
    assert mean_ci([-0.2, 1.0, 1.0])[2][0] < -1 and d["ci95"] == [-1.0, 1.0] and not d["significant"]


def test_ceiling_plateau_is_the_gain_of_doubling_the_schedule():
    def h(*vals):
        return {"evals": [{"step": 100 * (i + 1), "map_standard": v} for i, v in enumerate(vals)]}

    # a run that annealed flat (last quarter +0.001) but gains 0.02 from twice the schedule: no ceiling
    runs = [h(0.70, 0.85, 0.900, 0.901), h(0.70, 0.86, 0.910, 0.912)]        # last quarters +0.001, +0.002
    twice = [h(0.85, 0.921), h(0.80, 0.915)]                                  # doubling: +0.020, +0.003
    lq = plateau(runs, "map_standard")
    v = ceiling_plateau(runs, twice, "map_standard", lq)
    assert lq["reached"] and not v["reached"]
    assert v["doubling_gains"] == pytest.approx([0.02, 0.003]) and v["last_gain"] == pytest.approx(0.02)
    assert v["last_quarter_gain"] == lq["last_gain"] and "doubling" in v["criterion"]
    # every seed gains less than 0.005 from doubling: reached (a loss counts as no gain)
    assert ceiling_plateau(runs, [h(0.904), h(0.90)], "map_standard")["reached"]
    assert ceiling_plateau(runs, [h(0.904), {"evals": []}], "map_standard")["reached"] is None
    with pytest.raises(ValueError, match="one per seed"):
        ceiling_plateau(runs, [h(0.9)], "map_standard")


def test_nested_proportions_are_bounded_too():
    per = [{"decodings": {"argmax": {"pck_0.05": v, "mean_px_error": v}}, "subsets": {"hidden": {"pck_0.05": v}}}
           for v in (0.99, 1.0, 0.97)]
    ci = Record([0, 1, 2], per, [1.0] * 3, [1] * 3).to_json()["ci95"]
    assert ci["decodings"]["argmax"]["pck_0.05"][1] == 1.0 and ci["subsets"]["hidden"]["pck_0.05"][1] == 1.0
    assert ci["decodings"]["argmax"]["mean_px_error"][1] > 1.0                # not a proportion: left as it is


def test_claim_verdict_reads_the_interval_not_the_mean():
    d = lambda lo, hi: {"mean": (lo + hi) / 2, "ci95": [lo, hi]}  # noqa: E731
    assert claim_verdict(d(-0.05, -0.01), "lower") == "yes"          # PCK lower, interval below 0: worse
    assert claim_verdict(d(0.01, 0.05), "lower") == "no"
    assert claim_verdict(d(-0.418, 0.277), "lower") == "not resolved"  # the mean is negative, the interval holds 0
    assert claim_verdict(d(0.01, 0.05), "higher") == "yes"           # MSE higher: worse
    assert claim_verdict(d(-0.05, -0.01), "higher") == "no"
    assert claim_verdict(d(float("nan"), float("nan")), "lower") == "not resolved"
    with pytest.raises(ValueError):
        claim_verdict(d(0, 1), "worse")
    # from a real pairing: three seeds, every difference -0.1 +- tiny noise
    a = Record([0, 1, 2], [{"pck": 0.8}, {"pck": 0.81}, {"pck": 0.79}], [1.0] * 3, [1] * 3)
    b = Record([0, 1, 2], [{"pck": 0.9}, {"pck": 0.905}, {"pck": 0.895}], [1.0] * 3, [1] * 3)
    assert claim_verdict(a.paired(b)["pck"], "lower") == "yes"


def test_value_at_images_takes_the_last_evaluation_not_past_it():
    from hwlib.study.results import value_at_images

    h = {"evals": [{"step": 10, "pck": 0.1}, {"step": 20, "pck": 0.5}, {"step": 40, "pck": 0.9}]}
    assert value_at_images(h, 8, 160, "pck") == 0.5          # 20 steps x 8 = 160 images: that evaluation
    assert value_at_images(h, 8, 319, "pck") == 0.5          # 40 x 8 = 320 > 319
    assert value_at_images(h, 8, 79, "pck") is None          # nothing yet
    assert value_at_images(h, 8, 10_000, "other") is None


def test_diff_cell_stars_only_an_interval_that_excludes_0_as_printed():
    cell = lambda lo, hi: diff_cell({"paired_diff": {"m": {"mean": (lo + hi) / 2, "ci95": [lo, hi],  # noqa: E731
                                                            "significant": lo > 0 or hi < 0}}}, "m")
    assert cell(0.0004, 0.0094) == "+0.005 [+0.000, +0.009]"          # excludes 0, but reads as touching it
    assert cell(0.0006, 0.0094) == "+0.005 [+0.001, +0.009]$^*$"
    assert cell(-0.0094, -0.0004) == "-0.005 [-0.009, -0.000]"
    assert cell(-0.004, 0.010) == "+0.003 [-0.004, +0.010]"
