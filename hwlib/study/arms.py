"""Sets of runs: arms x seeds of the detector or keypoint models on the same data, each arm a
:class:`~hwlib.study.results.Record` paired with its baseline, with validation curves, plateau and ceiling verdicts.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwlib.config import DetectorConfig, KeypointConfig
from hwlib.study.codes import detector_spec, keypoint_spec
from hwlib.study.detection import DECODING_FIELDS, _evaluate_detector
from hwlib.study.keypointing import _evaluate_keypoints
from hwlib.study.obtain import _as_store, _detector_run, _keypoint_run, run_weights
from hwlib.study.splits import detection_data, keypoint_data, split_seed
from hwlib.vision import keypoints as kp
from hwlib.vision.detector import build_detector
from hwlib.vision.metrics import keypoint_errors


def _seeds_of(seeds, name) -> list:
    n = seeds.get(name, 1) if isinstance(seeds, dict) else seeds
    return list(range(n)) if isinstance(n, int) else list(n)


@dataclasses.dataclass
class Runs:
    """What a set of runs leaves: a :class:`~hwlib.study.results.Record` per model or arm, the validation histories
    (``{name: [History per seed]}``, empty lists where not validated), the stored runs (``{(name, seed):
    RunRecord}``, empty without a store), the models trained or loaded in this process (``{(name, seed): (model,
    cfg)}``; :meth:`model` finds the others) and the evaluation data (``images``, ``targets``)."""

    records: dict
    histories: dict
    models: dict
    images: Any = None
    targets: Any = None
    extra: dict = dataclasses.field(default_factory=dict)
    stored: dict = dataclasses.field(default_factory=dict)
    weights: dict = dataclasses.field(default_factory=dict)     # (name, seed) -> (ckpt, build, cfg, steps, ignore)
    store: Any = None                                            # the RunStore the runs were read from / written to

    def to_json(self) -> dict:
        return {name: r.to_json() for name, r in self.records.items()}

    def model(self, name: str, seed: int = 0):
        """The weights of run ``(name, seed)`` in eval mode: trained or loaded in this process, else its local
        checkpoint or the zoo's model of it (:func:`run_weights`); the model is kept for the next call."""
        if (name, seed) not in self.models:
            ckpt, build, cfg, steps, ignore = self.weights[(name, seed)]
            rec = self.stored.get((name, seed))
            if rec is None:
                raise KeyError(f"run {(name, seed)} has neither weights here nor a stored record")
            self.models[(name, seed)] = (run_weights(rec, ckpt, build, cfg, steps, ignore=ignore), cfg)
        return self.models[(name, seed)][0].eval()


    def analysis(self, name: str, seed: int, spec: dict, evaluate) -> dict:
        """An evaluation of run ``(name, seed)`` beyond those its training call made: read from the run store where
        it holds ``spec`` (a dict naming its ``kind`` and its code's hash, ``"code"``), else ``evaluate(model, cfg,
        spec) -> dict`` on the run's weights (:meth:`model`) and stored with the run, so that a rebuild from the
        store makes it without the weights."""
        from hwlib.study.machine import machine_record

        rec = self.stored.get((name, seed))
        if rec is not None and self.store is not None:
            rec = self.store.get(rec.key) or rec            # the store's copy: evaluations added since are kept
        ev = rec.evaluation(spec) if rec is not None else None
        if ev is not None:
            return ev["metrics"]
        model = self.model(name, seed)
        metrics = evaluate(model, self.models[(name, seed)][1], spec)
        if self.store is not None and rec is not None:
            self.stored[(name, seed)] = self.store.add_evaluation(rec, spec, metrics, None, machine_record(), "fp32")
        return metrics


def _with_baseline(records: dict, baseline: str | None, skip=()) -> dict:
    if baseline is None or baseline not in records:
        return records
    return {n: r if n == baseline or n in skip else r.with_baseline(records[baseline]) for n, r in records.items()}


def _runs_entry(rec) -> list:
    return [rec.path.name] if rec is not None and rec.path is not None else []


