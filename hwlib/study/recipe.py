"""The training-recipe study (issue #14): how many training images each recipe needs to reach a goal accuracy.

Images to accuracy is machine-independent (seconds are not): a model is validated every ``eval_every`` steps on
the validation split (never the test split: this study makes choices), and its images to the goal are
``batch_size x`` the first evaluated step at which the validation metric reaches the goal (NaN if it never does).
Every recipe is an arm of :data:`RECIPES`: ``DetectorConfig`` / ``KeypointConfig`` overrides of one task's base
(one of the ``cpu`` profile's configs at a shorter schedule, with the recipe the study started from pinned, so that
its finished runs stay valid when the profile adopts a winner), trained with several seeds on the same streams as
the headline models; the record (SPEC §7) holds, per seed, the final validation metric, the images to the goal and
the gain over the last quarter of the schedule (the plateau criterion, :func:`hwlib.study.results.plateau`; exact only
where 0.75 of an arm's steps is one of its evaluations). Each arm is paired with its control: the task's first arm,
or the arm its ``"vs"`` names.

Run it (each finished run is kept under ``runs/recipe/`` and loaded, not retrained, when the study is resumed)::

    python -m hwlib.recipe --task heatmap            # every arm of one task, 3 seeds
    python -m hwlib.recipe --task detector --arms "lr 4e-3" --seeds 2
    python -m hwlib.recipe --task regression --train "lr 1e-3" --seed 1   # one run only (run several at once)

A run counts once its two JSON files are there (``<name>.json`` with its config and last step, ``<name>.history.json``),
so runs trained elsewhere (in parallel on a GPU) join the study without their weights; the record's setting names the
device of any run not trained on a CPU.

It writes ``report/generated/recipe.json`` (+ its macros, prefix ``Recipe``), the validation curves beside it
(``recipe_curves.json``), the table ``recipe_table.tex`` and the figure ``figures/recipe_curves.pdf``; tasks already
there are kept, the one run is replaced. It is not a notebook stage: the pipeline does not run it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from hwlib.config import REPO_ROOT, load_profile

# the optimizer, decay and averaging every run of the study began with (AdamW, cosine, no EMA), pinned in the tasks'
# bases so that their finished runs stay valid when the profile adopts another
_TRAINING = {"optimizer": "adamw", "schedule": "cosine", "ema": 0.0}
# the regression head every regression run of the study began with (no LayerNorm, which the profile adopted since)
_ORIGINAL_HEAD = {"regression_norm": False}
# the detector study's batch-8 recipe: the 3,200 images of its base in twice the steps
_BATCH_8 = {"batch_size": 8, "steps": 400, "eval_every": 40}

# task -> metric, goal, model, base overrides of the profile's config (``config``: which, default the task's headline
# config), arms
RECIPES: dict = {
    "heatmap": {
        "metric": "pck_0.05", "goal": 0.95, "model": "heatmap",
        # 6,400 images, the #14 goal's budget; batch and lr pinned to the profile's recipe when the study began
        "base": {"steps": 200, "eval_every": 10, "n_val": 500, "batch_size": 32, "lr": 4e-3,
                 "regression_steps": 2000, "regression_lr": 0.0, **_TRAINING},
        "arms": {
            "profile (lr 4e-3, batch 32)": {},
            "lr 8e-3": {"lr": 8e-3},
            "batch 16, 400 steps": {"batch_size": 16, "steps": 400, "eval_every": 20},
            "EMA 0.98": {"ema": 0.98},
            # "vs": the arm this one is paired with (default: the task's first arm, the profile's recipe)
            "batch 16, 400 steps, lr 8e-3": {"batch_size": 16, "steps": 400, "eval_every": 20, "lr": 8e-3,
                                             "vs": "batch 16, 400 steps"},
            "batch 8, 800 steps": {"batch_size": 8, "steps": 800, "eval_every": 40},
            "batch 8, 800 steps, lr 8e-3": {"batch_size": 8, "steps": 800, "eval_every": 40, "lr": 8e-3,
                                            "vs": "batch 8, 800 steps"},
            "batch 4, 1600 steps, lr 8e-3": {"batch_size": 4, "steps": 1600, "eval_every": 80, "lr": 8e-3,
                                             "vs": "batch 8, 800 steps, lr 8e-3"},
            # the same recipe at the headline's 32,000 images: does it still reach a plateau there?
            "batch 4, 8000 steps, lr 8e-3": {"batch_size": 4, "steps": 8000, "eval_every": 200, "lr": 8e-3,
                                             "vs": "batch 4, 1600 steps, lr 8e-3"},
            "batch 16, 400 steps, OHKM 2": {"batch_size": 16, "steps": 400, "eval_every": 20, "ohkm": 2,
                                            "vs": "batch 16, 400 steps"},
        },
    },
    "detector": {
        "metric": "map_standard", "goal": 0.85, "model": "seed_exact",
        # 3,200 images, the #14 goal's budget; batch and data pinned to the profile's when the study began
        "base": {"steps": 200, "eval_every": 20, "n_val": 250, "batch_size": 16, "balanced_classes": False, "lr": 2e-3,
                 **_TRAINING},
        "arms": {
            "profile (lr 2e-3, batch 16)": {},
            "lr 4e-3": {"lr": 4e-3},
            "batch 8, 400 steps": {**_BATCH_8},
            "batch 8, 400 steps, lr 4e-3": {**_BATCH_8, "lr": 4e-3, "vs": "batch 8, 400 steps"},
            # warm-up, loss gains and assignment (#14), trained on a GPU where one is lent (--train, one process per
            # run) and paired with a control of their own (the "batch 8, 400 steps" config again, a run of its own),
            # so that no difference mixes the arm with the device
            "batch 8, 400 steps (control)": {**_BATCH_8, "vs": "batch 8, 400 steps (control)"},
            "batch 8, 400 steps, warm-up 10": {**_BATCH_8, "warmup_steps": 10, "vs": "batch 8, 400 steps (control)"},
            "batch 8, 400 steps, box gain 0.1": {**_BATCH_8, "box_gain": 0.1, "vs": "batch 8, 400 steps (control)"},
            "batch 8, 400 steps, class gain 1.0": {**_BATCH_8, "cls_gain": 1.0, "vs": "batch 8, 400 steps (control)"},
            "batch 8, 400 steps, anchor_t 3": {**_BATCH_8, "anchor_t": 3.0, "vs": "batch 8, 400 steps (control)"},
            # optimizer, schedule and weight averaging (#14), on the CPU, paired with the CPU's batch-8 arm: SGD with
            # YOLOv5's Nesterov momentum at YOLOv5's nominal lr0, a linear decay in place of the cosine, weight EMA
            "batch 8, 400 steps, SGD lr 1e-2": {**_BATCH_8, "optimizer": "sgd", "lr": 1e-2, "vs": "batch 8, 400 steps"},
            # SGD again at the rate of the lowest loss of its range test (--lr-range sgd: 2.9e-2), 1e-2 having failed,
            # and at YOLOv5's own rate per image: its lr0 0.01 on a loss summed over 64 images is ~0.01 x 8 on our
            # batch-8 mean
            "batch 8, 400 steps, SGD lr 3e-2": {**_BATCH_8, "optimizer": "sgd", "lr": 3e-2, "vs": "batch 8, 400 steps"},
            "batch 8, 400 steps, SGD lr 8e-2": {**_BATCH_8, "optimizer": "sgd", "lr": 8e-2, "vs": "batch 8, 400 steps"},
            "batch 8, 400 steps, linear decay": {**_BATCH_8, "schedule": "linear", "vs": "batch 8, 400 steps"},
            "batch 8, 400 steps, EMA 0.99": {**_BATCH_8, "ema": 0.99, "vs": "batch 8, 400 steps"},
            # halving the batch again (more updates per image, as batch 16 -> 8 gave)
            "batch 4, 800 steps": {"batch_size": 4, "steps": 800, "eval_every": 80, "vs": "batch 8, 400 steps"},
            # do the two changes that helped at batch 8 add up? the box gain (GPU) on top of the linear decay (CPU)
            "batch 8, 400 steps, linear decay, box gain 0.1": {**_BATCH_8, "schedule": "linear", "box_gain": 0.1,
                                                               "vs": "batch 8, 400 steps, linear decay"},
        },
    },
    "regression": {
        "metric": "pck_0.05", "goal": 0.8, "model": "regression",
        "base": {"regression_steps": 1000, "eval_every": 50, "n_val": 500, "batch_size": 32, "lr": 4e-3,
                 "regression_lr": 0.0, "steps": 500, **_TRAINING, **_ORIGINAL_HEAD},
        "arms": {
            "profile (lr 4e-3)": {},
            "lr 1e-3": {"lr": 1e-3},
            "EMA 0.995": {"ema": 0.995},
            # direct regression that can see where a feature lies: (x, y) channels on the input (CoordConv)
            "lr 1e-3, CoordConv": {"lr": 1e-3, "coord_channels": True, "vs": "lr 1e-3"},
            # the loss on the coordinates (#14): L1 (the profile's) against wing loss, which keeps pulling small
            # errors, and smooth L1, which lets them go
            "lr 1e-3, wing loss": {"lr": 1e-3, "regression_loss": "wing", "vs": "lr 1e-3"},
            "lr 1e-3, smooth L1": {"lr": 1e-3, "regression_loss": "smooth_l1", "vs": "lr 1e-3"},
            # where GAP+FC regression reaches its plateau: the cpu profile's recipe (batch 16, lr 1e-3) at its
            # 4,000 steps and at 4x the schedule (trained in parallel on a GPU where one is lent: --train)
            "batch 16, lr 1e-3, 4000 steps": {"batch_size": 16, "lr": 1e-3, "regression_steps": 4000,
                                              "eval_every": 200, "vs": "batch 16, lr 1e-3, 4000 steps"},
            "batch 16, lr 1e-3, 16000 steps": {"batch_size": 16, "lr": 1e-3, "regression_steps": 16000,
                                               "eval_every": 500, "vs": "batch 16, lr 1e-3, 4000 steps"},
            # a GPU step costs about as much at batch 64 as at 16 (it is launch-bound): the 16,000-step arm's
            # 256,000 images in a quarter of the steps
            "batch 64, lr 2e-3, 4000 steps": {"batch_size": 64, "lr": 2e-3, "regression_steps": 4000,
                                              "eval_every": 200, "vs": "batch 16, lr 1e-3, 16000 steps"},
        },
    },
    # the standard regression head's three differences from the original (DeepPose, MMPose's RegressionHead; hwlib.
    # keypoints.RegressionNet), each paired with the original head at the cpu profile's recipe (batch 16, lr 1e-3),
    # 2,000 steps, 3 seeds, on validation: adopted only where its paired interval excludes 0
    "regression-head": {
        "metric": "pck_0.05", "goal": 0.8, "model": "regression",
        "base": {"regression_steps": 2000, "eval_every": 250, "n_val": 500, **_TRAINING, **_ORIGINAL_HEAD},
        "arms": {
            "original head (sigmoid)": {},
            "linear output": {"regression_output": "linear"},
            "head in fp32": {"regression_fp32_head": True},
            "LayerNorm after pooling": {"regression_norm": True},
        },
    },
    # notebook 03's trained arms (det_ablation): which setting brings their baseline within 0.05 mAP of the seed-exact
    # headline (#15), on balanced data; the first arm is the first round's arm setting, the others candidates
    "arms": {
        "metric": "map_standard", "goal": 0.85, "model": "seed_exact", "config": "det_ablation",
        "base": {"width": 0.5, "n_train": 3200, "n_val": 250, "steps": 160, "batch_size": 16, "lr": 3e-3,
                 "warmup_steps": 25, "eval_every": 20, "balanced_classes": True, **_TRAINING},
        "arms": {
            "first-round arm setting (width 0.5)": {},
            "width 0.5, batch 8, 1000 steps": {"n_train": 6000, "batch_size": 8, "steps": 1000, "lr": 2e-3,
                                               "warmup_steps": 40, "eval_every": 50},
            "width 1.0, batch 8, 800 steps": {"width": 1.0, "n_train": 6000, "batch_size": 8, "steps": 800,
                                              "lr": 2e-3, "warmup_steps": 40, "eval_every": 100},
            # both candidates above were still rising (last-quarter gains 0.039 / 0.045): the narrow one, twice as long
            "width 0.5, batch 8, 2000 steps": {"width": 0.5, "n_train": 6000, "batch_size": 8, "steps": 2000,
                                               "lr": 2e-3, "warmup_steps": 40, "eval_every": 100,
                                               "vs": "width 0.5, batch 8, 1000 steps"},
        },
    },
    # where the headline detectors level off (#15): the profile's own recipe (nothing pinned) at twice its schedule
    # (0.75 * 3,200 steps is an evaluation), beside the headline schedule. The 1,600-step
    # arms are notebook 02's own runs, config for config (seed 0 validated every 200 steps, the other seeds at
    # quarters): their two JSON files copied from runs/cpu/02_<model>_s<seed>.* as runs/recipe/plateau_<arm>_s<seed>.*
    # join the study without training. Every arm is its own control (one or two seeds each: no interval to pair).
    "plateau": {
        "metric": "map_standard", "goal": 0.85, "model": "seed_exact",
        # pinned to the headline schedule these runs were trained against (the cpu profile has since moved to 3,200)
        "base": {"steps": 1600, "eval_every": 200},
        "arms": {
            "seed-exact, 1600 steps": {"vs": "seed-exact, 1600 steps"},
            "seed-exact, 3200 steps": {"steps": 3200, "vs": "seed-exact, 3200 steps"},
            "rf-aware, 1600 steps": {"head": "dilated", "eval_every": 400, "vs": "rf-aware, 1600 steps"},
            # validated at quarters, as notebook 02 validates its seeds after the first: run with --seed-ids 1 2 (2 is
            # the slow seed), these are the runs notebook 02 would train at 3,200 steps
            "rf-aware, 3200 steps": {"steps": 3200, "head": "dilated", "eval_every": 800, "vs": "rf-aware, 3200 steps"},
        },
    },
    # notebook 05's cheaper heatmap setting (kp_ablation): which schedule brings its base arm within 0.03 of its plateau
    "ablation": {
        "metric": "pck_0.05", "goal": 0.9, "model": "heatmap", "config": "kp_ablation",
        "base": {"eval_every": 20, "n_val": 500, "steps": 120, "batch_size": 32, "lr": 4e-3, **_TRAINING},
        "arms": {
            "profile (120 steps, batch 32)": {},
            "batch 16, 500 steps": {"batch_size": 16, "steps": 500, "eval_every": 50},
            "batch 16, 1000 steps": {"batch_size": 16, "steps": 1000, "eval_every": 100},
            "batch 16, 2000 steps": {"batch_size": 16, "steps": 2000, "eval_every": 100},
        },
    },
}


def _detects(task: str) -> bool:
    """Whether ``task`` trains a detector (its ``model`` names one), not a keypoint model."""
    return RECIPES[task]["model"] == "seed_exact"


def base_config(task: str, profile: str = "cpu"):
    """The task's base config: the profile's headline config with the study's overrides."""
    p = load_profile(profile)
    spec = RECIPES[task]
    cfg = getattr(p, spec.get("config", "detector" if _detects(task) else "keypoint"))
    return dataclasses.replace(cfg, **spec["base"])


