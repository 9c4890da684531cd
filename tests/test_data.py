import numpy as np
import pytest
import torch

from hwlib.vision.data import CLASS_SIZE_RANGES, make_detection_data, make_keypoint_data


@pytest.fixture(scope="module")
def det():
    return make_detection_data(40, seed=3)


def test_detection_shapes_and_dtypes(det):
    images, targets = det
    assert images.shape == (40, 3, 224, 224) and images.dtype == torch.uint8
    assert len(targets) == 40
    for t in targets:
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape[1] == 4
        assert t["labels"].dtype == torch.int64 and len(t["labels"]) == len(t["boxes"])
        assert 1 <= len(t["labels"]) <= 6
        assert set(t["labels"].tolist()) <= {0, 1, 2}


def test_detection_deterministic(det):
    images, targets = make_detection_data(40, seed=3)
    assert torch.equal(images, det[0])
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(targets, det[1]))
    other, _ = make_detection_data(40, seed=4)
    assert not torch.equal(other, images)


def test_boxes_inside_image_and_class_tied_to_size(det):
    _, targets = det
    for t in targets:
        b = t["boxes"]
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 224).all() and (b[:, 2:] > b[:, :2]).all()
        size = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt()
        for s, l in zip(size.tolist(), t["labels"].tolist()):
            lo, hi = CLASS_SIZE_RANGES[l]
            assert lo * 0.85 - 2 <= s <= hi * 1.1 + 2, (l, s)


def test_boxes_are_tight_around_drawn_pixels():
    # one object, no noise: the object is the one exact colour repeated over many pixels
    images, targets = make_detection_data(30, seed=5, min_objects=1, max_objects=1, noise=(0.0, 0.0))
    for img, t in zip(images, targets):
        flat = img.reshape(3, -1).T
        colours, counts = torch.unique(flat, dim=0, return_counts=True)
        colour = colours[counts.argmax()]
        mask = (img == colour[:, None, None]).all(0)
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        tight = torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)
        assert torch.equal(tight, t["boxes"][0]), (tight, t["boxes"][0], t["labels"])


def test_any_size_mode_mixes_classes_and_sizes():
    _, targets = make_detection_data(150, seed=1, size_mode="any")
    b = torch.cat([t["boxes"] for t in targets])
    l = torch.cat([t["labels"] for t in targets])
    s = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt()
    for c in range(3):
        assert (s[l == c] < 39).any() and (s[l == c] > 91).any()


def _class_counts(targets):
    return np.bincount(torch.cat([t["labels"] for t in targets]).numpy(), minlength=3)


def test_balanced_classes_have_about_equal_counts():
    """Re-drawing the class on each failed placement (``balanced_classes=False``, the first round's data) favours
    the small circles; drawing it once per object (the default) keeps every class within 25% of every other."""
    old = _class_counts(make_detection_data(200, seed=5, balanced_classes=False)[1])
    _, targets = make_detection_data(200, seed=5)
    new = _class_counts(targets)
    assert (new == _class_counts(make_detection_data(200, seed=5, balanced_classes=True)[1])).all()
    assert old[0] > 1.5 * old[2]                                # circles far more common than triangles
    assert new.max() <= 1.25 * new.min(), new
    for t in targets:                                           # sizes stay tied to class
        side = (t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1).sqrt()
        for c, (lo, hi) in CLASS_SIZE_RANGES.items():
            assert ((side[t["labels"] == c] >= 0.85 * lo - 2) & (side[t["labels"] == c] <= 1.1 * hi + 2)).all()
    any_size = _class_counts(make_detection_data(100, seed=6, size_mode="any", balanced_classes=True)[1])
    assert any_size.max() <= 1.25 * any_size.min(), any_size


def test_first_round_stream_is_kept():
    """``balanced_classes=False`` draws the first round's data: labels and boxes of seed 7 as the first round's
    generator drew them (integers, so the same on every CPU)."""
    _, targets = make_detection_data(3, seed=7, balanced_classes=False)
    assert [t["labels"].tolist() for t in targets] == [[1, 0], [0, 2, 0], [0, 2]]
    assert [t["boxes"].int().tolist() for t in targets] == [
        [[92, 107, 172, 186], [122, 13, 142, 33]],
        [[20, 196, 41, 217], [74, 67, 210, 219], [109, 29, 142, 61]],
        [[183, 98, 197, 113], [15, 99, 126, 219]]]


def test_balanced_placement_order_and_weights():
    """Balanced placement puts an image's classes in decreasing class index (with sizes tied to class: largest
    first), counts every drawn and placed object, and draws a class more often the worse it has fitted so far."""
    from hwlib.vision.data import _place_objects

    rng = np.random.default_rng(0)
    tally = np.zeros((2, 3), dtype=np.int64)
    for _ in range(50):
        objs = _place_objects(rng, 4, "class", 0.15, 224, tally)
        assert [o["cls"] for o in objs] == sorted((o["cls"] for o in objs), reverse=True)
    assert tally[0].sum() == 200 and (tally[1] <= tally[0]).all()
    skewed = np.array([[1000, 1000, 1000], [1000, 1000, 100]])  # triangles placed a tenth as often
    drawn = skewed[0].copy()
    for _ in range(100):
        _place_objects(rng, 3, "class", 0.15, 224, skewed)
    assert (skewed[0] - drawn)[2] > 3 * (skewed[0] - drawn)[0]


