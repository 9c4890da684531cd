import pytest

from hwlib.config import PROFILES, REPO_ROOT, load_profile


def test_profiles_load():
    for name in PROFILES:
        p = load_profile(name)
        assert p.name == name
        assert p.detector.steps > 0 and p.keypoint.steps > 0


def test_unknown_profile_names_valid_ones():
    with pytest.raises(ValueError, match="smoke, cpu, paper"):
        load_profile("nope")


def test_unknown_key_names_valid_ones():
    with pytest.raises(ValueError, match="valid keys:.*detector"):
        load_profile("smoke", nonsense=1)
    with pytest.raises(ValueError, match=r"profile\.detector.*valid keys:.*steps"):
        load_profile("smoke", detector={"stepz": 3})


def test_nested_overrides_and_validation():
    p = load_profile("smoke", detector={"steps": 7, "anchors": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}, seed=3)
    assert p.detector.steps == 7 and p.seed == 3
    assert p.detector.anchors == ((1, 2, 3), (4, 5, 6), (7, 8, 9))
    with pytest.raises(ValueError, match="head"):
        load_profile("smoke", detector={"head": "wide"})
    with pytest.raises(ValueError, match="heatmap_size"):
        load_profile("smoke", keypoint={"heatmap_size": 48})
    with pytest.raises(ValueError, match="detector.optimizer must be one of"):
        load_profile("smoke", detector={"optimizer": "lion"})
    with pytest.raises(ValueError, match="kp_ablation.schedule must be one of"):
        load_profile("smoke", kp_ablation={"schedule": "step"})
    with pytest.raises(ValueError, match="detector.schedule must be one of"):
        load_profile("smoke", detector={"schedule": "range"})          # a range test's sweep, not a schedule


def test_output_folders():
    cpu, smoke = load_profile("cpu"), load_profile("smoke")
    assert cpu.figures_dir == REPO_ROOT / "figures"
    assert cpu.generated_dir == REPO_ROOT / "report" / "generated"
    assert smoke.figures_dir == REPO_ROOT / "runs" / "smoke" / "figures"
    assert smoke.generated_dir == REPO_ROOT / "runs" / "smoke" / "generated"
    assert load_profile("paper").run_dir == REPO_ROOT / "runs" / "paper"


def test_regression_has_its_own_steps_and_lr_only_when_set():
    from hwlib.config import KeypointConfig
    plain = KeypointConfig(steps=500, lr=4e-3)
    assert [plain.steps_of(m) for m in ("heatmap", "regression", "integral")] == [500, 500, 500]
    assert [plain.lr_of(m) for m in ("heatmap", "regression", "integral")] == [4e-3, 4e-3, 4e-3]
    own = KeypointConfig(steps=500, lr=4e-3, regression_steps=2000, regression_lr=1e-3)
    assert [own.steps_of(m) for m in ("heatmap", "regression", "integral")] == [500, 2000, 500]
    assert [own.lr_of(m) for m in ("heatmap", "regression", "integral")] == [4e-3, 1e-3, 4e-3]


def test_before_field_existed_names_only_the_fields_of_the_config_asked_about():
    """A detector config stored before ``balanced_classes`` existed means the first round's data; the keypoint config
    has no such field, so nothing is added to it (config_from_checkpoint would fail on an unknown key)."""
    from hwlib.config import DetectorConfig, KeypointConfig, before_field_existed

    assert before_field_existed(DetectorConfig) == {"balanced_classes": False}
    assert before_field_existed(KeypointConfig) == {}