def run_recipe(task: str, arms=None, seeds=3, run_dir=None, profile: str = "cpu", progress: bool = True):
    """Train every arm (or those named, and the controls they are paired with, :func:`control_of`) of ``task`` for
    ``seeds`` seeds (a number: seeds 0 .. seeds - 1; or a list of seed ids, e.g. ``[2]``, one headline seed's
    stream) with validation; returns ``({arm: Record}, {arm: [History per seed]})``."""
    ids = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise ValueError(f"seeds must be a positive count or distinct non-negative seed ids, got {seeds!r}")
    from hwlib.study.results import Record, plateau

    if task not in RECIPES:
        raise ValueError(f"task must be one of {list(RECIPES)}, got {task!r}")
    spec = RECIPES[task]
    names = list(spec["arms"]) if arms is None else list(arms)
    bad = [a for a in names if a not in spec["arms"]]
    if bad:
        raise ValueError(f"unknown {task} arms {bad}; valid: {list(spec['arms'])}")
    missing = [control_of(task, a) for a in names]   # controls (and theirs) run first, or are loaded (reuse): every
    while missing:                                   # arm is paired
        vs = missing.pop()
        if vs not in names:
            names.insert(0, vs)
            missing.append(control_of(task, vs))
    base = base_config(task, profile)
    records, histories = {}, {}
    for arm in names:
        cfg = arm_config(task, arm, base)
        per_seed, secs, hists = [], [], []
        for s in ids:
            h = recorded_history(task, arm, s, run_dir, profile)
            if h is None:
                h = train_arm(task, arm, s, run_dir, profile, progress)
            first = h.first_reaching(spec["metric"], spec["goal"], field="step")
            final = h.evals[-1][spec["metric"]]
            per_seed.append({"final": final, "images_to_goal": first * cfg.batch_size if first is not None else math.nan,
                             "best": max(e[spec["metric"]] for e in h.evals)})
            secs.append(h.train_seconds)
            hists.append(h)
        elsewhere = sorted({h.device for h in hists} - {"cpu", ""})
        setting = _setting(cfg, task) + (f", trained on {' and '.join(elsewhere)}" if elsewhere else "")
        records[arm] = Record(ids, per_seed, secs, [_steps(cfg, task) * cfg.batch_size] * len(ids),
                              plateau=plateau(hists, spec["metric"], of=len(ids)), setting=setting)
        histories[arm] = hists
    records = {a: r if control_of(task, a) == a else r.with_baseline(records[control_of(task, a)], ["final", "best"])
               for a, r in records.items()}
    return records, histories


