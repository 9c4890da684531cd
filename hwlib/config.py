"""Profiles: one name picks every size of a run.

``smoke``  seconds per notebook; what CI and nbval execute (tiny data, a few steps, same code paths)
``cpu``    the default report on a 2-core CPU with no GPU (the committed figures and numbers)
``paper``  the seed's full scale, for a GPU (``device="cuda"`` when present)

>>> p = load_profile("smoke", seed=1)
>>> p.detector.steps > 0
True

Only a ``cpu`` run writes the committed ``figures/`` and ``report/generated/``; the other
profiles write under ``runs/<profile>/`` so that tests never touch a committed file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_DIR = REPO_ROOT / "runs"
STORE_DIR = REPO_ROOT / "results" / "runs"   # the committed run store (hwlib.study.store)
ZOO_DIR = REPO_ROOT / "models"                # the model zoo (hwlib.study.zoo) and its manifest
ZOO_MANIFEST = "MANIFEST.json"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
REPORT_DIR = REPO_ROOT / "report"

CLASS_NAMES = ("circle", "square", "triangle")

# Data seeds. Validation and test splits have fixed seeds shared by every run and arm: validation for training
# curves, time to accuracy and every choice of schedule or setting; test for nothing but reported numbers.
# The training images of a run with seed s are drawn from TRAIN_SEED_OFFSET[task] + s.
SPLIT_SEEDS = {"val": 10_000_019, "test": 20_000_003}
# the validation accuracy at which a main model's time to accuracy is read (mAP@0.5 for the detectors, PCK@0.05 for
# the heatmap model): the recipe study's goals, and a higher one for the RF-aware network, which passes 0.85 early
ACCURACY_GOALS = {"detector": 0.85, "rf_aware": 0.95, "heatmap": 0.95}
TRAIN_SEED_OFFSET = {"detector": 1000, "keypoint": 2000}


def train_data_seed(task: str, seed: int) -> int:
    """The generator seed of the training images of run ``seed`` (``task``: ``"detector"`` or ``"keypoint"``)."""
    if task not in TRAIN_SEED_OFFSET:
        raise ValueError(f"task must be one of {tuple(TRAIN_SEED_OFFSET)}, got {task!r}")
    return TRAIN_SEED_OFFSET[task] + seed
DETECTOR_HEADS = ("seed", "deep1x1", "deep1x1_wide", "deep", "dilated")   # S2/S3 head variants, see hwlib.vision.detector
HEATMAP_LOSSES = ("ce", "mse")                      # KeypointConfig.heatmap_loss, see hwlib.vision.keypoints.KeypointLoss
REGRESSION_LOSSES = ("l1", "smooth_l1", "wing")     # KeypointConfig.regression_loss, see hwlib.vision.keypoints.coordinate_loss
REGRESSION_OUTPUTS = ("sigmoid", "linear")          # KeypointConfig.regression_output, see hwlib.vision.keypoints.RegressionNet
OPTIMIZERS = ("adamw", "sgd")                       # <Config>.optimizer, see hwlib.vision.train.make_optimizer
SCHEDULES = ("cosine", "linear")                    # <Config>.schedule: the decay after warm-up, see hwlib.vision.train.lr_at
KEYPOINT_NAMES = ("head", "left_hand", "right_hand", "left_foot", "right_foot")
SEED_ANCHORS = ((16, 24, 32), (48, 64, 96), (96, 128, 192))

# What the seed report (shared/seed/ml-hw1.txt) published, quoted for side-by-side tables. These are
# the seed's numbers, not ours: every number of this study is computed by the notebooks.
# the seed's two decoding-only proposals ("moderately increasing S3's confidence threshold or slightly lowering the
# NMS IoU threshold"), at a few moderate values: DetectorConfig overrides applied to trained models (notebook 02)
DECODING_PROPOSALS = {"S3 conf 0.6": {"s3_conf": 0.6}, "S3 conf 0.7": {"s3_conf": 0.7},
                      "NMS IoU 0.5": {"nms_iou": 0.5}, "NMS IoU 0.45": {"nms_iou": 0.45}}

SEED_RESULTS = {
    "detector": {"map": 0.5229, "ap": {"circle": 0.6611, "square": 0.3449, "triangle": 0.5627},
                 # TPs after NMS (conf >= 0.5): rows S1, S2, S3; columns small, medium, large
                 "tp_table": [[196, 0, 0], [0, 84, 5], [0, 119, 201]]},
    "keypoints": {"heatmap": {"0.05": 0.84, "0.2": 0.92}, "regression": {"0.05": 0.08, "0.2": 0.53}},
}


# A config field missing from a stored config (a run written before the field existed) means the behaviour the
# code had then: the field's default, except for these fields, whose default has changed since they were added.
BEFORE_FIELD_EXISTED = {"balanced_classes": False}


def before_field_existed(cls) -> dict:
    """``{field: value}`` of the fields of dataclass ``cls`` whose default has changed since they were added: what a
    stored config without that field means (:data:`BEFORE_FIELD_EXISTED`); every other missing field means its
    default. The one reading of that table, for :func:`hwlib.study.obtain.same_config` and
    :func:`hwlib.study.checkpoints.config_from_checkpoint`."""
    return {f.name: BEFORE_FIELD_EXISTED[f.name] for f in dataclasses.fields(cls) if f.name in BEFORE_FIELD_EXISTED}


@dataclass(frozen=True)
class DetectorConfig:
    """One detector training run: network, data, schedule, assignment and decoding."""

    width: float = 1.0                 # channel multiplier; 1.0 is the seed's network
    head: str = "seed"                 # "seed" | "deep1x1" | "deep1x1_wide" | "deep" | "dilated": S2/S3 heads, see hwlib.vision.detector
    anchors: tuple = SEED_ANCHORS      # square anchor sides in pixels, per head S1, S2, S3
    n_train: int = 6000                # training images (generated once, reshuffled each epoch)
    n_val: int = 500                   # validation images (a different seed)
    steps: int = 400                   # optimizer steps
    batch_size: int = 16
    lr: float = 2e-3                   # peak learning rate
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    grad_clip: float = 10.0            # gradient-norm clip of every step
    optimizer: str = "adamw"           # "adamw" | "sgd" (Nesterov momentum 0.937), see hwlib.vision.train.make_optimizer
    schedule: str = "cosine"           # "cosine" | "linear": decay to 1% of lr after warm-up, see hwlib.vision.train.lr_at
    ema: float = 0.0                   # decay of an exponential moving average of the weights (0: off)
    anchor_t: float = 4.0              # a GT matches an anchor when max side ratio < anchor_t
    neighbour_cells: bool = True       # also assign the two nearest neighbouring cells (YOLOv5)
    assignment: str = "ratio"          # "ratio" (YOLOv5, every anchor within anchor_t) | "best_anchor" (YOLOv3)
    ignore_iou: float = 0.0            # YOLOv3's ignore threshold: no objectness loss for a non-positive anchor
                                       # whose predicted box has IoU > this with a ground truth (0: off)
    obj_balance: tuple = (4.0, 1.0, 0.4)  # objectness loss weight per head (S1, S2, S3)
    focal_gamma: float = 0.0           # 0: plain BCE/CE; >0: focal loss on objectness and class
    class_alpha: tuple = (1.0, 1.0, 1.0)  # per-class weight of the classification loss
    flip: bool = True                  # horizontal-flip augmentation
    size_mode: str = "class"           # "class": size tied to class (seed); "any": every class at every size
    balanced_classes: bool = True      # generator: about equal counts per class (False: the first round's data)
    eval_every: int = 0                # validation mAP every this many steps (0: only at the end)
    nms_iou: float = 0.6
    conf_seed: float = 0.5             # the seed's confidence pre-filter
    conf_standard: float = 0.001       # VOC/COCO/YOLO validation pre-filter
    max_det: int = 100                 # detections kept per image after NMS
    s3_conf: float | None = None       # the seed's proposal: a higher cut for S3 boxes, seed protocol only
    box_gain: float = 0.05             # weight of the 1 - CIoU box loss in the total loss
    obj_gain: float = 1.0              # weight of the objectness loss (after the per-head obj_balance)
    cls_gain: float = 0.5              # weight of the classification loss
    # size sqrt(w*h) boundaries small | medium | large: geometric midpoints between neighbouring heads'
    # middle anchors, sqrt(24*64) ~ 39 and sqrt(64*128) ~ 91 px (analysis tables only, not training)
    size_buckets: tuple = (39.0, 91.0)


@dataclass(frozen=True)
class KeypointConfig:
    """One keypoint training run (heatmap, regression or integral share every field)."""

    heatmap_size: int = 64             # 32 | 64 | 128
    sigma: float = 2.0                 # Gaussian sigma in heatmap pixels
    skip: bool = True                  # U-Net skip connections in the decoder
    heatmap_loss: str = "ce"           # "ce": spatial-softmax cross-entropy to the Gaussian; "mse": the seed's loss
    base_channels: int = 32
    n_train: int = 8000
    n_val: int = 1000
    steps: int = 1500
    regression_steps: int = 0          # steps of the (cheaper) GAP+FC regression model; 0: same as steps
    batch_size: int = 32
    lr: float = 2e-3
    regression_lr: float = 0.0         # peak learning rate of GAP+FC regression; 0: same as lr
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 10.0            # gradient-norm clip of every step
    optimizer: str = "adamw"           # "adamw" | "sgd" (Nesterov momentum 0.937), see hwlib.vision.train.make_optimizer
    schedule: str = "cosine"           # "cosine" | "linear": decay to 1% of lr after warm-up, see hwlib.vision.train.lr_at
    ema: float = 0.0                   # decay of an exponential moving average of the weights (0: off)
    eval_every: int = 0
    hard_fraction: float = 0.2         # share of hard poses (hands together / hands on torso)
    ohkm: int = 0                      # >0: only each image's this many hardest keypoints count in the loss (CPN)
    coord_channels: bool = False       # GAP+FC regression only: (x, y) coordinate channels on its input (CoordConv)
    regression_loss: str = "l1"        # GAP+FC regression only: "l1" | "smooth_l1" | "wing" (hwlib.vision.keypoints.KeypointLoss)
    # GAP+FC regression only, the standard head's three differences from the original (hwlib.vision.keypoints.RegressionNet)
    regression_output: str = "sigmoid"  # "sigmoid" (original) | "linear" (DeepPose, MMPose)
    regression_fp32_head: bool = False  # the head in float32 outside autocast
    regression_norm: bool = False       # a LayerNorm on the pooled features

    def steps_of(self, method: str) -> int:
        """Optimizer steps of ``method``: ``regression_steps`` for GAP+FC regression when set, else ``steps``."""
        return self.regression_steps if method == "regression" and self.regression_steps else self.steps

    def lr_of(self, method: str) -> float:
        """Peak learning rate of ``method``: ``regression_lr`` for GAP+FC regression when set, else ``lr``."""
        return self.regression_lr if method == "regression" and self.regression_lr else self.lr

    def unread_by(self, method: str) -> frozenset[str]:
        """Fields ``method``'s training does not read: ``steps`` / ``lr`` for GAP+FC regression where
        ``regression_steps`` / ``regression_lr`` replace them, and those two, ``coord_channels`` and
        ``regression_loss`` for the other methods. A change to one of them leaves ``method``'s finished runs valid
        (:func:`hwlib.study.obtain.same_config`)."""
        if method != "regression":
            return frozenset({"regression_steps", "regression_lr", "coord_channels", "regression_loss",
                              "regression_output", "regression_fp32_head", "regression_norm"})
        return frozenset(k for k, own in (("steps", self.regression_steps), ("lr", self.regression_lr)) if own)


@dataclass(frozen=True)
class Profile:
    """Every size of one run of the report."""

    name: str
    seed: int = 0
    device: str = "auto"               # "auto": CUDA when present, else CPU
    precision: str = "auto"            # "auto" | "fp32" | "bf16"
    n_preview: int = 400               # images used for dataset statistics in notebook 01
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    rf_aware_head: str = "dilated"     # the receptive-field-aware variant of notebook 02
    seed_exact_seeds: int = 3          # seeds of the seed-exact headline detector (notebook 02)
    rf_aware_seeds: int = 3            # seeds of the receptive-field-aware headline detector (notebook 02)
    n_test: int = 1000                 # held-out test images: every reported number (SPEC §7)
    # seeds of each headline model validated every eval_every steps (curves, plateau); None: all. The other seeds are
    # validated at each quarter of the schedule (their plateau verdict)
    validated_seeds: int | None = None
    # headline models (notebooks 02, 04) also trained for twice their schedule, validation only: the plateau verdict
    # of a ceiling, "doubling gains < 0.005" (hwlib.study.results.ceiling_plateau), instead of the last quarter's gain
    ceiling: bool = False
    det_ablation: DetectorConfig = field(default_factory=DetectorConfig)  # cheaper arms of notebook 03
    det_seeds: int = 3
    n_any_size: int = 300              # images with every class at every size (notebook 03)
    keypoint: KeypointConfig = field(default_factory=KeypointConfig)
    kp_ablation: KeypointConfig = field(default_factory=KeypointConfig)
    kp_seeds: int = 3
    failure_tau: float = 0.05

    @property
    def committed(self) -> bool:
        """Whether this profile writes the committed figures/ and report/generated/."""
        return self.name == "cpu"

    @property
    def runtime(self) -> dict:
        """``device`` and ``precision`` keyword arguments for the training and prediction functions."""
        return {"device": self.device, "precision": self.precision}

    @property
    def run_dir(self) -> Path:
        """Checkpoints, logs and executed notebooks (always under runs/, ignored by git)."""
        return RUNS_DIR / self.name

    @property
    def store(self) -> Path:
        """The run store of this profile's runs (:mod:`hwlib.study.store`): ``results/runs/`` (committed) for ``cpu`` and
        ``paper``, ``runs/smoke/store/`` for ``smoke`` (tests never write a committed file)."""
        return STORE_DIR if self.name != "smoke" else self.run_dir / "store"

    @property
    def shard_dir(self) -> Path | None:
        """Where a worker shard (``HWLIB_SHARD=i/N``, ``i > 0``) writes figures and numbers: its own folder, so that
        only shard 0 writes the profile's outputs."""
        shard = os.environ.get("HWLIB_SHARD", "")
        return self.run_dir / f"shard-{shard.split('/')[0]}" if shard and not shard.startswith("0/") else None

    @property
    def figures_dir(self) -> Path:
        if self.shard_dir is not None:
            return self.shard_dir / "figures"
        return REPO_ROOT / "figures" if self.committed else self.run_dir / "figures"

    @property
    def generated_dir(self) -> Path:
        if self.shard_dir is not None:
            return self.shard_dir / "generated"
        return REPORT_DIR / "generated" if self.committed else self.run_dir / "generated"


