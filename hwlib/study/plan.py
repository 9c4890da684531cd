"""What each training set asks for, without training: its runs, which the store holds, and the hours left.

Each set of :mod:`hwlib.study.stages` trains through :func:`hwlib.study.arms.run_detectors`,
:func:`~hwlib.study.arms.run_keypoint_methods` or :func:`~hwlib.study.arms.run_keypoint_arms`. The plans here list
the same runs by the same rules (each seed's config through :func:`~hwlib.study.arms._validated`, the ceiling runs
through :func:`~hwlib.study.arms.doubled` and :func:`~hwlib.study.arms.quarter_validation`), so that each planned
run has the training key the set would ask the store for; ``tests/test_plan.py`` trains a set at ``smoke`` and checks
that its plan then finds every run stored.

A planned run is **stored** (its key, or the key of an older code accepted as equivalent, :mod:`hwlib.study.accepted`),
**stale** (the store holds a run of its name, config and seed, trained by a code that was not accepted) or
**missing**. The hours left come from the runs' own images and this CPU's measured images per second
(:func:`speeds`): the median of the stored runs of the same model that trained on this CPU with the machine to
themselves, or else a short probe of that model's training steps here.
"""

from __future__ import annotations

import dataclasses
import statistics

from hwlib.study.arms import _seeds_of, _validated, doubled, quarter_validation

QUIET = 0.1          # a stored run counts for this CPU's speed where other processes took < 10% of the machine
BUSY = 0.5           # ... and it kept at least half the machine busy itself (not paused for part of its seconds)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One training a set asks for: ``task`` and ``method``, its run ``name``, the config it trains with and its seed."""

    task: str
    method: str
    name: str
    cfg: object
    seed: int

    @property
    def steps(self) -> int:
        return self.cfg.steps_of(self.method) if self.task == "keypoint" else self.cfg.steps

    @property
    def images(self) -> int:
        return self.steps * self.cfg.batch_size

    def key(self, code: str) -> str:
        from hwlib.study.store import training_key

        ignore = self.cfg.unread_by(self.method) if self.task == "keypoint" else frozenset()
        return training_key(self.task, self.method, self.cfg, self.seed, code, 1, ignore)

    def model(self) -> tuple:
        """What decides its speed: task, method, and the config fields that shape the model and its batch."""
        c = self.cfg
        if self.task == "detector":
            return ("detector", "detector", c.width, c.head, c.batch_size)
        return ("keypoint", self.method, c.base_channels, c.heatmap_size, c.skip, c.batch_size)


def detector_plan(base, arms: dict, seeds, prefix: str = "", validate: bool = False, validate_seeds=None,
                  ceiling=()) -> list[PlannedRun]:
    """The runs :func:`~hwlib.study.arms.run_detectors` asks for with these arguments."""
    out = []
    for name, over in arms.items():
        cfg = dataclasses.replace(base, **over)
        ss = _seeds_of(seeds, name)
        out += [PlannedRun("detector", "detector", f"{prefix}{name}_s{s}",
                           _validated(cfg, cfg.steps, ss.index(s), validate, validate_seeds), s) for s in ss]
        if name in ceiling:
            out += [PlannedRun("detector", "detector", f"{prefix}{name}_x2_s{s}",
                               quarter_validation(doubled(cfg), 2 * cfg.steps), s) for s in ss]
    return out


def keypoint_plan(base, arms: dict, seeds: int, prefix: str = "", validate: bool = True, validate_seeds=None,
                  ceiling=(), method: str | None = None) -> list[PlannedRun]:
    """The runs :func:`~hwlib.study.arms.run_keypoint_methods` asks for (``arms``: ``{method: {}}``, ``method``
    ``None``: each name is its method) or :func:`~hwlib.study.arms.run_keypoint_arms` (``arms``: ``{name:
    overrides}`` of ``method="heatmap"``, ``validate_seeds=0``)."""
    out = []
    for name, over in arms.items():
        m = method or name
        cfg = dataclasses.replace(base, **over)
        steps = cfg.steps_of(m)
        out += [PlannedRun("keypoint", m, f"{prefix}{name}_s{s}", _validated(cfg, steps, s, validate, validate_seeds), s)
                for s in range(seeds)]
        if name in ceiling:
            out += [PlannedRun("keypoint", m, f"{prefix}{name}_x2_s{s}",
                               quarter_validation(doubled(cfg), 2 * steps), s) for s in range(seeds)]
    return out


def status(runs: list[PlannedRun], store) -> dict:
    """``{"stored": [...], "stale": [(run, reason)], "missing": [...]}`` of the planned ``runs`` in ``store``."""
    from hwlib.study.accepted import accepted_codes, equivalence_file
    from hwlib.study.codes import training_code
    from hwlib.study.store import config_dict

    out = {"stored": [], "stale": [], "missing": []}
    codes = {t: [training_code(t), *accepted_codes(t, training_code(t), path=equivalence_file(store.root))]
             for t in ("detector", "keypoint")}
    seen = set()
    for r in runs:
        if r.key("") in seen:                  # one run asked for twice under two names (a ceiling that is an arm)
            continue
        seen.add(r.key(""))
        if any(store.get(r.key(c)) is not None for c in codes[r.task]):
            out["stored"].append(r)
            continue
        ignore = r.cfg.unread_by(r.method) if r.task == "keypoint" else frozenset()
        same = [x for x in store.records() if x.data["task"] == r.task and x.data["method"] == r.method
                and x.data["seed"] == r.seed and x.data["config"] == config_dict(r.cfg, ignore)]
        if same:
            out["stale"].append((r, f"stored as {same[0].path.name}, trained by code {same[0].data['code']}, "
                                    f"neither today's nor accepted as equivalent"))
        else:
            out["missing"].append(r)
    return out