def run_detectors(base: DetectorConfig, arms: dict, seeds, run_dir=None, prefix: str = "", split: str = "test",
                  n_eval: int | None = None, validate: bool = False, validate_seeds: int | None = None,
                  decode_arms: dict | None = None, baseline: str | None = "baseline", setting: str | None = None,
                  progress: bool = True, device: str = "auto", precision: str = "auto", store=None,
                  eval_size_mode: str | None = None, analyses: bool = False, ceiling: bool = False) -> Runs:
    """Train every arm (``name -> DetectorConfig overrides`` of ``base``) for its seeds on the same training
    streams and evaluate each on the same ``split`` images; one :class:`~hwlib.study.results.Record` per arm. Every run is
    read from the run ``store`` first and written there when it is new (:func:`obtain_run`): with every run stored,
    nothing is trained or loaded.

    Args:
        seeds: number of seeds for every arm, or ``{arm: number or list of seed ids}``.
        prefix: run names ``<prefix><arm>_s<seed>``; checkpoints ``<run_dir>/<name>.pt``.
        n_eval: evaluation images (default ``base.n_val``).
        validate: log validation mAP every ``eval_every`` steps (curves, plateau verdict) ...
        validate_seeds: ... for the first this many seeds of each arm only (default: all); the other seeds are
            validated at each quarter of the schedule (:func:`quarter_validation`), enough for their plateau verdict.
        decode_arms: ``name -> (trained arm, decoding overrides)``: the trained arm's models decoded again with
            other decoding settings (``s3_conf``, ``nms_iou``, ...), from the same forward pass, without training;
            each is paired with the arm it re-decodes (same models, so the difference is the decoding's alone).
        baseline: the trained arm every other trained arm is paired with (``paired_diff``); ``None``: no pairing.
        eval_size_mode: the evaluation images' ``size_mode`` (default ``base``'s): class-tied models on any-size data.
        analyses: also the class confusion and AP by class x size of every run (``Runs.extra["analyses"]``).
        ceiling: ``True`` or the names of the arms that also train every seed for twice its schedule
            (:func:`doubled`; run ``<name>_x2_s<seed>``, validated at its quarters, never evaluated on ``split``), and
            whose records get the plateau verdict of a ceiling (:func:`hwlib.study.results.ceiling_plateau`: doubling gains
            less than the tolerance on validation). Needs ``validate``.
    """
    from hwlib.study.results import Record, ceiling_plateau, plateau

    ceiling = _ceiling_arms(ceiling, arms, validate)

    decode_arms = decode_arms or {}
    for name, (src, over) in decode_arms.items():
        if src not in arms:
            raise ValueError(f"decode arm {name!r} re-decodes {src!r}, which is not a trained arm: {list(arms)}")
        bad = set(over) - DECODING_FIELDS
        if bad:
            raise ValueError(f"decode arm {name!r} changes {sorted(bad)}: only decoding fields {sorted(DECODING_FIELDS)}")
    n_eval = n_eval or base.n_val
    size_mode = eval_size_mode or base.size_mode
    images, targets = detection_data(n_eval, split_seed(split), size_mode, base.balanced_classes)
    runs = Runs({}, {}, {}, images, targets, {"analyses": {}}, store=_as_store(store))
    for name, over in arms.items():
        cfg = dataclasses.replace(base, **over)
        if cfg.size_mode != base.size_mode:
            raise ValueError(f"arm {name!r}: every arm is evaluated on the same images (size_mode {base.size_mode!r})")
        mine = {d: dataclasses.replace(cfg, **o) for d, (src, o) in decode_arms.items() if src == name}
        per_seed, secs, hists, files, ss = [], [], [], [], _seeds_of(seeds, name)
        decoded = {d: [] for d in mine}
        specs = [detector_spec(c, split, n_eval, size_mode, analyses) for c in (cfg, *mine.values())]
        for s in ss:
            run_cfg = _validated(cfg, cfg.steps, ss.index(s), validate, validate_seeds)
            run_name = f"{prefix}{name}_s{s}"
            hist, evs, model, rec = _detector_run(
                run_cfg, s, run_dir, run_name, device, precision, progress, validate, None, store, specs,
                lambda m, missing: _evaluate_detector(m, cfg, missing, device, precision))
            metrics = dict(evs[0]["metrics"])
            runs.extra["analyses"][(name, s)] = metrics.pop("analyses", None)
            per_seed.append(metrics)
            for d, ev in zip(mine, evs[1:]):
                decoded[d].append({k: v for k, v in ev["metrics"].items() if k != "analyses"})
            secs.append(hist.train_seconds)
            files += _runs_entry(rec)
            if validate:
                hists.append(hist)
            if model is not None:
                runs.models[(name, s)] = (model, cfg)
            runs.stored[(name, s)] = rec
            ckpt = Path(run_dir) / f"{run_name}.pt" if run_dir else None
            runs.weights[(name, s)] = (ckpt, functools.partial(build_detector, cfg), run_cfg, cfg.steps, frozenset())
        runs.histories[name] = hists if validate else []
        verdict = plateau(hists, "map_standard", of=len(ss)) if validate else None
        if name in ceiling:
            twice = [_detector_run(quarter_validation(doubled(cfg), 2 * cfg.steps), s, run_dir, f"{prefix}{name}_x2_s{s}",
                                   device, precision, progress, True, None, store)[0] for s in ss]
            verdict = ceiling_plateau(hists, twice, "map_standard", verdict)
        runs.records[name] = Record(ss, per_seed, secs, [cfg.steps * cfg.batch_size] * len(ss), plateau=verdict,
                                    setting=setting, extra={"runs": files} if files else {})
        for d, per in decoded.items():
            runs.records[d] = dataclasses.replace(runs.records[name], per_seed_metrics=per,
                                                  paired_diff=None).with_baseline(runs.records[name])
    runs.records = _with_baseline(runs.records, baseline, skip=set(decode_arms))
    return runs