def _smoke() -> Profile:
    det = DetectorConfig(width=0.25, n_train=32, n_val=16, steps=3, batch_size=8, warmup_steps=1,
                         eval_every=2)
    kp = KeypointConfig(base_channels=8, n_train=64, n_val=32, steps=3, batch_size=16,
                        warmup_steps=1, eval_every=2, regression_norm=True)
    return Profile(name="smoke", n_preview=24, detector=det, det_ablation=det, det_seeds=2, seed_exact_seeds=2,
                   rf_aware_seeds=2, n_test=16, n_any_size=16, keypoint=kp, kp_ablation=kp, kp_seeds=2, precision="fp32",
                   ceiling=True)


def _cpu() -> Profile:
    # batch 8, the recipe study's one significant gain (validation, 3 seeds: +0.10 mAP at 3,200 images), for 25,600
    # images: its plateau task (validation) found 1,600 steps short of the ceiling (3,200 steps gained +0.017 for
    # seed-exact, +0.031 for rf-aware: 0.942 and 0.994); with the ceiling on, each seed also trains 6,400 steps, and
    # the verdict is whether that doubling gains < 0.005
    det = DetectorConfig(width=1.0, n_train=6000, n_val=500, steps=3200, batch_size=8, lr=2e-3,
                         warmup_steps=40, eval_every=400)
    # notebook 03's arms at the recipe study's converged arm setting (validation, 3 seeds: 0.904 mAP, within 0.05 of
    # the seed-exact headline's 0.925; last-quarter gain 0.016): width 0.5, batch 8, 2,000 steps, balanced data
    det_abl = DetectorConfig(width=0.5, n_train=6000, n_val=500, steps=2000, batch_size=8, lr=2e-3, warmup_steps=40)
    # the recipe study's winners (python -m hwlib.recipe, validation split): batch 16 at lr 8e-3 for the heatmap
    # model (integral shares it), lr 1e-3 for GAP+FC regression; 0.75 * steps is an evaluation (the plateau rule).
    # 2,000 steps: at 1,500 the heatmap model's last quarter still gained 0.003-0.006 (notebook 04, 3 seeds).
    # Regression 16,000 steps: at 4,000 it ended at 0.79 on validation with a last-quarter gain of 0.135; the recipe
    # study's 16,000-step run reached 0.941 and was still rising, so the ceiling run (32,000) decides its verdict
    # GAP+FC regression with a LayerNorm on its pooled features: the recipe study's regression-head check (validation,
    # 2,000 steps, 3 seeds, paired with the original head) found it +0.049 PCK@0.05 [+0.045, +0.054]; a linear
    # output (+0.026 [-0.007, +0.058]) and the head in fp32 (-0.002 [-0.027, +0.022]) unresolved, not adopted
    kp = KeypointConfig(n_train=8000, n_val=1000, steps=2000, regression_steps=16000, batch_size=16, lr=8e-3,
                        regression_lr=1e-3, eval_every=250, regression_norm=True)
    # notebook 05's cheaper setting, half the channels and half the images. The recipe study's "ablation" task
    # (validation) put its base arm at 0.942 after 1,000 steps of batch 16 and 0.964 after 2,000 (+0.022: 1,000 steps
    # was not its plateau), so the arms train 2,000; notebook 05's "twice the steps" arm (4,000) is the base arm's
    # ceiling test, on validation (plateau verdict) and on the test split (the gap)
    kp_abl = KeypointConfig(base_channels=16, n_train=4000, n_val=500, steps=2000, batch_size=16, lr=4e-3)
    # ceiling on: every headline model's plateau verdict is "twice the schedule gains < 0.005" on validation (SPEC §7)
    return Profile(name="cpu", detector=det, det_ablation=det_abl, seed_exact_seeds=3, rf_aware_seeds=3, validated_seeds=1, keypoint=kp,
                   kp_ablation=kp_abl, ceiling=True)