def speeds(runs: list[PlannedRun], store, probe_seconds: float = 3.0, precision: str = "auto") -> dict:
    """``{model: (images per second, how)}`` on this CPU for each model of ``runs`` (:meth:`PlannedRun.model`),
    from the stored runs of that model trained on this CPU model, seconds that include validation: the median of
    those that had the machine to themselves (other processes under :data:`QUIET` of it, and never paused: at
    least :data:`BUSY` of it their own; ``how`` = "stored"), else,
    for runs recorded before the load was, the fastest of them (``"stored, fastest"``: the one least slowed by
    another process); with none, a probe of its training steps here (``"probe"``, :func:`probe`)."""
    from hwlib.study.machine import cpu_model
    from hwlib.study.verify import config_of

    here = cpu_model()
    quiet: dict = {}
    unknown: dict = {}
    for x in store.records():
        d = x.data
        machine = d.get("machine") or {}
        if machine.get("cpu") != here or not d.get("train_seconds") or not d.get("train_images"):
            continue
        try:
            m = PlannedRun(d["task"], d["method"], d["name"], config_of(d), d["seed"]).model()
        except (ValueError, TypeError):
            continue
        load = machine.get("load") or {}
        share, own = load.get("other_share"), load.get("own_share")
        if share is None:
            unknown.setdefault(m, []).append(d["train_images"] / d["train_seconds"])
        elif share < QUIET and (own is None or own >= BUSY):
            quiet.setdefault(m, []).append(d["train_images"] / d["train_seconds"])
    out = {}
    for r in runs:
        m = r.model()
        if m in out:
            continue
        if m in quiet:
            out[m] = (statistics.median(quiet[m]), "stored")
        elif m in unknown:
            out[m] = (max(unknown[m]), "stored, fastest")
        else:
            out[m] = probe_when_idle(r, probe_seconds, precision)
    return out


def probe_when_idle(run: PlannedRun, seconds: float = 3.0, precision: str = "auto") -> tuple:
    """``(images per second, "probe")`` of :func:`probe` where no other training holds the machine
    (:mod:`hwlib.study.lock`); ``(None, "unmeasured")`` where one does: a probe beside it would measure half a machine."""
    from hwlib.study.lock import TrainingBusy, training_slot

    import os

    before = os.environ.get("HWLIB_TRAINING_LOCK_WAIT")
    os.environ["HWLIB_TRAINING_LOCK_WAIT"] = "refuse"
    try:
        with training_slot(f"speed probe of {run.name}"):
            return probe(run, seconds, precision), "probe"
    except TrainingBusy:
        return None, "unmeasured"
    finally:
        if before is None:
            os.environ.pop("HWLIB_TRAINING_LOCK_WAIT", None)
        else:
            os.environ["HWLIB_TRAINING_LOCK_WAIT"] = before


def probe(run: PlannedRun, seconds: float = 3.0, precision: str = "auto") -> float:
    """Images per second of a few training steps of ``run``'s model, loss and batch on this machine (one warm-up
    step, then about ``seconds``), as :func:`hwlib.vision.train.fit` runs them (autocast, channels-last with bf16).
    Validation, data generation and logging are not in it: a run takes somewhat longer."""
    import math
    import time

    import torch

    from hwlib.vision.data import make_detection_data, make_keypoint_data
    from hwlib.vision.train import autocast, pick_device, resolve_precision

    dev = pick_device("auto")
    prec = resolve_precision(precision, dev)
    cfg = run.cfg
    torch.manual_seed(0)
    if run.task == "detector":
        from hwlib.vision.detector import DetectionLoss, build_detector, images_to_input

        images, y = make_detection_data(cfg.batch_size, seed=0)
        model, loss_fn, x = build_detector(cfg), DetectionLoss(cfg), images_to_input(images)
    else:
        from hwlib.vision.keypoints import KeypointLoss, build_keypoint_model

        x, y = make_keypoint_data(cfg.batch_size, seed=0)
        model, loss_fn = build_keypoint_model(run.method, cfg), KeypointLoss(run.method, cfg)
    model.train().to(dev)
    if prec == "bf16" and dev.type == "cpu":
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    x = x.to(dev)

    def step():
        with autocast(dev, prec):
            out = model(x)
        loss, _ = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    step()
    step()                                                  # warm-up: allocations, kernel selection
    n = max(2, min(20, math.ceil(seconds / max((time.perf_counter() - t0) / 2, 1e-3))))
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return len(x) * n / (time.perf_counter() - t0)
