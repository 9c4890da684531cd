"""hwlib.study.failures: counting of failure types per keypoint and per figure over seeds (hand-worked cases and
brute-force loops), the seed loop of failure_analysis with fake models, the table and the gallery figure."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwlib.study import failures
from hwlib.vision.analysis import failure_types, rates_by_attribute
from hwlib.config import KEYPOINT_NAMES
from hwlib.study.failures import TYPES, attribute_rates, count_types, failure_gallery, table_rows


def _types_from_codes(codes):
    """codes: [N][K] of "A"/"B"/"C"/"ok" -> failure_types-style dict of bool arrays."""
    a = np.asarray(codes)
    return {k: a == k for k in (*TYPES, "ok")}


def _random_types(rng, n, k):
    ea, eb = rng.random((n, k)) * 0.1, rng.random((n, k)) * 0.1
    return failure_types(ea, eb, 0.05)


# ----------------------------------------------------------------------------- hand-worked
def test_count_types_hand_worked():
    s0 = _types_from_codes([["A", "A", "ok"],      # one figure, two type-A keypoints
                            ["C", "B", "ok"],      # counts as B and as C
                            ["ok", "ok", "ok"]])   # no failure
    s1 = _types_from_codes([["A", "ok", "ok"],
                            ["ok", "ok", "ok"],
                            ["ok", "ok", "ok"]])
    c = count_types([s0, s1])
    assert c["seeds"] == 2
    assert c["per_seed"][0]["keypoints"] == {"A": 2, "B": 1, "C": 1, "ok": 5}
    assert c["per_seed"][0]["figures"] == {"A": 1, "B": 1, "C": 1, "none": 1}
    assert c["per_seed"][0]["per_keypoint"] == {"A": [1, 1, 0], "B": [0, 1, 0], "C": [1, 0, 0]}
    assert c["per_seed"][1]["keypoints"] == {"A": 1, "B": 0, "C": 0, "ok": 8}
    assert c["per_seed"][1]["figures"] == {"A": 1, "B": 0, "C": 0, "none": 2}
    assert c["mean"]["keypoints"] == {"A": 1.5, "B": 0.5, "C": 0.5, "ok": 6.5}
    assert c["mean"]["figures"] == {"A": 1.0, "B": 0.5, "C": 0.5, "none": 1.5}
    # sample std (ddof=1) of two values x, y is |x - y| / sqrt(2)
    assert c["std"]["keypoints"]["A"] == pytest.approx(1 / np.sqrt(2))
    assert c["std"]["figures"]["A"] == 0.0
    assert c["std"]["figures"]["none"] == pytest.approx(1 / np.sqrt(2))
    assert c["mean"]["per_keypoint"]["A"] == [1.0, 0.5, 0.0]


def test_count_types_one_seed_has_zero_std_and_empty_raises():
    c = count_types([_types_from_codes([["A", "C"]])])
    assert c["std"]["keypoints"] == {"A": 0.0, "B": 0.0, "C": 0.0, "ok": 0.0}
    assert c["mean"]["figures"] == {"A": 1.0, "B": 0.0, "C": 1.0, "none": 0.0}
    with pytest.raises(ValueError):
        count_types([])


# ----------------------------------------------------------------------------- brute force
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 12), st.integers(1, 5))
def test_count_types_brute_force(seed, n_seeds, n, k):
    rng = np.random.default_rng(seed)
    per_seed = [_random_types(rng, n, k) for _ in range(n_seeds)]
    c = count_types(per_seed)
    for s, t in enumerate(per_seed):
        for typ in TYPES:
            kp = sum(bool(t[typ][i][j]) for i in range(n) for j in range(k))
            fig = sum(any(bool(t[typ][i][j]) for j in range(k)) for i in range(n))
            assert c["per_seed"][s]["keypoints"][typ] == kp
            assert c["per_seed"][s]["figures"][typ] == fig
            assert c["per_seed"][s]["per_keypoint"][typ] == [sum(bool(t[typ][i][j]) for i in range(n)) for j in range(k)]
        none = sum(all(not any(bool(t[x][i][j]) for x in TYPES) for j in range(k)) for i in range(n))
        assert c["per_seed"][s]["figures"]["none"] == none
        # every keypoint is exactly one of A, B, C, ok
        assert sum(c["per_seed"][s]["keypoints"].values()) == n * k
    for typ in TYPES:
        vals = [c["per_seed"][s]["figures"][typ] for s in range(n_seeds)]
        mean = sum(vals) / n_seeds
        std = (sum((v - mean) ** 2 for v in vals) / (n_seeds - 1)) ** 0.5 if n_seeds > 1 else 0.0
        assert c["mean"]["figures"][typ] == pytest.approx(mean)
        assert c["std"]["figures"][typ] == pytest.approx(std)


def test_per_figure_is_not_per_keypoint():
    """A figure with several keypoints of one type counts once for that type (catches counting keypoints)."""
    t = _types_from_codes([["C"] * 5, ["C", "A", "ok", "ok", "ok"]])
    c = count_types([t])["per_seed"][0]
    assert c["figures"]["C"] == 2 and c["keypoints"]["C"] == 6
    assert c["figures"]["A"] == 1 and c["figures"]["none"] == 0


def test_attribute_rates_pool_seeds():
    rng = np.random.default_rng(0)
    per_seed = [_random_types(rng, 10, 5) for _ in range(3)]
    meta = {"hand_distance": rng.random(10) * 30, "hand_torso_distance": rng.random(10) * 12,
            "hard": rng.integers(0, 3, 10)}
    got = attribute_rates(per_seed, meta)
    pooled = {k: np.concatenate([t[k] for t in per_seed]) for k in per_seed[0]}
    ref = rates_by_attribute(pooled, np.concatenate([meta["hard"]] * 3), [1, 2],
                             ["normal", "hands together", "hands on torso"])
    assert got["pose"] == ref
    assert sum(got["hand distance (px)"]["n"]) == 30
    # brute force of one bin: share of the two hands of type A among figures with hand distance < 5
    sel = [(s, i) for s in range(3) for i in range(10) if meta["hand_distance"][i] < 5]
    if sel:
        share = np.mean([per_seed[s]["A"][i][j] for s, i in sel for j in (1, 2)])
        assert got["hand distance (px)"]["A"][0] == pytest.approx(share)


# ----------------------------------------------------------------------------- seed loop with fake models
def test_failure_analysis_compares_seed_with_seed():
    from hwlib.study import splits

    n = 6
    images, kps, meta = splits.keypoint_data(n, splits.TEST_SEED, 0.2)
    # offsets (px) of each method's predictions per seed: big offsets are wrong at tau=0.05
    offset = {("heatmap", 0): 0.0, ("regression", 0): 50.0, ("integral", 0): 0.0,
              ("heatmap", 1): 50.0, ("regression", 1): 0.0, ("integral", 1): 50.0}
    preds = {"heatmap_dark": [kps + offset[("heatmap", s)] for s in (0, 1)],
             "heatmap_argmax": [kps + 100.0] * 2,                       # not the headline decoding: unused
             "regression": [kps + offset[("regression", s)] for s in (0, 1)],
             "integral": [kps + offset[("integral", s)] for s in (0, 1)]}
    r = failures.failure_analysis(preds, seeds=range(2), n=n, tau=0.05)
    assert r.decodings == {"heatmap": "heatmap_dark", "regression": "regression", "integral": "integral"}
    c = r.counts["regression"]["per_seed"]
    assert c[0]["keypoints"]["A"] == n * 5 and c[1]["keypoints"]["B"] == n * 5
    assert r.counts["integral"]["per_seed"][0]["keypoints"]["ok"] == n * 5
    assert r.counts["integral"]["per_seed"][1]["keypoints"]["C"] == n * 5
    assert torch.equal(r.predictions["regression"], kps + 50.0)      # seed 0's predictions
    res = r.results()
    assert res["counts"]["regression"] == {"A": n * 2.5, "B": n * 2.5, "C": 0.0, "ok": 0.0}
    assert res["n_samples"] == n and res["seeds"] == 2 and res["eval_split"] == "test"
    assert set(res) >= {"tau", "counts", "counts_std", "counts_per_keypoint", "counts_per_figure", "rates"}
    with pytest.raises(ValueError, match="2 seeds of integral"):
        failures.failure_analysis({**preds, "integral": preds["integral"][:1]}, seeds=range(2), n=n)
    header, rows = table_rows(r)
    body = [row for row in rows if row != "midrule"]
    assert len(body) == 8 and all(len(row) == len(header) == 4 + len(KEYPOINT_NAMES) for row in body)


# ----------------------------------------------------------------------------- gallery
@pytest.mark.parametrize("kind", ["A", "B"])
def test_failure_gallery_saves_and_marks(tmp_path, kind):
    import matplotlib.pyplot as plt

    images = torch.rand(4, 1, 128, 128)
    gt = torch.full((4, 5, 2), 64.0)
    types = _types_from_codes([["A", "ok", "ok", "ok", "ok"]] + [["ok"] * 5] * 3)
    path = tmp_path / f"g_{kind}.png"
    fig = failure_gallery(images, gt, {"heatmap": gt + 1, "regression": gt + 9}, types, kind, path)
    assert path.exists() and path.stat().st_size > 0
    assert fig.get_size_inches()[0] == pytest.approx(6.3)
    texts = [t for t in fig.findobj(plt.Text) if t.get_text()]
    assert texts and min(t.get_fontsize() for t in texts) >= 7
    if kind == "A":
        assert any(t.get_text() == "#0 H" for t in texts)      # the failed keypoint is named
    plt.close(fig)


def test_facts_report_partition():
    t = [_types_from_codes([["A", "ok"], ["C", "B"]])]
    r = failures.FailureAnalysis(tau=0.05, seeds=[0], n_samples=2, types={"regression": t},
                                 decodings={"heatmap": "heatmap_dark", "regression": "regression"})
    assert "shape per seed [(2, 2)]; each keypoint of every seed in exactly one type: True" in r.facts()
    t[0]["C"][0, 0] = True                     # a keypoint of two types
    assert "exactly one type: False" in r.facts()


def test_right_hand_by_knob_visible_hand_worked():
    # 4 figures, right hand (index 2): seed 0 heatmap right on figures 0, 2 (types ok, A), wrong on 1, 3 (B, C);
    # seed 1 right on all; knob shares 0.1, 0.2 (bin under_25), 0.8, 0.9 (over_75); nothing in the middle bins
    def types(kinds):
        t = {k: np.zeros((4, 5), dtype=bool) for k in ("A", "B", "C", "ok")}
        t["ok"][:] = True
        for i, kind in enumerate(kinds):
            t["ok"][i, 2] = False
            t[kind][i, 2] = True
        return t
    per_seed = [types(["ok", "B", "A", "C"]), types(["ok", "A", "ok", "A"])]
    out = failures.right_hand_by_knob_visible(per_seed, np.array([0.1, 0.2, 0.8, 0.9]))
    assert list(out) == ["under_25", "25_to_50", "50_to_75", "over_75"]
    assert out["under_25"]["figures"] == 2 and out["over_75"]["figures"] == 2 and out["25_to_50"]["figures"] == 0
    assert out["under_25"]["heatmap_pck"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["over_75"]["heatmap_pck"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["under_25"]["heatmap_pck_std"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    assert np.isnan(out["25_to_50"]["heatmap_pck"])
    # a share of exactly 0.25 belongs to the second bin
    assert failures.right_hand_by_knob_visible(per_seed, np.array([0.25, 0.5, 0.75, 1.0]))["25_to_50"]["figures"] == 1