def _paper() -> Profile:
    det = DetectorConfig(width=1.0, n_train=20000, n_val=2000, steps=8000, batch_size=32,
                         warmup_steps=300, eval_every=1000)
    kp = KeypointConfig(n_train=20000, n_val=2000, steps=8000, regression_steps=16000, batch_size=64, lr=4e-3,
                        eval_every=1000, regression_norm=True)
    det_abl = replace(det, steps=3000, eval_every=0)
    kp_abl = replace(kp, steps=3000, eval_every=0)
    return Profile(name="paper", detector=det, det_ablation=det_abl, det_seeds=3, n_any_size=1000, n_test=2000,
                   keypoint=kp, kp_ablation=kp_abl, kp_seeds=3)


PROFILES = {"smoke": _smoke, "cpu": _cpu, "paper": _paper}
DEFAULT_PROFILE = "cpu"


def _apply(obj, overrides: dict, where: str):
    """Return ``obj`` with ``overrides`` applied; nested dataclasses take dicts."""
    valid = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in valid or key == "name":
            names = ", ".join(sorted(k for k in valid if k != "name"))
            raise ValueError(f"unknown {where} key {key!r}; valid keys: {names}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key} expects a dict of overrides, got {type(value).__name__}")
            value = _apply(current, value, f"{where}.{key}")
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        changes[key] = value
    return replace(obj, **changes)