def test_detection_bad_input():
    with pytest.raises(ValueError, match="n must be"):
        make_detection_data(-1)
    with pytest.raises(ValueError, match="unknown option"):
        make_detection_data(2, colour="red")
    with pytest.raises(ValueError, match="size_mode"):
        make_detection_data(2, size_mode="huge")
    images, targets = make_detection_data(0)
    assert images.shape == (0, 3, 224, 224) and targets == []


def test_keypoint_shapes_range_and_determinism():
    images, kps = make_keypoint_data(64, seed=2)
    assert images.shape == (64, 1, 128, 128) and images.dtype == torch.float32
    assert kps.shape == (64, 5, 2) and kps.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert (kps >= 0).all() and (kps <= 128).all()
    i2, k2 = make_keypoint_data(64, seed=2)
    assert torch.equal(images, i2) and torch.equal(kps, k2)


def test_keypoints_lie_on_the_figure():
    images, kps = make_keypoint_data(32, seed=7)
    for img, k in zip(images, kps):
        for x, y in k.tolist():
            r0, c0 = int(y), int(x)
            patch = img[0, max(r0 - 2, 0):r0 + 3, max(c0 - 2, 0):c0 + 3]
            background = img[0].median()
            assert patch.max() > background + 0.25


def test_left_is_brighter_and_on_the_figures_own_left():
    # the left limbs are drawn brighter; with the figure facing the viewer its left hand tends to be on the image's right
    images, kps, meta = make_keypoint_data(400, seed=11, hard_fraction=0.0, return_meta=True)
    right_of_image = (kps[:, 1, 0] > kps[:, 2, 0]).float().mean()
    assert right_of_image > 0.7
    lv = torch.stack([img[0, int(k[1, 1]), int(k[1, 0])] for img, k in zip(images, kps)])
    rv = torch.stack([img[0, int(k[2, 1]), int(k[2, 0])] for img, k in zip(images, kps)])
    far = torch.from_numpy(meta["hand_distance"] > 10)
    assert (lv[far] > rv[far]).float().mean() > 0.9


def test_hard_pose_rate_and_attributes():
    _, kps, meta = make_keypoint_data(1000, seed=0, hard_fraction=0.3, return_meta=True)
    assert set(meta) >= {"hand_distance", "hand_torso_distance", "hard", "ambiguous"}
    share = (meta["hard"] > 0).mean()
    assert 0.25 < share < 0.35
    together = meta["hard"] == 1
    assert np.median(meta["hand_distance"][together]) < np.median(meta["hand_distance"][meta["hard"] == 0]) / 2
    on_torso = meta["hard"] == 2
    assert np.median(meta["hand_torso_distance"][on_torso]) < 5
    d = (kps[:, 1] - kps[:, 2]).norm(dim=-1).numpy()
    assert np.allclose(d, meta["hand_distance"], atol=1e-3)


def test_keypoint_bad_input():
    with pytest.raises(ValueError, match="unknown option"):
        make_keypoint_data(2, sigma=3)
    with pytest.raises(ValueError, match="hard_fraction"):
        make_keypoint_data(2, hard_fraction=1.5)
    images, kps = make_keypoint_data(0)
    assert images.shape == (0, 1, 128, 128) and kps.shape == (0, 5, 2)


def test_hand_under_brighter_stroke_by_the_rendering_rule():
    from hwlib.vision.data import _hands_covered

    one = lambda *v: np.array([v], dtype=np.float64)   # noqa: E731   a batch of one figure: a point [1, 2]
    val = lambda v: np.array([v], dtype=np.float64)    # noqa: E731   a value [1]
    kps = np.zeros((1, 5, 2))
    kps[0, 1], kps[0, 2] = (80.0, 50.0), (50.0, 50.0)                   # left hand far away, right hand at (50, 50)
    w, lv, rv, bg = val(3.0), val(0.9), val(0.6), val(0.1)
    torso = (one(50.0, 30.0), one(50.0, 70.0), 2)                        # a bright vertical line through the right hand
    r_fore = (one(40.0, 50.0), one(50.0, 50.0), 1)                       # the right hand's own forearm: never counts
    knobs = [(one(50.0, 10.0), val(5.0), lv)] + [(kps[:, k], 0.9 * w, lv if k in (1, 3) else rv) for k in (1, 2, 3, 4)]
    under, covered = _hands_covered(kps, [torso, r_fore], ["torso", "r_fore"], knobs, w, lv, rv, bg)
    assert under.tolist() == [[False, True]] and covered.tolist() == [[False, True]]
    # the torso moved 2.2 px away: its anti-aliased edge gives 0.1 + (1.5 + 0.5 - 2.2 -> 0) ... nothing at the hand
    far = (one(52.2, 30.0), one(52.2, 70.0), 2)
    under, _ = _hands_covered(kps, [far, r_fore], ["torso", "r_fore"], knobs, w, lv, rv, bg)
    assert not under.any()
    # a dim right-side stroke (the right thigh) over the right hand: as bright, not brighter
    thigh = (one(50.0, 30.0), one(50.0, 70.0), 1)
    under, covered = _hands_covered(kps, [thigh, r_fore], ["r_thigh", "r_fore"], knobs, w, lv, rv, bg)
    assert under.tolist() == [[False, False]] and covered.tolist() == [[False, True]]