# learning-rate range tests (Smith 2017): the top of each optimizer's sweep (RANGE_DECADES decades below it to it)
LR_RANGE_MAX = {"adamw": 0.1, "sgd": 1.0}


def lr_range_test(task: str, optimizer: str = "adamw", steps: int = 100, seed: int = 0, lr_max: float | None = None,
                  profile: str = "cpu", arm: str | None = None, smoothing: float = 0.9, diverge: float = 4.0,
                  progress: bool = False) -> dict:
    """A learning-rate range test (Smith 2017) of ``task``'s base config, or of ``arm``'s (its batch size and data),
    with ``optimizer``: ``steps`` steps of its batch at a learning rate rising geometrically (:func:`hwlib.vision.train.lr_at`,
    schedule ``"range"``) up to ``lr_max`` (default :data:`LR_RANGE_MAX`), on the task's training stream for ``seed``,
    no validation. Returns :func:`range_summary` of the run (``lr``, ``loss``, ``smoothed``, ``min_loss_lr``,
    ``suggested_lr``, ``diverged_lr``) with ``batch_size``, ``steps`` and ``arm`` (``"base"`` without one). The
    sweep's later steps train an already-changed model, so the curve ranks rates; it does not replace training."""
    import tempfile

    from hwlib.vision.train import NonFiniteLossError, lr_at

    top = LR_RANGE_MAX[optimizer] if lr_max is None else lr_max
    start = arm_config(task, arm, base_config(task, profile)) if arm else base_config(task, profile)
    sweep = {"optimizer": optimizer, "schedule": "range", "lr": top, "steps": steps, "ema": 0.0, "eval_every": 0}
    if RECIPES[task]["model"] == "regression":             # its own steps and rate give way to the sweep's
        sweep.update(regression_lr=0.0, regression_steps=0)
    cfg = dataclasses.replace(start, **sweep)
    nonfinite = False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            hist = _train(task, cfg, seed, Path(tmp) / f"lr_range_{task}_{optimizer}.pt", progress, validate=False,
                          reuse=False)
        except NonFiniteLossError as e:
            hist, nonfinite = e.history, True
    if not hist.loss:
        raise ValueError(f"{task} / {optimizer}: the loss was not finite at the first step of the sweep "
                         f"(lr {lr_at(0, steps, top, 0, 'range'):.1e}); lower lr_max")
    lrs = [lr_at(s, steps, top, 0, "range") for s in hist.steps]
    after = lr_at(hist.steps[-1] + 1, steps, top, 0, "range") if nonfinite else None
    return {**range_summary(lrs, hist.loss, smoothing, diverge, nonfinite_lr=after),
            "batch_size": cfg.batch_size, "steps": steps, "arm": arm or "base"}