def _ceiling_arms(ceiling, arms, validate: bool) -> set:
    """The arms whose plateau is judged by doubling: all of ``arms`` for ``True``, none for ``False``/``None``, else
    the names given (each must be an arm); checked before anything is trained."""
    names = set(arms) if ceiling is True else set(ceiling or ())
    if names - set(arms):
        raise ValueError(f"ceiling names {sorted(names - set(arms))}, which are not arms: {list(arms)}")
    if names and not validate:
        raise ValueError("a ceiling compares validation values: it needs validate=True")
    return names


def doubled(cfg):
    """``cfg`` trained for twice its schedule (``steps``, and ``regression_steps`` where set), validated at the same
    fractions of it (``eval_every`` doubled); warm-up unchanged: the run that tells whether ``cfg`` is at its
    plateau (:func:`hwlib.study.results.ceiling_plateau`)."""
    over = {"steps": cfg.steps * 2, "eval_every": cfg.eval_every * 2}
    if getattr(cfg, "regression_steps", 0):
        over["regression_steps"] = cfg.regression_steps * 2
    return dataclasses.replace(cfg, **over)


def quarter_validation(cfg, steps: int):
    """``cfg`` validated only at each quarter of its ``steps`` (``eval_every = steps // 4``, and at the end): the
    evaluations the plateau verdict (:func:`hwlib.study.results.plateau`) needs, for seeds whose curve is not drawn.
    Training is unchanged (validation draws no random numbers and does not touch the weights); the checkpoint's stored
    config holds this ``eval_every``, so changing which seeds are validated densely retrains them."""
    return dataclasses.replace(cfg, eval_every=max(1, steps // 4))


def _validated(cfg, steps: int, index: int, validate: bool, validate_seeds: int | None):
    """The config the ``index``-th seed trains with: ``cfg`` (validated every ``eval_every`` steps: the curves) for
    the first ``validate_seeds`` seeds (default all) or without validation, else :func:`quarter_validation`."""
    dense = validate_seeds is None or index < validate_seeds
    return cfg if dense or not validate else quarter_validation(cfg, steps)


def _keypoint_runs(method, cfg, ss, run_dir, names, split, n_eval, validate, validate_seeds, runs, key, spec,
                   progress, device, precision, store):
    """Every seed of one keypoint model or arm (:func:`obtain_run`); fills ``runs`` under ``key``; returns
    ``(per-seed metrics, per-seed predictions or None, train seconds, histories, store file names)``."""
    per_seed, preds, secs, hists, files = [], [], [], [], []
    for i, s in enumerate(ss):
        run_cfg = _validated(cfg, cfg.steps_of(method), i, validate, validate_seeds)
        hist, evs, model, rec = _keypoint_run(method, run_cfg, s, run_dir, names[i], device, precision, progress,
                                              validate, None, store, [spec],
                                              lambda m, missing: _evaluate_keypoints(m, method, cfg, missing, device,
                                                                                     precision))
        per_seed.append(evs[0]["metrics"])
        preds.append(evs[0].get("predictions"))
        secs.append(hist.train_seconds)
        files += _runs_entry(rec)
        if validate:
            hists.append(hist)
        if model is not None:
            runs.models[(key, s)] = (model, cfg)
        runs.stored[(key, s)] = rec
        ckpt = Path(run_dir) / f"{names[i]}.pt" if run_dir else None
        runs.weights[(key, s)] = (ckpt, functools.partial(kp.build_keypoint_model, method, cfg), run_cfg,
                                  cfg.steps_of(method), cfg.unread_by(method))
    return per_seed, preds, secs, hists, files


def run_keypoint_methods(cfg: KeypointConfig, methods, seeds: int, run_dir=None, prefix: str = "",
                         split: str = "test", n_eval: int | None = None, validate: bool = True,
                         validate_seeds: int | None = None, ceiling: bool = False,
                         progress: bool = True, device: str = "auto", precision: str = "auto", store=None) -> Runs:
    """Train every keypoint ``method`` for ``seeds`` seeds on the same data and evaluate on the same
    ``split`` images: one record per method with every decoding's metrics (:func:`keypoint_metrics`),
    the plateau verdict (validation PCK@0.05 of the headline decoding, every seed) and the model's ``params``,
    ``gflops`` and ``infer_ms`` (:func:`model_cost`, of the architecture). The first ``validate_seeds`` seeds (default
    all) are validated every ``cfg.eval_every`` steps (the curves); the others only at each quarter of the schedule
    (:func:`quarter_validation`), enough for their plateau verdict at a fraction of the cost. Runs are read from the
    run ``store`` first (:func:`obtain_run`), with every decoding's predictions.

    ``Runs.extra``: ``"errors"`` (``{decoding: float [seeds * N, 5]}`` normalized errors of every seed, for PCK
    curves), ``"predictions"`` (``{decoding: [Tensor[N, 5, 2] per seed]}``), ``"example_preds"``
    (``{decoding: Tensor[N, 5, 2]}`` of the first seed) and ``"meta"`` (the split's pose record). Run names
    ``<prefix><method>_s<seed>``. ``ceiling``: as in :func:`run_detectors` (runs ``<prefix><method>_x2_s<seed>``).
    """
    from hwlib.study.results import Record, ceiling_plateau, plateau

    ceiling = _ceiling_arms(ceiling, methods, validate)

    n_eval = n_eval or cfg.n_val
    images, gt, meta = keypoint_data(n_eval, split_seed(split), cfg.hard_fraction)
    runs = Runs({}, {}, {}, images, gt, store=_as_store(store))
    errors, all_preds, ceiling_histories = {}, {}, {}
    for method in methods:
        ss = list(range(seeds))
        spec = keypoint_spec(method, cfg, split, n_eval)
        per_seed, preds, secs, hists, files = _keypoint_runs(
            method, cfg, ss, run_dir, [f"{prefix}{method}_s{s}" for s in ss], split, n_eval, validate, validate_seeds,
            runs, method, spec, progress, device, precision, store)
        for p in preds:
            for d, t in p.items():
                errors.setdefault(d, []).append(keypoint_errors(t, gt).numpy())
                all_preds.setdefault(d, []).append(t)
        steps = cfg.steps_of(method)
        runs.histories[method] = hists if validate else []
        cost = model_cost(kp.build_keypoint_model(method, cfg), tuple(images.shape[1:]))
        verdict = plateau(hists, "pck_0.05", of=len(ss)) if validate else None
        if method in ceiling:
            twice = [_keypoint_run(method, quarter_validation(doubled(cfg), 2 * steps), s, run_dir,
                                   f"{prefix}{method}_x2_s{s}", device, precision, progress, True, None, store)[0]
                     for s in ss]
            verdict = ceiling_plateau(hists, twice, "pck_0.05", verdict)
            ceiling_histories[method] = twice
        runs.records[method] = Record(ss, per_seed, secs, [steps * cfg.batch_size] * len(ss), plateau=verdict,
                                      extra={**cost, **({"runs": files} if files else {})})
    runs.extra = {"errors": {d: np.concatenate(e) for d, e in errors.items()}, "predictions": all_preds,
                  "example_preds": {d: p[0] for d, p in all_preds.items()}, "meta": meta,
                  "ceiling_histories": ceiling_histories}
    return runs


def run_keypoint_arms(base: KeypointConfig, arms: dict, seeds: int, run_dir=None, split: str = "test",
                      n_eval: int | None = None, baseline: str | None = None, setting: str | None = None,
                      progress: bool = True, device: str = "auto", precision: str = "auto", store=None,
                      validate: bool = False, ceiling=False) -> Runs:
    """Heatmap-model ablation: every arm (``name -> KeypointConfig overrides`` of ``base``) for ``seeds`` seeds on
    the same data, evaluated on the same ``split`` images by PCK in image pixels (every heatmap decoding) and
    by the seed's heatmap MSE (``heatmap_mse``); arms paired with ``baseline`` (default: the first arm). Runs are read
    from the run ``store`` first (:func:`obtain_run`); run names ``<arm>_s<seed>``.

    ``validate``: every seed validated at each quarter of its schedule (:func:`quarter_validation`), so that each arm
    has its own plateau verdict; ``ceiling``: ``True`` or the arms whose verdict is a ceiling (each seed also trained
    for twice its schedule, run ``<arm>_x2_s<seed>``; :func:`hwlib.study.results.ceiling_plateau`), as in
    :func:`run_detectors`."""
    from hwlib.study.results import Record, ceiling_plateau, plateau

    ceiling = _ceiling_arms(ceiling, arms, validate)
    n_eval = n_eval or base.n_val
    images, gt, _ = keypoint_data(n_eval, split_seed(split), base.hard_fraction)
    runs = Runs({}, {}, {}, images, gt, store=_as_store(store))
    for name, over in arms.items():
        cfg = dataclasses.replace(base, **over)
        ss = list(range(seeds))
        spec = keypoint_spec("heatmap", cfg, split, n_eval, subsets=False, predictions=False, mse=True)
        per_seed, _, secs, hists, files = _keypoint_runs(
            "heatmap", cfg, ss, run_dir, [f"{name}_s{s}" for s in ss], split, n_eval, validate, 0, runs, name, spec,
            progress, device, precision, store)
        runs.histories[name] = hists
        verdict = plateau(hists, "pck_0.05", of=len(ss)) if validate else None
        if name in ceiling:
            twice = [_keypoint_run("heatmap", quarter_validation(doubled(cfg), 2 * cfg.steps), s, run_dir,
                                   f"{name}_x2_s{s}", device, precision, progress, True, None, store)[0] for s in ss]
            verdict = ceiling_plateau(hists, twice, "pck_0.05", verdict)
        runs.records[name] = Record(ss, per_seed, secs, [cfg.steps * cfg.batch_size] * len(ss), plateau=verdict,
                                    setting=setting, extra={"runs": files} if files else {})
    runs.records = _with_baseline(runs.records, baseline or next(iter(arms)))
    return runs


def model_cost(model: torch.nn.Module, input_shape, batch_size: int = 32, repeats: int = 5) -> dict:
    """``params``, ``gflops`` (per image, one forward pass, counted by ``torch.utils.flop_counter``) and
    ``infer_ms`` (fp32 eval forward per image, median of ``repeats`` batches on this machine's CPU).

    Args:
        input_shape: one image's shape, e.g. ``(1, 128, 128)``.
    """
    import time

    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model = model.eval().float().cpu()
    x = torch.zeros(batch_size, *input_shape)
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            model(x[:1])
        model(x)                                     # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    model.train(was_training)
    return {"params": int(sum(p.numel() for p in model.parameters())), "gflops": fc.get_total_flops() / 1e9,
            "infer_ms": float(np.median(times)) * 1e3 / batch_size}