def test_hand_under_brighter_shows_in_the_pixels():
    images, kps, meta = make_keypoint_data(600, seed=11, return_meta=True)
    assert not meta["hand_under_brighter"][:, 0].any()                   # the left hand is never the dimmer one
    px = lambda k: torch.stack([img[0, int(p[k, 1]), int(p[k, 0])] for img, p in zip(images, kps)]).numpy()  # noqa: E731
    ratio = px(2) / px(1)                                                # right-hand pixel over left-hand pixel
    under, far = meta["hand_under_brighter"][:, 1], meta["hand_distance"] > 10
    assert 0.03 < under.mean() < 0.4
    assert (ratio[under] > 0.85).mean() > 0.7                            # hidden: as bright as the left hand
    assert (ratio[~under & far] < 0.85).mean() > 0.95                    # visible: the dimmer right-limb value


def test_knob_visible_by_the_rendering_rule():
    from hwlib.vision.data import _KNOB_SAMPLES, _knob_visible

    one = lambda *v: np.array([v], dtype=np.float64)   # noqa: E731   a batch of one figure: a point [1, 2]
    val = lambda v: np.array([v], dtype=np.float64)    # noqa: E731   a value [1]
    kps = np.zeros((1, 5, 2))
    kps[0, 1], kps[0, 2] = (80.0, 50.0), (50.0, 50.0)
    w, lv, rv, bg = val(3.0), val(0.9), val(0.6), val(0.1)
    r_fore = (one(40.0, 50.0), one(50.0, 50.0), 1)                       # its own forearm: never hides it
    knobs = [(one(50.0, 10.0), val(5.0), lv)] + [(kps[:, k], 0.9 * w, lv if k in (1, 3) else rv) for k in (1, 2, 3, 4)]
    alone = _knob_visible(kps, [r_fore], ["r_fore"], knobs, w, lv, rv, bg)
    assert alone.tolist() == [[1.0, 1.0]]
    # a bright vertical stroke through the knob's centre: at distance d it draws 0.1 + clip(1.5 + 0.5 - d, 0, 1) * 0.8,
    # which beats the knob's 0.6 for d < 1.375 px; the knob (radius 2.7 px) shows at its samples with |dx| > 1.375 px
    torso = (one(50.0, 30.0), one(50.0, 70.0), 2)
    split = _knob_visible(kps, [torso, r_fore], ["torso", "r_fore"], knobs, w, lv, rv, bg)
    dx = np.abs(_KNOB_SAMPLES[:, 0] * 2.7)
    assert split[0, 1] == pytest.approx((dx > 1.375).mean()) and 0 < split[0, 1] < 0.5
    assert split[0, 0] == 1.0
    # a right-side stroke (the right thigh) as dim as the knob: where it is as bright (d <= 1 px), the knob does not
    # stand out; it shows only at |dx| > 1 px
    thigh = (one(50.0, 30.0), one(50.0, 70.0), 1)
    tie = _knob_visible(kps, [thigh, r_fore], ["r_thigh", "r_fore"], knobs, w, lv, rv, bg)
    assert tie[0, 1] == pytest.approx((dx > 1.0).mean()) and tie[0, 1] < 1.0
    # the left knob (brighter, same radius) right on top of the right one: nothing of it shows
    kps2 = kps.copy()
    kps2[0, 1] = kps2[0, 2]
    knobs2 = [(one(50.0, 10.0), val(5.0), lv)] + [(kps2[:, k], 0.9 * w, lv if k in (1, 3) else rv) for k in (1, 2, 3, 4)]
    hidden = _knob_visible(kps2, [r_fore], ["r_fore"], knobs2, w, lv, rv, bg)
    assert hidden[0, 1] == 0.0 and hidden[0, 0] == 1.0


def test_knob_visible_agrees_with_hand_under_brighter():
    _, _, meta = make_keypoint_data(400, seed=12, return_meta=True)
    vis, under = meta["hand_knob_visible"], meta["hand_under_brighter"]
    assert vis.shape == (400, 2) and ((vis >= 0) & (vis <= 1)).all()
    assert (vis[:, 0] > 0).all()                                          # the brighter left knob always shows
    assert vis[under[:, 1], 1].mean() < vis[~under[:, 1], 1].mean() - 0.3  # a hand under a brighter stroke shows less