def range_summary(lrs, losses, smoothing: float = 0.9, diverge: float = 4.0, nonfinite_lr: float | None = None) -> dict:
    """The reading of a learning-rate range test (:func:`lr_range_test`) from its rates and losses (same length, rates
    rising; the loss of a step is measured before that step's update, as in fastai's finder): ``smoothed``
    (exponential average, bias-corrected), ``min_loss_lr`` (the rate at its lowest value before divergence; the average
    lags the raw loss by about ``1 / (1 - smoothing)`` steps, which the tenth below allows for), ``suggested_lr`` (a
    tenth of that), ``diverged_lr`` (the first rate whose average exceeds ``diverge`` x its running minimum; else
    ``nonfinite_lr``, the rate at which the loss became non-finite)."""
    if not losses or len(lrs) != len(losses):
        raise ValueError(f"need one loss per rate, got {len(lrs)} rates and {len(losses)} losses")
    smoothed, avg, low, diverged = [], 0.0, math.inf, None
    for i, (lr, loss) in enumerate(zip(lrs, losses)):
        avg = smoothing * avg + (1 - smoothing) * loss
        smoothed.append(avg / (1 - smoothing ** (i + 1)))
        low = min(low, smoothed[-1])
        if diverged is None and smoothed[-1] > diverge * low:
            diverged = lr
    diverged = nonfinite_lr if diverged is None else diverged
    best = min((i for i, lr in enumerate(lrs) if diverged is None or lr < diverged), key=lambda i: smoothed[i])
    return {"lr": list(lrs), "loss": list(losses), "smoothed": smoothed, "min_loss_lr": lrs[best],
            "suggested_lr": lrs[best] / 10, "diverged_lr": diverged}