def load_profile(name: str = DEFAULT_PROFILE, **overrides) -> Profile:
    """Build the run's :class:`Profile`.

    Args:
        name: ``"smoke"``, ``"cpu"`` or ``"paper"``.
        **overrides: top-level fields of :class:`Profile`; nested configs take a dict,
            e.g. ``load_profile("cpu", detector={"steps": 100})``.

    Raises:
        ValueError: unknown profile name or unknown key (the message lists the valid ones).
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    profile = _apply(PROFILES[name](), overrides, "profile")
    _check(profile)
    return profile


def _check(p: Profile) -> None:
    for cfg, label in ((p.detector, "detector"), (p.det_ablation, "det_ablation")):
        if cfg.head not in DETECTOR_HEADS:
            raise ValueError(f"{label}.head must be one of {DETECTOR_HEADS}, got {cfg.head!r}")
        if cfg.size_mode not in ("class", "any"):
            raise ValueError(f"{label}.size_mode must be 'class' or 'any', got {cfg.size_mode!r}")
        if cfg.assignment not in ("ratio", "best_anchor"):
            raise ValueError(f"{label}.assignment must be 'ratio' or 'best_anchor', got {cfg.assignment!r}")
        if not 0.0 <= cfg.ignore_iou < 1.0:
            raise ValueError(f"{label}.ignore_iou must be in [0, 1) (0: off), got {cfg.ignore_iou!r}")
        if len(cfg.anchors) != 3:
            raise ValueError(f"{label}.anchors must list 3 heads, got {len(cfg.anchors)}")
    if p.rf_aware_head not in ("deep", "dilated"):
        raise ValueError(f"rf_aware_head must be 'deep' or 'dilated', got {p.rf_aware_head!r}")
    for cfg, label in ((p.keypoint, "keypoint"), (p.kp_ablation, "kp_ablation")):
        if cfg.heatmap_loss not in HEATMAP_LOSSES:
            raise ValueError(f"{label}.heatmap_loss must be one of {HEATMAP_LOSSES}, got {cfg.heatmap_loss!r}")
        if cfg.heatmap_size not in (32, 64, 128):
            raise ValueError(f"{label}.heatmap_size must be 32, 64 or 128, got {cfg.heatmap_size}")
        if cfg.regression_loss not in REGRESSION_LOSSES:
            raise ValueError(f"{label}.regression_loss must be one of {REGRESSION_LOSSES}, got {cfg.regression_loss!r}")
        if cfg.regression_output not in REGRESSION_OUTPUTS:
            raise ValueError(f"{label}.regression_output must be one of {REGRESSION_OUTPUTS}, "
                             f"got {cfg.regression_output!r}")
    for cfg, label in ((p.detector, "detector"), (p.det_ablation, "det_ablation"), (p.keypoint, "keypoint"),
                       (p.kp_ablation, "kp_ablation")):
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"{label}.optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"{label}.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    if p.precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {p.precision!r}")


def start_notebook(profile: str, overrides: dict | None = None) -> Profile:
    """The first call of every notebook: load the profile, create its output folders, say where they are."""
    p = load_profile(profile, **(overrides or {}))
    for d in (p.run_dir, p.figures_dir, p.generated_dir):
        d.mkdir(parents=True, exist_ok=True)
    rel = lambda d: d.relative_to(REPO_ROOT)  # noqa: E731
    print(f"profile {p.name}: figures -> {rel(p.figures_dir)}/, numbers -> {rel(p.generated_dir)}/, "
          f"checkpoints -> {rel(p.run_dir)}/")
    return p