def lr_range_figure(tests: dict, path=None):
    """The smoothed training loss against the learning rate (log axis), one panel per task, one line per optimizer,
    the suggested rate marked. ``tests``: ``{task: {optimizer: lr_range_test(...)}}``."""
    from hwlib.study.plots.style import FULL_WIDTH, PALETTE, STYLE, _figure, _finish, plt

    with plt.rc_context(STYLE):
        fig, axes = _figure(FULL_WIDTH, 2.3, 1, len(tests))
        for ax, (task, runs) in zip(axes.flat, tests.items()):
            for i, (opt, t) in enumerate(runs.items()):
                ax.plot(t["lr"], t["smoothed"], color=PALETTE[i % len(PALETTE)], lw=1.2,
                        label=f"{opt} (suggested {t['suggested_lr']:.1e})")
                ax.axvline(t["suggested_lr"], color=PALETTE[i % len(PALETTE)], ls=":", lw=1)
            top = max(max(t["smoothed"][: max(1, len(t["smoothed"]) // 4)]) for t in runs.values())
            ax.set_ylim(0, 1.5 * top)
            ax.set_xscale("log")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("training loss (smoothed)")
            first = next(iter(runs.values()))
            ax.set_title(f"{task}: {first['arm']} (batch {first['batch_size']})")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", fontsize=7, frameon=True, framealpha=0.85)
        return _finish(fig, path)


def _run_path(task: str, arm: str, seed: int, run_dir=None) -> Path:
    """Checkpoint path of one run of the study: ``<run_dir>/<task>_<arm slug>_s<seed>.pt``."""
    return Path(run_dir or REPO_ROOT / "runs" / "recipe") / f"{task}_{_slug(arm)}_s{seed}.pt"


def train_arm(task: str, arm: str, seed: int, run_dir=None, profile: str = "cpu", progress: bool = True):
    """Train (or load, when finished) one seed of one arm, with validation; returns its ``History``. Runs of one
    study are independent, so several can train at once (``--train``: one process per run, on a GPU)."""
    cfg, ckpt = arm_config(task, arm, base_config(task, profile)), _run_path(task, arm, seed, run_dir)
    return _train(task, cfg, seed, ckpt, progress, reuse=True, store=_store(profile, run_dir))


def _train(task: str, cfg, seed: int, ckpt: Path, progress: bool, **kwargs):
    """Train ``task``'s model (detector or keypoint method) under ``cfg`` with checkpoint ``ckpt``; returns its
    ``History``. ``kwargs``: ``validate``, ``reuse`` of :func:`hwlib.study.obtain.train_detector` /
    :func:`hwlib.study.obtain.train_keypoint_model`."""
    from hwlib.study.obtain import train_detector, train_keypoint_model

    if _detects(task):
        return train_detector(cfg, seed=seed, run_dir=ckpt.parent, name=ckpt.stem, progress=progress, **kwargs)[1]
    return train_keypoint_model(RECIPES[task]["model"], cfg, seed=seed, run_dir=ckpt.parent, name=ckpt.stem,
                                progress=progress, **kwargs)[1]


def recorded_history(task: str, arm: str, seed: int, run_dir=None, profile: str = "cpu"):
    """The validation history of a finished run of this arm's config, or ``None``: from the profile's run store
    (:mod:`hwlib.study.store`), else from the JSON files training writes beside its checkpoint (``<name>.json``: config and
    last step; ``<name>.history.json``). The study needs only the curve, so a run trained on another machine counts
    with its store file, or these two files, without its weights."""
    from hwlib.study.obtain import _history_path, finished_meta, stored_run
    from hwlib.vision.train import History

    cfg, ckpt = arm_config(task, arm, base_config(task, profile)), _run_path(task, arm, seed, run_dir)
    method = "detector" if _detects(task) else RECIPES[task]["model"]
    rec = stored_run("detector" if _detects(task) else "keypoint", method, cfg, seed, _store(profile, run_dir))
    if rec is not None:
        return rec.history()
    side, hist = ckpt.with_suffix(".json"), _history_path(ckpt)
    if not (side.exists() and hist.exists()):
        return None
    meta, steps = json.loads(side.read_text()), _steps(cfg, task)
    ignore = cfg.unread_by(RECIPES[task]["model"]) if not _detects(task) else frozenset()
    if not finished_meta(meta, cfg, steps, ignore) or meta.get("model") != _model_class(task):
        return None
    h = History.from_dict(json.loads(hist.read_text()))
    return h if h.evals and h.evals[-1].get("step") == steps else None     # not a log left by an earlier run


def _store(profile: str, run_dir=None) -> Path:
    """Where the study's runs are recorded: the profile's run store (``results/runs/`` for ``cpu``), or
    ``<run_dir>/store`` for runs kept in a folder of their own (``--run-dir``)."""
    return Path(run_dir) / "store" if run_dir is not None else load_profile(profile).store


def _model_class(task: str) -> str:
    """Class name of the model ``task`` trains (what a checkpoint's ``"model"`` records): the entry of
    :data:`hwlib.study.checkpoints.MODEL_CLASSES` for its task and method."""
    from hwlib.study.checkpoints import MODEL_CLASSES

    key = ("detector", None) if _detects(task) else ("keypoint", RECIPES[task]["model"])
    return next(name for name, of in MODEL_CLASSES.items() if of == key)


def control_of(task: str, arm: str) -> str:
    """The arm ``arm`` is paired with: its ``"vs"`` entry, else the task's first arm (the profile's recipe, paired
    with itself). An arm whose ``"vs"`` names itself is paired with nothing (a new control, e.g. one trained on
    another device than the first arm)."""
    arms = RECIPES[task]["arms"]
    vs = arms[arm].get("vs", next(iter(arms)))
    if vs not in arms:
        raise ValueError(f"{task} arm {arm!r} is paired with {vs!r}, which is not an arm of {task}")
    return vs


def arm_config(task: str, arm: str, base=None):
    """The config of one arm: the task's base config (:func:`base_config`) with the arm's overrides."""
    overrides = {k: v for k, v in RECIPES[task]["arms"][arm].items() if k != "vs"}
    return dataclasses.replace(base if base is not None else base_config(task), **overrides)


def _steps(cfg, task) -> int:
    """Optimizer steps of ``task``'s model under ``cfg``."""
    return cfg.steps if _detects(task) else cfg.steps_of(RECIPES[task]["model"])


def _setting(cfg, task) -> str:
    """``"200 steps x batch 32, lr 0.004, warm-up 50, EMA 0"``: what a recipe sets (plain text, no LaTeX specials),
    and the keypoint options an arm turns on (``OHKM 2``, ``CoordConv``, a regression loss other than L1)."""
    lr = cfg.lr if _detects(task) else cfg.lr_of(RECIPES[task]["model"])
    out = f"{_steps(cfg, task)} steps x batch {cfg.batch_size}, lr {lr:g}, warm-up {cfg.warmup_steps}"
    out += ", SGD-Nesterov" if cfg.optimizer == "sgd" else ""
    out += f", {cfg.schedule} decay" if cfg.schedule != "cosine" else ""
    if _detects(task):
        return out + (f", {cfg.head} heads" if cfg.head != "seed" else "") + (f", EMA {cfg.ema:g}" if cfg.ema else "")
    out += f", EMA {cfg.ema:g}" + (f", OHKM {cfg.ohkm}" if cfg.ohkm else "")
    if RECIPES[task]["model"] == "regression":
        out += (", CoordConv" if cfg.coord_channels else "") + (
            f", {cfg.regression_loss} loss" if cfg.regression_loss != "l1" else "")
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


# how the report prints a task, a metric and an arm (the keys stay as stored in recipe.json)
TASK_TITLES = {"heatmap": "heatmap", "detector": "detector", "regression": "regression", "arms": "ablation detector",
               "plateau": "full-width detectors", "ablation": "ablation heatmap", "regression-head": "regression head"}
METRIC_LABELS = {"map_standard": "mAP@0.5", "pck_0.05": "PCK@0.05"}
_ARM_WORDS = (("first-round arm setting", "initial arm setting"), ("profile (", "initial ("), ("anchor_t", "side ratio"),
              ("seed-exact", "original network"), ("rf-aware", "RF-aware network"))


def arm_label(arm: str) -> str:
    """An arm's name as the report prints it: the words of its settings, not of the code or of how it came about."""
    for old, new in _ARM_WORDS:
        arm = arm.replace(old, new)
    return arm


def recipe_table(results: dict):
    """``(header, rows)``: every task's arms, images to the goal, final validation metric (mean ± std) and its paired
    difference against its control arm (mean [95% CI]): the task's profile recipe unless the row names another."""
    from hwlib.study.report import tex_escape
    from hwlib.study.results import diff_cell, pm

    rows = []
    for task, t in results.items():
        if task not in RECIPES:
            continue
        for arm, r in t["arms"].items():
            reached = sum(1 for v in r["per_seed"]["images_to_goal"] if v == v)
            vs = control_of(task, arm) if arm in RECIPES[task]["arms"] else None
            diff = diff_cell(r, "final")
            if vs not in (None, arm, next(iter(RECIPES[task]["arms"]))):  # its own control, named under the difference
                diff = f"\\begin{{tabular}}[t]{{@{{}}r@{{}}}}{diff}\\\\vs {tex_escape(arm_label(vs))}\\end{{tabular}}"
            rows.append([f"{TASK_TITLES.get(task, task)}: {arm_label(arm)}", str(r["train_images"][0]), f"{reached}/{len(r['seeds'])}",
                         pm(r, "images_to_goal", digits=0), pm(r, "final"), diff])
        rows.append("midrule")
    return ["task: setting", "images", "reached", "images to goal", "final (validation)",
            "$\\Delta$ final vs control [95\\% CI]"], rows[:-1]


def recipe_curves(curves: dict, results: dict, path=None):
    """Validation metric against training images, one panel per task, one colour and line style per arm (its legend
    below its panel), one line per seed, the goal dotted (:func:`hwlib.study.plots.run_curves`). ``curves``: ``{task:
    {arm: {"batch": batch size, "runs": [[(step, value), ...] per seed]}}}``."""
    from hwlib.study import plots

    panels = {}
    for task, arms in curves.items():
        lo = min(v for a in arms.values() for c in a["runs"] for _, v in c[len(c) // 3:])
        panels[TASK_TITLES.get(task, task)] = {
            "ylabel": f"validation {METRIC_LABELS.get(results[task]['metric'], results[task]['metric'])}",
            "goal": results[task]["goal"], "ylim": (max(0.0, lo - 0.05), 1.0),
            "runs": {arm_label(arm): [([s * a["batch"] for s, _ in c], [v for _, v in c]) for c in a["runs"]]
                     for arm, a in arms.items()}}
    return plots.run_curves(panels, path, xlabel="training images")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m hwlib.recipe")
    ap.add_argument("--task", choices=list(RECIPES), help="the task whose arms to train (required unless --redraw)")
    ap.add_argument("--redraw", action="store_true", help="train nothing: rebuild the table and the figure from the "
                    "committed recipe.json and recipe_curves.json")
    ap.add_argument("--arms", nargs="+", help="arm names (default: all of the task's)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0 .. SEEDS - 1")
    ap.add_argument("--seed-ids", type=int, nargs="+", metavar="S",
                    help="these seeds instead of --seeds (e.g. 2: the stream of one headline seed)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--run-dir", help="checkpoints (default: runs/recipe/)")
    ap.add_argument("--out", help="write the JSON, table and figure here (default: the profile's generated/figures dirs)")
    ap.add_argument("--train", metavar="ARM", help="only train this arm's seed --seed (no controls, nothing written but "
                    "the run's files): one process per run, to train runs in parallel (on a GPU)")
    ap.add_argument("--seed", type=int, default=0, help="with --train: the seed")
    ap.add_argument("--lr-range", nargs="+", metavar="OPTIMIZER", choices=list(LR_RANGE_MAX),
                    help="instead of training arms: a learning-rate range test with each optimizer of the task's base "
                    "config, or of the first --arms arm's (recipe.json's lr_range, figures/recipe_lr_range.pdf)")
    ap.add_argument("--range-steps", type=int, default=100, help="with --lr-range: the sweep's steps")
    args = ap.parse_args(argv)
    from hwlib.io import atomic_write_text
    from hwlib.study.report import write_results, write_table

    if args.redraw:
        p = load_profile(args.profile)
        gen_dir, fig_dir = (Path(args.out),) * 2 if args.out else (p.generated_dir, p.figures_dir)
        if not (gen_dir / "recipe.json").exists() or not (gen_dir / "recipe_curves.json").exists():
            print(f"error: --redraw needs recipe.json and recipe_curves.json in {gen_dir} (train a task first)",
                  file=sys.stderr)
            return 2
        results = json.loads((gen_dir / "recipe.json").read_text())
        write_table(gen_dir, "recipe_table", *recipe_table(results), align="lrrrrr")
        recipe_curves(json.loads((gen_dir / "recipe_curves.json").read_text()), results, fig_dir / "recipe_curves.pdf")
        print(f"recipe table and figure redrawn from {gen_dir / 'recipe.json'}")
        return 0
    if args.task is None:
        ap.error("--task is required (or --redraw)")
    if args.lr_range:
        return _main_lr_range(args)

    if args.train is not None:
        if args.train not in RECIPES[args.task]["arms"]:
            print(f"error: unknown {args.task} arm {args.train!r}; valid: {list(RECIPES[args.task]['arms'])}",
                  file=sys.stderr)
            return 2
        h = train_arm(args.task, args.train, args.seed, args.run_dir, args.profile)
        print(f"{args.task} / {args.train} / seed {args.seed} on {h.device or 'an unrecorded device'}: "
              f"final {h.evals[-1][RECIPES[args.task]['metric']]:.4f} after {h.train_seconds:.0f} s of training")
        return 0

    t0 = time.time()
    try:
        records, histories = run_recipe(args.task, args.arms, args.seed_ids or args.seeds, run_dir=args.run_dir,
                                        profile=args.profile)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    p = load_profile(args.profile)
    gen_dir = Path(args.out) if args.out else p.generated_dir
    fig_dir = Path(args.out) if args.out else p.figures_dir
    path = gen_dir / "recipe.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    spec = RECIPES[args.task]
    results.setdefault("profile", args.profile)
    task = results.setdefault(args.task, {"arms": {}})        # arms run before (other --arms) are kept
    task.update({"metric": spec["metric"], "goal": spec["goal"], "split": "val"})
    task["arms"].update({a: r.to_json() for a, r in records.items()})
    cpath = gen_dir / "recipe_curves.json"
    curves = json.loads(cpath.read_text()) if cpath.exists() else {}
    base = base_config(args.task, args.profile)
    curves.setdefault(args.task, {}).update(
        {a: {"batch": arm_config(args.task, a, base).batch_size,
             "runs": [[(e["step"], e[spec["metric"]]) for e in h.evals] for h in hs]} for a, hs in histories.items()})
    atomic_write_text(cpath, json.dumps(curves) + "\n")
    write_results(gen_dir, "recipe", results, prefix="Recipe")
    write_table(gen_dir, "recipe_table", *recipe_table(results), align="lrrrrr")
    recipe_curves(curves, results, fig_dir / "recipe_curves.pdf")
    print(f"{args.task}: {len(records)} arms x {len(args.seed_ids or range(args.seeds))} seeds in {time.time() - t0:.0f} s -> {path}")
    for arm, r in records.items():
        j = r.to_json()
        print(f"  {arm:32s} images to {spec['goal']}: {j['per_seed']['images_to_goal']}  final {j['mean']['final']:.4f}")
    return 0


def _main_lr_range(args) -> int:
    """``--lr-range``: run the tests, keep their scalars in recipe.json (``lr_range``) and their curves in
    recipe_lr_range.json, and draw every task's tests (figures/recipe_lr_range.pdf)."""
    from hwlib.io import atomic_write_text
    from hwlib.study.report import write_results

    if args.arms and (len(args.arms) > 1 or args.arms[0] not in RECIPES[args.task]["arms"]):
        print(f"error: --lr-range takes one arm of {args.task}, got {args.arms}; valid: {list(RECIPES[args.task]['arms'])}",
              file=sys.stderr)
        return 2
    p = load_profile(args.profile)
    gen_dir = Path(args.out) if args.out else p.generated_dir
    fig_dir = Path(args.out) if args.out else p.figures_dir
    path, cpath = gen_dir / "recipe.json", gen_dir / "recipe_lr_range.json"
    results = json.loads(path.read_text()) if path.exists() else {"profile": args.profile}
    curves = json.loads(cpath.read_text()) if cpath.exists() else {}
    for opt in args.lr_range:
        t0 = time.time()
        t = lr_range_test(args.task, opt, steps=args.range_steps, seed=args.seed, profile=args.profile,
                          arm=args.arms[0] if args.arms else None)
        curves.setdefault(args.task, {})[opt] = t
        results.setdefault("lr_range", {}).setdefault(args.task, {})[opt] = {
            k: t[k] for k in ("min_loss_lr", "suggested_lr", "diverged_lr", "batch_size", "steps", "arm")}
        print(f"{args.task} / {opt}: lowest smoothed loss at lr {t['min_loss_lr']:.2e}, suggested {t['suggested_lr']:.2e}"
              f", diverged at {t['diverged_lr'] if t['diverged_lr'] is None else format(t['diverged_lr'], '.2e')}"
              f" ({time.time() - t0:.0f} s)")
    atomic_write_text(cpath, json.dumps(curves) + "\n")
    write_results(gen_dir, "recipe", results, prefix="Recipe")
    lr_range_figure(curves, fig_dir / "recipe_lr_range.pdf")
    return 0
