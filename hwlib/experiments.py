"""High-level experiment runs the notebooks call: train, predict, evaluate, summarize.

Each function takes a config dataclass from :mod:`hwlib.config` and a seed; data come from
:mod:`hwlib.data` with seeds derived from the run seed (training) or fixed (validation), so every
arm of an ablation is validated on the very same images.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import detector as det
from . import keypoints as kp
from .config import CLASS_NAMES, KEYPOINT_NAMES, SPLIT_SEEDS, DetectorConfig, KeypointConfig, train_data_seed
from .data import make_detection_data, make_keypoint_data
from .detector import build_detector  # noqa: F401 (the notebooks build detectors from here)
from .metrics import (PCK_THRESHOLDS, evaluate_detections, keypoint_errors, mean_pixel_error, pck, pck_auc,
                      pck_per_keypoint)
from .train import autocast, fit, pick_device, resolve_precision

VAL_SEED = SPLIT_SEEDS["val"]     # validation images: the same for every run and arm
TEST_SEED = SPLIT_SEEDS["test"]   # the held-out test split: reported numbers only (never a choice)


@functools.lru_cache(maxsize=8)
def detection_data(n: int, seed: int, size_mode: str = "class", balanced_classes: bool = True):
    """Cached :func:`hwlib.data.make_detection_data` (arms of a notebook share their data); pass a config's
    ``size_mode`` and ``balanced_classes``."""
    return make_detection_data(n, seed=seed, size_mode=size_mode, balanced_classes=balanced_classes)


@functools.lru_cache(maxsize=8)
def keypoint_data(n: int, seed: int, hard_fraction: float = 0.2):
    return make_keypoint_data(n, seed=seed, hard_fraction=hard_fraction, return_meta=True)


# ----------------------------------------------------------------------------- finished models
REUSE_ENV = "HWLIB_REUSE_CHECKPOINTS"   # "1": a complete checkpoint of the same config is loaded, not retrained


def _reuse_default() -> bool:
    return os.environ.get(REUSE_ENV, "0") == "1"


def _history_path(ckpt: Path) -> Path:
    return ckpt.with_suffix(".history.json")


def same_config(stored: dict | None, cfg, ignore=frozenset()) -> bool:
    """Whether a checkpoint's stored config (JSON) is ``cfg``'s. A field added to the config class after the
    checkpoint was written counts as equal when ``cfg`` holds the behaviour the code had before the field existed:
    the field's default, or its entry in :data:`hwlib.config.BEFORE_FIELD_EXISTED` where the default has changed
    since (so adding an option does not orphan every finished run). Fields in ``ignore`` (those the run's training
    does not read, :meth:`~hwlib.config.KeypointConfig.unread_by`) are not compared."""
    from .config import before_field_existed
    from .report import to_jsonable

    if not isinstance(stored, dict):
        return False
    now = to_jsonable(dataclasses.asdict(cfg))
    if set(stored) - set(now):
        return False
    defaults = {**{f.name: f.default for f in dataclasses.fields(cfg)}, **before_field_existed(type(cfg))}
    return all(stored[k] == v if k in stored else v == to_jsonable(defaults.get(k, dataclasses.MISSING))
               for k, v in now.items() if k not in ignore)


def finished_meta(meta: dict, cfg, steps: int, ignore=frozenset()) -> bool:
    """Whether a run's stored metadata (a checkpoint's payload, or the ``<name>.json`` written beside it) says it
    finished with this config: its ``"config"`` is ``cfg`` (:func:`same_config`, ``ignore`` as there) and it was
    written at the last step, ``steps``."""
    return same_config(meta.get("config"), cfg, ignore) and meta.get("extra", {}).get("step") == steps


def finished_checkpoint(ckpt, cfg, steps: int, need_history: bool, ignore=frozenset()):
    """``(payload, history)`` of a finished training run at ``ckpt`` with this config, or ``None``.

    Finished: the checkpoint loads (``weights_only``), its stored config is ``cfg`` (:func:`same_config`) and it was
    written at the last step (``steps``); checkpoints written at an intermediate evaluation of a killed run do not
    count. With ``need_history`` the validation log written beside it at the end of training
    (``<name>.history.json``) must exist too. The training code is not checked: reuse is for resuming the runs of
    one version of the code (the pipeline turns it on, ``--force`` turns it off)."""
    from .train import CheckpointError, History, load_checkpoint

    if ckpt is None or not Path(ckpt).exists():
        return None
    try:
        payload = load_checkpoint(ckpt)
    except CheckpointError:
        return None
    if not finished_meta(payload, cfg, steps, ignore):
        return None
    hp = _history_path(Path(ckpt))
    if hp.exists():
        history = History.from_dict(json.loads(hp.read_text()))
    elif need_history:
        return None
    else:
        history = History(train_seconds=float(payload["extra"].get("train_seconds", float("nan"))))
    return payload, history


RETRAIN_ENV = "HWLIB_RETRAIN"            # "1": stored runs are trained again (and replaced), as on a machine without them


def _retrain_default() -> bool:
    return os.environ.get(RETRAIN_ENV, "0") == "1"


SHARD_ENV = "HWLIB_SHARD"                # "i/N": this process trains the missing runs of shard i of N (hwlib.pipeline)
SHARD_WAIT_ENV = "HWLIB_SHARD_WAIT"      # seconds to wait for another shard's run (default: a day)


def shard_of(key: str, n: int) -> int:
    """The shard (0 .. n - 1) that trains the run of training key ``key`` when the missing runs are split n ways."""
    return int(key[:12], 16) % n


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``; anything else is a ``ValueError`` that says what is expected."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"a shard is 'i/N' with integers 0 <= i < N, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"a shard is 'i/N' with 0 <= i < N, got {text!r}")
    return i, n


def _wait_for_shard(st, key: str, name: str, owner: int, n: int):
    """Block until the run store ``st`` holds training key ``key`` (trained by shard ``owner``); return its record."""
    import time

    limit = float(os.environ.get(SHARD_WAIT_ENV, 86400))
    t0 = time.monotonic()
    print(f"{name}: shard {owner}/{n}'s run; waiting for its store file", flush=True)
    while (rec := st.get(key)) is None:
        if time.monotonic() - t0 > limit:
            raise TimeoutError(f"{name}: shard {owner}/{n} has not written this run to {st.root} within {limit:.0f} s "
                               f"({SHARD_WAIT_ENV}); is that shard running, on this store folder?")
        time.sleep(min(10.0, max(0.05, limit / 20)))
    return rec


def _key_path(ckpt: Path) -> Path:
    return ckpt.with_suffix(".key")


def _checkpoint_of_key(ckpt: Path, key: str) -> Path | None:
    """A local checkpoint of the stored run ``key`` under another name: a ``.key`` file naming it beside ``ckpt``, in
    the folder above, or in that folder's subfolders (another notebook's checkpoints of the same profile)."""
    here = ckpt.parent
    for folder in (here, here.parent):
        for k in [*sorted(folder.glob("*.key")), *sorted(folder.glob("*/*.key"))] if folder.exists() else []:
            if k.with_suffix(".pt") != ckpt and k.with_suffix(".pt").exists() and k.read_text().strip() == key:
                return k.with_suffix(".pt")
    return None


def _link_checkpoint(src: Path, dst: Path) -> None:
    """``dst`` (and its ``.key`` and ``.history.json``) become the files of checkpoint ``src``: hard links where the
    file system allows, else copies; existing files at ``dst`` are replaced."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    for a, b in ((src, dst), (_key_path(src), _key_path(dst)), (_history_path(src), _history_path(dst))):
        if not a.exists():
            continue
        b.unlink(missing_ok=True)
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)


def _same_training(stored_history: dict, hist) -> bool:
    """Whether a run trained again logged what its stored record holds: the same losses and validation values (not
    its timings)."""
    from .store import thin_history, untimed_evals

    new = thin_history(hist.to_dict())
    return (new.get("loss") == stored_history.get("loss")
            and untimed_evals(new.get("evals", [])) == untimed_evals(stored_history.get("evals", [])))


def _as_store(store):
    from .store import RunStore

    if store is None or isinstance(store, RunStore):
        return store
    return _STORES.setdefault(str(Path(store).resolve()), RunStore(store))


_STORES: dict = {}


def _local_run(ckpt, cfg, steps, validate, key, build, ignore, reuse):
    """``(model, history)`` of the finished checkpoint ``ckpt`` of this run, or ``None``: same config, last step
    (:func:`finished_checkpoint`), the same model class, and, where the checkpoint's ``.key`` file names a training
    key, this one (``key``: one key, or the keys that serve this run: today's and the stored run's). Checkpoints without a ``.key`` file (written before the store) count only with ``reuse``."""
    if ckpt is None:
        return None
    kp_ = _key_path(Path(ckpt))
    stored_key = kp_.read_text().strip() if kp_.exists() else None
    if stored_key is not None and stored_key not in ({key} if isinstance(key, str) else set(key)):
        return None
    if stored_key is None and not reuse:
        return None
    found = finished_checkpoint(ckpt, cfg, steps, need_history=validate, ignore=ignore)
    if found is None:
        return None
    model = build()
    if found[0].get("model") not in (None, type(model).__name__):
        return None                                       # same config, another model class: train it anew
    model.load_state_dict(found[0]["state_dict"])         # the payload already loaded, not a second read
    return model, found[1]


def obtain_run(task: str, method: str, cfg, seed: int, name: str, steps: int, *, build, train, ckpt=None,
               validate: bool = True, store=None, specs=(), evaluate=None, ignore=frozenset(),
               need_model: bool = False, reuse: bool | None = None, device: str = "auto", precision: str = "auto"):
    """One training run, read from the run store before anything is trained (:mod:`hwlib.store`).

    In order: a stored run of this training key (:func:`hwlib.store.training_key`: task, method, seed, config,
    training code) with every evaluation in ``specs`` is returned as it is, nothing loaded; a stored run with a stale
    or missing evaluation is evaluated from its local checkpoint; otherwise the finished local checkpoint of this
    run is used (:func:`_local_run`), or it is trained (``train(validate) -> (model, History)``). A stored run
    trained without validation does not serve a call that needs it; a stored run trained again for its weights is
    trained with validation where its record had it, and keeps its stored name. Every new run and every new
    evaluation is written to the store at once (only by rank 0 of a distributed run). With ``HWLIB_RETRAIN=1`` a
    stored run is trained again and its file replaced. With ``HWLIB_SHARD=i/N`` (``python -m hwlib.pipeline --shard``)
    a missing run of another shard (:func:`shard_of`) is not trained here: this process waits until that shard's
    process has written it to the same store folder (its checkpoint too, where an evaluation must be made here).

    Args:
        build: ``() -> model`` (untrained, for loading weights); train: ``() -> (model, History)``.
        ckpt: the local checkpoint path (``None``: none is kept).
        specs: evaluation specs (dicts, :func:`detector_spec` / :func:`keypoint_spec`); evaluate:
            ``(model, [spec]) -> [(metrics, predictions or None)]`` for the specs missing from the store.
        need_model: also return the weights (loaded or trained) where the store alone would do.

    Returns:
        ``(history, [evaluation dict per spec: {"metrics", "predictions"?}], model or None, record or None)``.
    """
    from .lock import training_slot
    from .machine import machine_record
    from .report import atomic_write_text
    from .store import evaluation_key, new_record, training_key, unpack
    from .train import distributed

    st = _as_store(store)
    rank, world = distributed()
    key = training_key(task, method, cfg, seed, training_code(task), world, ignore)
    reuse = _reuse_default() if reuse is None else reuse
    retrain = _retrain_default()
    rec = (_stored_record(st, task, lambda code: training_key(task, method, cfg, seed, code, world, ignore))
           if st is not None and not retrain else None)
    if rec is not None and validate and not rec.data["history"].get("evals"):
        print(f"{name}: stored run {rec.path.name} was trained without validation, which this run needs: training it "
              "again with validation, its store file will be replaced", flush=True)
        rec = None                                         # a validated run serves both; an unvalidated one does not
    if rec is not None:
        evs = [rec.evaluation(s) for s in specs]
        if all(e is not None for e in evs) and not need_model:
            return rec.history(), [_unpacked(e, unpack) for e in evs], None, rec
    serving = {key} | ({rec.key} if rec is not None else set())   # a run of an accepted older code: its own key
    local = None if retrain else _local_run(ckpt, cfg, steps, validate, serving, build, ignore,
                                            reuse or rec is not None)
    if local is None and rec is not None and not retrain and ckpt is not None:
        other = _checkpoint_of_key(Path(ckpt), rec.key)    # the stored run's weights, here under another name
        if other is not None:                               # (nothing usable is at ckpt: linking loses nothing)
            _link_checkpoint(other, Path(ckpt))
            local = _local_run(ckpt, cfg, steps, validate, serving, build, ignore, False)
    shard = os.environ.get(SHARD_ENV)
    if rec is None and local is None and st is not None and shard:
        i, n = parse_shard(shard)
        if shard_of(key, n) != i:                          # another shard trains it: wait for its record
            rec = _wait_for_shard(st, key, name, shard_of(key, n), n)
            evs = [rec.evaluation(s) for s in specs]
            if all(e is not None for e in evs) and not need_model:
                return rec.history(), [_unpacked(e, unpack) for e in evs], None, rec
            local = _local_run(ckpt, cfg, steps, validate, key, build, ignore, True)
    if rec is None and local is None and st is not None:
        _say_why_not_stored(st, task, name, key)
    if local is not None:
        model, hist = local
        print(f"{name}: finished run found ({Path(ckpt).name}, step {steps}), loaded instead of retrained", flush=True)
    else:
        keep = rec is not None and bool(rec.data["history"].get("evals"))
        if rec is not None:
            print(f"{name}: stored run {rec.path.name} needs its weights (an evaluation is missing, or the model is "
                  "asked for) and no checkpoint is here: training it again, its store file will be replaced", flush=True)
            name = rec.name                                # the run keeps the name it was stored under
        with training_slot(name, rank, world) as load:     # one training at a time on this machine
            model, hist = train(validate or keep)          # a stored run's validation log is kept, never dropped
        if ckpt is not None and rank == 0:
            atomic_write_text(_history_path(Path(ckpt)), json.dumps(hist.to_dict()))
            atomic_write_text(_key_path(Path(ckpt)), key + "\n")
        # a new training is a new record; the stored run's evaluations stay only where it trained identically
        # (the same losses and validation log: the same weights), else two notebooks that share a run and need
        # different evaluations would retrain it in turn on every rebuild
        kept = rec.data["evaluations"] if rec is not None and _same_training(rec.data["history"], hist) else {}
        rec = None
    if st is not None and rank == 0 and rec is None:
        machine = {**machine_record(), **({"load": load.as_dict()} if local is None else {})}
        rec = st.put({**new_record(task, method, name, cfg, seed, hist, training_code(task), world, ignore,
                                   machine=machine, steps=steps, batch_size=cfg.batch_size,
                                   code_parts=training_parts(task)),
                      "evaluations": kept if local is None else {}})
    elif rec is not None:
        hist = rec.history()                               # the stored run's own log (the checkpoint's is the same)
    missing = [s for s in specs if rec is None or rec.evaluation(s) is None]
    results = dict(zip(map(evaluation_key, missing), evaluate(model, missing))) if missing else {}
    if st is not None and rank == 0:
        prec = resolve_precision(precision, pick_device(device))
        for s in missing:
            metrics, preds = results[evaluation_key(s)]
            rec = st.add_evaluation(rec, s, metrics, preds, machine_record(), prec)
    evs = []
    for s in specs:
        if evaluation_key(s) in results:
            metrics, preds = results[evaluation_key(s)]
            evs.append({"metrics": metrics, **({"predictions": preds} if preds else {})})
        else:
            evs.append(_unpacked(rec.evaluation(s), unpack))
    return hist, evs, model, rec


def _say_why_not_stored(st, task: str, name: str, key: str) -> None:
    """Before a run is trained: where the store holds a run of this name under another training key, say what
    differs (the code it reaches, by name, or the config), so that a retraining is never a surprise."""
    from .store import changed_code

    for other in st.find(name)[:1]:
        if other.data["code"] != training_code(task):
            changed = changed_code(other.data, training_parts(task))
            what = (f"its training code changed since ({', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''})"
                    if changed else "its training code changed since")
        else:
            what = "its config differs"
        print(f"{name}: the store holds {other.path.name}, another run of this name ({what}): training this one",
              flush=True)


def stored_run(task: str, method: str, cfg, seed: int, store, world_size: int = 1):
    """The stored run of this task, method (``"detector"`` for detectors), config and seed under the current
    training code, or ``None``; nothing is trained."""
    from .store import training_key

    st = _as_store(store)
    ignore = cfg.unread_by(method) if task == "keypoint" else frozenset()
    return (_stored_record(st, task, lambda code: training_key(task, method, cfg, seed, code, world_size, ignore))
            if st else None)


def _stored_record(st, task: str, key_of):
    """The stored run of ``st`` that serves the current training code: of its training key (``key_of(code)``), or
    of an older code that :mod:`hwlib.equivalence` accepted as equivalent to it (that change was proved to keep
    its runs' results)."""
    from .accepted import stored_under_accepted

    return stored_under_accepted(st, task, training_code(task), key_of)


def _unpacked(ev: dict, unpack) -> dict:
    out = {"metrics": ev["metrics"]}
    if "predictions" in ev:
        out["predictions"] = {k: unpack(v) for k, v in ev["predictions"].items()}
    return out


def run_weights(rec, ckpt, build, cfg, steps: int, validate: bool = False, ignore=frozenset()):
    """The weights of a stored run ``rec`` (for a figure): its local checkpoint where there is one (``.key`` file
    of this run, or none), else the model zoo's file of this training key (``models/MANIFEST.json``).

    Raises:
        hwlib.store.StoreError: neither is here; the message names the run and how to get its weights."""
    from .store import StoreError, zoo_file_of

    local = _local_run(ckpt, cfg, steps, False, rec.key, build, ignore, True) if ckpt is not None else None
    if local is not None:
        return local[0]
    zoo = zoo_file_of(rec.key)
    if zoo is not None:
        from .checkpoints import load_model

        return load_model(zoo)[0]
    raise StoreError(f"the weights of stored run {rec.name} (training key {rec.key[:12]}, {rec.path}) are not here: "
                     f"no checkpoint {ckpt} and no model of the zoo (models/MANIFEST.json) is of this run. Train it "
                     "again (make report RETRAIN=1, or HWLIB_RETRAIN=1 for one stage), or copy its checkpoint there")


# ----------------------------------------------------------------------------- detector
def load_detector(path) -> tuple[det.MultiScaleDetector, DetectorConfig]:
    """A detector rebuilt from a checkpoint's stored config, with its weights (``weights_only`` load).

    The checkpoint's ``"config"`` (JSON lists) becomes a :class:`~hwlib.config.DetectorConfig` (tuples:
    ``anchors`` a tuple of three tuples; keys absent from an older checkpoint take the behaviour of the code that
    wrote it, :func:`hwlib.checkpoints.config_from_checkpoint`);
    weights stored in bf16 (the ``models/`` zoo) are cast to the float32 model.

    Returns:
        ``(model, cfg)``: :class:`~hwlib.detector.MultiScaleDetector` in eval mode on the CPU, float32.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an hwlib checkpoint; a keypoint model;
        unknown config keys; weights of another architecture. The message names the file.
    """
    from .checkpoints import load_model

    model, cfg, _, _, _ = load_model(path, task="detector")
    return model, cfg


def _flip_targets(t, width=224):
    b = t["boxes"].clone()
    b[:, [0, 2]] = width - t["boxes"][:, [2, 0]]
    return {"boxes": b, "labels": t["labels"]}


def detection_batches(images, targets, batch_size: int, flip: bool):
    """``get_batch`` for :func:`hwlib.train.fit`: shuffled epochs, optional horizontal flips."""
    n = len(images)
    state = {"perm": None, "pos": n}

    def get_batch(step, rng):
        if state["pos"] + batch_size > n:
            state["perm"], state["pos"] = rng.permutation(n), 0
        idx = state["perm"][state["pos"]:state["pos"] + batch_size]
        state["pos"] += batch_size
        x = det.images_to_input(images[torch.from_numpy(idx)])
        tg = [targets[i] for i in idx]
        if flip:
            f = rng.random(len(idx)) < 0.5
            if f.any():
                x[torch.from_numpy(f)] = x[torch.from_numpy(f)].flip(-1)
                tg = [_flip_targets(t) if fi else t for t, fi in zip(tg, f)]
        return x, tg
    return get_batch


@torch.no_grad()
def predict_detector(model, images, cfg: DetectorConfig, conf: float | None = None, batch_size: int = 50,
                     device: str = "auto", precision: str = "auto", raw: bool = False):
    """Detections for uint8 images ``[N, 3, 224, 224]``: list per image of boxes/scores/labels/heads, decoded
    at ``conf`` (default ``cfg.conf_standard``) by :func:`decode_detector_outputs`.

    With ``raw=True`` also returns the raw head outputs (float32, on CPU; ``[N, A*(5+C), H, W]`` per head) for
    objectness maps and for re-decoding without another forward pass."""
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.eval().to(dev)
    preds, raws = [], []
    for s in range(0, len(images), batch_size):
        x = det.images_to_input(images[s:s + batch_size]).to(dev)
        with autocast(dev, prec):
            out = model(x)
        out = tuple(o.float().cpu() for o in out)
        if raw:
            raws.append(out)
        preds += decode_detector_outputs(out, cfg, conf)
    model.train(was_training)
    if raw:
        return preds, tuple(torch.cat([r[i] for r in raws]) for i in range(3))
    return preds


def decode_detector_outputs(outputs, cfg: DetectorConfig, conf: float | None = None, batch_size: int = 50):
    """Raw head outputs (a tuple of three ``[N, A*(5+C), H, W]``) -> detections per image, with ``cfg``'s NMS IoU
    and ``max_det``, at confidence ``conf`` (default ``cfg.conf_standard``).

    ``cfg.s3_conf`` (the seed's proposal: a higher cut for S3 boxes, before NMS) applies only to a decoding at the
    seed protocol's cut or above (``conf >= cfg.conf_seed``): under the standard protocol every box above
    ``conf_standard`` is kept, whichever head made it."""
    conf = cfg.conf_standard if conf is None else conf
    s3 = cfg.s3_conf if cfg.s3_conf is not None and conf >= cfg.conf_seed else None
    preds = []
    for s in range(0, len(outputs[0]), batch_size):
        preds += det.decode_predictions(tuple(o[s:s + batch_size] for o in outputs), cfg.anchors, 3,
                                        conf_threshold=conf, nms_iou=cfg.nms_iou, max_det=cfg.max_det, s3_conf=s3)
    return preds


DECODING_FIELDS = {"nms_iou", "conf_seed", "conf_standard", "max_det", "s3_conf"}   # what a decode arm may change


def filter_confidence(preds, conf: float):
    """Keep detections with score >= conf. Equal to decoding at ``conf``: NMS is greedy by score,
    so boxes below ``conf`` never suppress boxes above it."""
    out = []
    for p in preds:
        k = p["scores"] >= conf
        out.append({key: v[k] for key, v in p.items()})
    return out


def detection_metrics(preds, targets, cfg: DetectorConfig) -> dict:
    """Validation mAP under both protocols, flat (a training log's evaluation): ``map_standard`` (conf >=
    ``conf_standard``) and ``map_seed`` (conf >= ``conf_seed``; the seed's S3 cut ``s3_conf``, a decoding arm of
    trained models, is not applied to training logs)."""
    std = evaluate_detections([_core(p) for p in preds], targets)
    seed = evaluate_detections([_core(p) for p in filter_confidence(preds, cfg.conf_seed)], targets)
    return {"map_standard": std["map"], "map_seed": seed["map"]}


def _core(p):
    return {"boxes": p["boxes"], "scores": p["scores"], "labels": p["labels"]}


def train_detector(cfg: DetectorConfig, seed: int = 0, run_dir: str | Path | None = None, name: str = "detector",
                   device: str = "auto", precision: str = "auto", progress: bool = True, validate: bool = True,
                   reuse: bool | None = None, store=None):
    """Train one detector; returns ``(model, history)``. With ``validate``, validation mAP (standard
    protocol) every ``cfg.eval_every`` steps and at the end; checkpoint ``<run_dir>/<name>.pt`` with its
    config beside it, its validation history (``<name>.history.json``) and training key (``<name>.key``). With
    ``store`` (a :class:`~hwlib.store.RunStore` or its folder) the run is recorded there; with ``reuse`` (default:
    the ``HWLIB_REUSE_CHECKPOINTS`` environment variable) a finished checkpoint of the same config is loaded
    instead (:func:`obtain_run`)."""
    hist, _, model, _ = _detector_run(cfg, seed, run_dir, name, device, precision, progress, validate, reuse,
                                      store, need_model=True)
    return model, hist


def _detector_run(cfg, seed, run_dir, name, device, precision, progress, validate, reuse, store, specs=(),
                  evaluate=None, need_model=False):
    ckpt = Path(run_dir) / f"{name}.pt" if run_dir else None
    return obtain_run("detector", "detector", cfg, seed, name, cfg.steps, build=lambda: build_detector(cfg),
                      train=lambda v: _train_detector(cfg, seed, ckpt, name, device, precision, progress, v),
                      ckpt=ckpt, validate=validate, store=store, specs=specs, evaluate=evaluate,
                      need_model=need_model, reuse=reuse, device=device, precision=precision)


def _train_detector(cfg, seed, ckpt, name, device, precision, progress, validate):
    images, targets = detection_data(cfg.n_train, train_data_seed("detector", seed), cfg.size_mode,
                                     cfg.balanced_classes)
    val_images, val_targets = detection_data(cfg.n_val, VAL_SEED, cfg.size_mode, cfg.balanced_classes)
    torch.manual_seed(seed)
    model = build_detector(cfg)

    def evaluate(m):
        preds = predict_detector(m, val_images, cfg, device=device, precision=precision)
        return detection_metrics(preds, val_targets, cfg)

    loss_fn = det.DetectionLoss(cfg)
    hist = fit(model, loss_fn, detection_batches(images, targets, cfg.batch_size, cfg.flip),
               steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
               seed=seed, device=device, precision=precision, evaluate=evaluate if validate else None,
               eval_every=cfg.eval_every, checkpoint=ckpt, config=cfg, desc=name, progress=progress,
               grad_clip=cfg.grad_clip, optimizer=cfg.optimizer, schedule=cfg.schedule, ema=cfg.ema)
    return model, hist


# ----------------------------------------------------------------------------- keypoints
def load_keypoint_model(path) -> tuple[torch.nn.Module, str, KeypointConfig]:
    """A keypoint model rebuilt from a checkpoint's stored config and model class, with its weights.

    The method comes from the stored class (``HeatmapNet`` -> ``"heatmap"``, ``RegressionNet`` ->
    ``"regression"``, ``IntegralNet`` -> ``"integral"``); bf16 weights are cast to the float32 model.

    Returns:
        ``(model, method, cfg)``: the model in eval mode on the CPU (``[B, 1, 128, 128]`` -> heatmaps
        ``[B, 5, H, H]`` or normalized ``[B, 5, 2]``), its method and :class:`~hwlib.config.KeypointConfig`.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an hwlib checkpoint; a detector;
        unknown config keys; weights of another architecture. The message names the file.
    """
    from .checkpoints import load_model

    model, cfg, _, method, _ = load_model(path, task="keypoint")
    return model, method, cfg


def keypoint_batches(images, keypoints, batch_size: int):
    """``get_batch`` for :func:`hwlib.train.fit`: shuffled epochs of (images, keypoints px)."""
    n = len(images)
    state = {"perm": None, "pos": n}

    def get_batch(step, rng):
        if state["pos"] + batch_size > n:
            state["perm"], state["pos"] = torch.from_numpy(rng.permutation(n)), 0
        idx = state["perm"][state["pos"]:state["pos"] + batch_size]
        state["pos"] += batch_size
        return images[idx], keypoints[idx]
    return get_batch


@torch.no_grad()
def predict_keypoints(model, method: str, images, cfg: KeypointConfig, batch_size: int = 200,
                      device: str = "auto", precision: str = "auto", return_heatmaps: bool = False,
                      decodings=None) -> dict:
    """Keypoints of images ``[N, 1, 128, 128]`` for every decoding of ``method`` in
    :data:`hwlib.keypoints.DECODINGS` (or only those named in ``decodings``): ``{decoding name: Tensor[N, 5, 2]}``
    (x, y) image pixels, e.g. ``{"heatmap_dark", "heatmap_argmax"}`` for a heatmap model. With ``return_heatmaps``
    also the raw outputs under ``"heatmaps"`` (``[N, 5, H, H]``, heatmap models only)."""
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.eval().to(dev)
    outs = []
    for s in range(0, len(images), batch_size):
        with autocast(dev, prec):
            outs.append(model(images[s:s + batch_size].to(dev)).float().cpu())
    model.train(was_training)
    out = torch.cat(outs) if outs else torch.zeros(0, 5, 2)
    res = kp.decode_outputs(method, out, cfg, decodings)
    if return_heatmaps and out.dim() == 4:
        res["heatmaps"] = out
    return res


def heatmap_mse(outputs, keypoints, cfg: KeypointConfig) -> float:
    """The seed's criterion: mean squared error between a heatmap model's outputs ``[N, 5, H, H]`` (as
    target-unit maps, :func:`hwlib.keypoints.heatmaps_as_targets`) and the Gaussian targets of ``keypoints``
    ``[N, 5, 2]`` (image px). Not comparable across heatmap sizes or sigmas."""
    target = kp.encode_heatmaps(keypoints, 128, cfg.heatmap_size, cfg.sigma)
    return float(((kp.heatmaps_as_targets(outputs, cfg) - target) ** 2).mean())


def train_keypoint_model(method: str, cfg: KeypointConfig, seed: int = 0, run_dir: str | Path | None = None,
                         name: str | None = None, device: str = "auto", precision: str = "auto",
                         progress: bool = True, validate: bool = True, reuse: bool | None = None, store=None):
    """Train one keypoint model (``"heatmap"``, ``"regression"`` or ``"integral"``) on the shared data;
    with ``validate``, validation PCK (bbox norm) every ``cfg.eval_every`` steps and at the end; checkpoint,
    validation history, ``store`` and ``reuse`` as in :func:`train_detector`. Returns ``(model, history)``."""
    hist, _, model, _ = _keypoint_run(method, cfg, seed, run_dir, name, device, precision, progress, validate,
                                      reuse, store, need_model=True)
    return model, hist


def _keypoint_run(method, cfg, seed, run_dir, name, device, precision, progress, validate, reuse, store, specs=(),
                  evaluate=None, need_model=False):
    name = name or f"{method}_s{seed}"
    ckpt = Path(run_dir) / f"{name}.pt" if run_dir else None
    steps = cfg.steps_of(method)
    return obtain_run("keypoint", method, cfg, seed, name, steps, build=lambda: kp.build_keypoint_model(method, cfg),
                      train=lambda v: _train_keypoint_model(method, cfg, seed, ckpt, name, steps, device, precision,
                                                           progress, v),
                      ckpt=ckpt, validate=validate, store=store, specs=specs, evaluate=evaluate,
                      ignore=cfg.unread_by(method), need_model=need_model, reuse=reuse, device=device,
                      precision=precision)


def _train_keypoint_model(method, cfg, seed, ckpt, name, steps, device, precision, progress, validate):
    images, keypoints, _ = keypoint_data(cfg.n_train, train_data_seed("keypoint", seed), cfg.hard_fraction)
    val_images, val_kps, _ = keypoint_data(cfg.n_val, VAL_SEED, cfg.hard_fraction)
    torch.manual_seed(seed)
    model = kp.build_keypoint_model(method, cfg)

    def evaluate(m):
        head = kp.headline_decoding(method)
        preds = predict_keypoints(m, method, val_images, cfg, device=device, precision=precision,
                                  return_heatmaps=True, decodings=(head,))
        out = {f"pck_{tau:g}": v for tau, v in pck(preds[head], val_kps).items()}
        if "heatmaps" in preds:
            out["heatmap_mse"] = heatmap_mse(preds["heatmaps"], val_kps, cfg)
        return out

    hist = fit(model, kp.KeypointLoss(method, cfg), keypoint_batches(images, keypoints, cfg.batch_size),
               steps=steps, lr=cfg.lr_of(method), weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
               seed=seed, device=device, precision=precision, evaluate=evaluate if validate else None,
               eval_every=cfg.eval_every, checkpoint=ckpt, config=cfg, desc=name, progress=progress, ema=cfg.ema,
               grad_clip=cfg.grad_clip, optimizer=cfg.optimizer, schedule=cfg.schedule)
    return model, hist


# ----------------------------------------------------------------------------- records: models and arms
def split_seed(split: str) -> int:
    """The data seed of an evaluation split: ``"val"`` (curves, every choice) or ``"test"`` (reported numbers)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {tuple(SPLIT_SEEDS)}, got {split!r}")
    return SPLIT_SEEDS[split]


def detector_metrics(preds, targets, cfg: DetectorConfig, seed_preds=None) -> dict:
    """One detector's metrics for a record, under both protocols (SPEC §3, §7).

    Args:
        preds: per image ``{"boxes" [M, 4] xyxy px, "scores" [M], "labels" [M], "heads" [M]}`` decoded at
            ``cfg.conf_standard``.
        targets: per image ``{"boxes" [G, 4] xyxy px, "labels" [G]}``.
        seed_preds: the same decoded at the seed protocol's cut (needed where ``cfg.s3_conf`` is set, see
            :func:`decode_detector_outputs`); default: ``preds`` cut at ``cfg.conf_seed`` (the same, as NMS is greedy).

    Returns:
        ``map_standard``, ``map_seed``, ``ap_standard`` / ``ap_seed`` (``{class: AP}``), ``tp_share_seed`` /
        ``tp_share_standard`` (``[3 heads][3 size buckets]``: each head's true positives under that protocol as a
        share of the bucket's ground truth), ``recall_seed`` / ``recall_standard`` (``[3 buckets]``).
    """
    from .analysis import head_bucket_table

    if cfg.s3_conf is not None and seed_preds is None:
        raise ValueError("cfg.s3_conf is set: pass seed_preds decoded at the seed protocol (decode_detector_outputs)")
    std = evaluate_detections([_core(p) for p in preds], targets)
    seed_preds = filter_confidence(preds, cfg.conf_seed) if seed_preds is None else seed_preds
    seed = evaluate_detections([_core(p) for p in seed_preds], targets)
    tb_seed = head_bucket_table(seed_preds, targets, cfg.size_buckets)
    tb_std = head_bucket_table(preds, targets, cfg.size_buckets)
    share = lambda tb: (tb["tp"] / np.maximum(tb["n_gt"], 1)[None, :]).tolist()   # noqa: E731
    return {"map_standard": std["map"], "map_seed": seed["map"],
            "ap_standard": dict(zip(CLASS_NAMES, std["ap"])), "ap_seed": dict(zip(CLASS_NAMES, seed["ap"])),
            "tp_share_seed": share(tb_seed), "tp_share_standard": share(tb_std), "recall_seed": tb_seed["recall"].tolist(),
            "recall_standard": tb_std["recall"].tolist()}


def seed_protocol_preds(outputs, cfg: DetectorConfig):
    """The seed-protocol decoding :func:`detector_metrics` needs as ``seed_preds``: raw head outputs decoded at
    ``cfg.conf_seed`` where ``cfg.s3_conf`` is set (the S3 cut applies there only), else ``None`` (the
    standard-protocol detections cut at ``conf_seed`` are the same)."""
    return decode_detector_outputs(outputs, cfg, cfg.conf_seed) if cfg.s3_conf is not None else None


def _metrics_of_outputs(outputs, targets, cfg: DetectorConfig, preds=None) -> dict:
    """:func:`detector_metrics` of raw head outputs decoded with ``cfg`` under both protocols; ``preds``: their
    standard-protocol decoding where the caller already has it (it is not decoded again)."""
    preds = decode_detector_outputs(outputs, cfg) if preds is None else preds
    return detector_metrics(preds, targets, cfg, seed_protocol_preds(outputs, cfg))


def keypoint_metrics(method: str, preds: dict, gt, subsets: dict | None = None) -> dict:
    """One keypoint model's metrics for a record (SPEC §7).

    Args:
        method: ``"heatmap"``, ``"regression"`` or ``"integral"``.
        preds: ``{decoding name: Tensor[N, 5, 2]}`` (x, y) image px, as :func:`predict_keypoints` returns.
        gt: ``Tensor[N, 5, 2]`` ground truth (x, y) image px.
        subsets: ``{name: bool [N]}`` figures to score apart (e.g. :func:`keypoint_subsets` of the split's meta).

    Returns:
        the headline decoding's ``pck_<tau>`` (bbox-diagonal norm, tau in 0.02, 0.05 .. 0.2), ``pck_auc_0.1`` (area
        under the PCK curve over tau in [0, 0.1], :func:`hwlib.metrics.pck_auc`), ``pck_torso_<tau>``,
        ``pck_per_keypoint_0.05`` (``{keypoint: PCK}``), ``mean_px_error`` and ``mean_px_error_per_keypoint``;
        the method's other decodings, the same keys, under ``"decodings"`` (``{name: {...}}``); with ``subsets``,
        ``"subsets"``: ``{name: {"pck_0.05", "pck_per_keypoint_0.05"}}`` of the headline decoding on those figures
        and ``{"not_" + name: ...}`` on the others (NaN where a subset is empty).
    """
    def one(p):
        out = {f"pck_{t:g}": v for t, v in pck(p, gt, (0.02, *PCK_THRESHOLDS)).items()}
        out["pck_auc_0.1"] = pck_auc(p, gt, 0.1)
        out.update({f"pck_torso_{t:g}": v for t, v in pck(p, gt, norm="torso").items()})
        out["pck_per_keypoint_0.05"] = dict(zip(KEYPOINT_NAMES, pck_per_keypoint(p, gt, 0.05).tolist()))
        err = mean_pixel_error(p, gt)
        out["mean_px_error"] = float(err.mean())
        out["mean_px_error_per_keypoint"] = dict(zip(KEYPOINT_NAMES, err.tolist()))
        return out

    def part(p, g):
        if len(g) == 0:
            return {"pck_0.05": math.nan, "pck_per_keypoint_0.05": dict.fromkeys(KEYPOINT_NAMES, math.nan)}
        return {"pck_0.05": pck(p, g)[0.05],
                "pck_per_keypoint_0.05": dict(zip(KEYPOINT_NAMES, pck_per_keypoint(p, g, 0.05).tolist()))}

    head = kp.headline_decoding(method)
    out = one(preds[head])
    others = {d: one(p) for d, p in preds.items() if d != head and d in kp.DECODINGS}
    if others:
        out["decodings"] = others
    if subsets:
        out["subsets"] = {}
        for name, mask in subsets.items():
            m = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
            out["subsets"][name] = part(preds[head][m], gt[m])
            out["subsets"]["not_" + name] = part(preds[head][~m], gt[~m])
    return out


def keypoint_subsets(meta: dict) -> dict:
    """The figures scored apart in every keypoint record: ``hand_under_brighter`` (a hand hidden under a brighter
    stroke, :func:`hwlib.data.make_keypoint_data`) and ``ambiguous`` (hands closer than two line widths);
    ``{name: bool [N]}``."""
    return {"hand_under_brighter": np.asarray(meta["hand_under_brighter"]).any(1),
            "ambiguous": np.asarray(meta["ambiguous"], dtype=bool)}


def decoding_metrics(record: dict, decoding: str, stat: str = "mean") -> dict:
    """A record's (JSON) metrics of one decoding: the top level for the headline decoding, else
    ``record[stat]["decodings"][decoding]``. ``stat``: ``"mean"``, ``"std"`` or ``"ci95"``."""
    d = kp.DECODINGS[decoding]
    if kp.headline_decoding(d.method) == decoding:
        return record[stat]
    return record[stat]["decodings"][decoding]


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


def _seeds_of(seeds, name) -> list:
    n = seeds.get(name, 1) if isinstance(seeds, dict) else seeds
    return list(range(n)) if isinstance(n, int) else list(n)


@dataclasses.dataclass
class Runs:
    """What a set of runs leaves: a :class:`~hwlib.results.Record` per model or arm, the validation histories
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
        from .machine import machine_record

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


def positives_spec(cfg: DetectorConfig, split: str = "val", n: int = 200) -> dict:
    """What :func:`evaluate_positives` computes (its evaluation key): ``n`` images of ``split`` (validation by
    default: a diagnosis, not a reported score) drawn like ``cfg``'s training data, inference in fp32."""
    return {"kind": "positives", "split": split, "seed": split_seed(split), "n": int(n), "size_mode": cfg.size_mode,
            "balanced_classes": cfg.balanced_classes, "code": eval_code("positives")}


def evaluate_positives(model, cfg: DetectorConfig, spec: dict) -> dict:
    """:func:`hwlib.analysis.positive_anchor_scores` of ``model`` (trained with ``cfg``) on ``spec``'s images
    (:func:`positives_spec`): do the anchors its training assignment made positive localise, classify and rank?"""
    from .analysis import positive_anchor_scores

    images, targets = detection_data(spec["n"], spec["seed"], spec["size_mode"], spec["balanced_classes"])
    _, raw = predict_detector(model, images, cfg, device="cpu", precision="fp32", raw=True)
    return positive_anchor_scores(raw, list(targets), cfg)


def _with_baseline(records: dict, baseline: str | None, skip=()) -> dict:
    if baseline is None or baseline not in records:
        return records
    return {n: r if n == baseline or n in skip else r.with_baseline(records[baseline]) for n, r in records.items()}


def detector_spec(cfg: DetectorConfig, split: str, n: int, size_mode: str | None = None,
                  analyses: bool = False) -> dict:
    """What a detector evaluation is (its evaluation key, :func:`hwlib.store.evaluation_key`): the ``split``'s first
    ``n`` images drawn with ``size_mode`` (default ``cfg``'s) and ``cfg``'s class balance, decoded with ``cfg``'s
    decoding fields; ``analyses``: also the class confusion and AP by class x size (``metrics["analyses"]``)."""
    return {"kind": "detector", "split": split, "seed": split_seed(split), "n": int(n),
            "size_mode": size_mode or cfg.size_mode, "balanced_classes": cfg.balanced_classes,
            "decoding": {f: getattr(cfg, f) for f in sorted(DECODING_FIELDS | {"size_buckets"})},
            "analyses": bool(analyses), "code": eval_code("detector")}


def _evaluate_detector(model, cfg: DetectorConfig, specs, device="auto", precision="auto") -> list:
    """``[(metrics, None)]``, one per spec of :func:`detector_spec`: one forward pass per image set, decoded again
    for each spec's decoding (:func:`detector_metrics`)."""
    from .analysis import ap_by_class_and_size, confusion_any_size

    outputs, out = {}, []
    for spec in specs:
        data = (spec["n"], spec["seed"], spec["size_mode"], spec["balanced_classes"])
        if data not in outputs:
            images, targets = detection_data(*data)
            preds, raw = predict_detector(model, images, cfg, device=device, precision=precision, raw=True)
            outputs[data] = (targets, raw, preds)
        targets, raw, preds = outputs[data]
        dcfg = dataclasses.replace(cfg, **spec["decoding"])
        same = all(getattr(dcfg, f) == getattr(cfg, f) for f in spec["decoding"])
        p = preds if same else decode_detector_outputs(raw, dcfg)
        m = _metrics_of_outputs(raw, targets, dcfg, p)
        if spec["analyses"]:
            m["analyses"] = {"confusion_seed": confusion_any_size(filter_confidence(p, dcfg.conf_seed), targets).tolist(),
                             "ap_by_size_standard": ap_by_class_and_size(p, targets)}
        out.append((m, None))
    return out


def _runs_entry(rec) -> list:
    return [rec.path.name] if rec is not None and rec.path is not None else []


def run_detectors(base: DetectorConfig, arms: dict, seeds, run_dir=None, prefix: str = "", split: str = "test",
                  n_eval: int | None = None, validate: bool = False, validate_seeds: int | None = None,
                  decode_arms: dict | None = None, baseline: str | None = "baseline", setting: str | None = None,
                  progress: bool = True, device: str = "auto", precision: str = "auto", store=None,
                  eval_size_mode: str | None = None, analyses: bool = False, ceiling: bool = False) -> Runs:
    """Train every arm (``name -> DetectorConfig overrides`` of ``base``) for its seeds on the same training
    streams and evaluate each on the same ``split`` images; one :class:`~hwlib.results.Record` per arm. Every run is
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
            whose records get the plateau verdict of a ceiling (:func:`hwlib.results.ceiling_plateau`: doubling gains
            less than the tolerance on validation). Needs ``validate``.
    """
    from .results import Record, ceiling_plateau, plateau

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
    plateau (:func:`hwlib.results.ceiling_plateau`)."""
    over = {"steps": cfg.steps * 2, "eval_every": cfg.eval_every * 2}
    if getattr(cfg, "regression_steps", 0):
        over["regression_steps"] = cfg.regression_steps * 2
    return dataclasses.replace(cfg, **over)


def quarter_validation(cfg, steps: int):
    """``cfg`` validated only at each quarter of its ``steps`` (``eval_every = steps // 4``, and at the end): the
    evaluations the plateau verdict (:func:`hwlib.results.plateau`) needs, for seeds whose curve is not drawn.
    Training is unchanged (validation draws no random numbers and does not touch the weights); the checkpoint's stored
    config holds this ``eval_every``, so changing which seeds are validated densely retrains them."""
    return dataclasses.replace(cfg, eval_every=max(1, steps // 4))


def _validated(cfg, steps: int, index: int, validate: bool, validate_seeds: int | None):
    """The config the ``index``-th seed trains with: ``cfg`` (validated every ``eval_every`` steps: the curves) for
    the first ``validate_seeds`` seeds (default all) or without validation, else :func:`quarter_validation`."""
    dense = validate_seeds is None or index < validate_seeds
    return cfg if dense or not validate else quarter_validation(cfg, steps)


def keypoint_spec(method: str, cfg: KeypointConfig, split: str, n: int, subsets: bool = True,
                  predictions: bool = True, mse: bool = False) -> dict:
    """What a keypoint evaluation is (its evaluation key): every decoding of ``method`` on the ``split``'s first ``n``
    figures (``cfg``'s share of hard poses); ``subsets``: the hidden-hand and ambiguous subsets scored apart;
    ``predictions``: each decoding's keypoints kept (``Tensor[n, 5, 2]`` image px: PCK curves, failure analysis);
    ``mse``: the seed's heatmap MSE (``heatmap_mse``)."""
    return {"kind": "keypoint", "method": method, "split": split, "seed": split_seed(split), "n": int(n),
            "hard_fraction": cfg.hard_fraction,
            "decodings": [d for d, spec in kp.DECODINGS.items() if spec.method == method],
            "subsets": bool(subsets), "predictions": bool(predictions), "heatmap_mse": bool(mse), "code": eval_code("keypoint")}


def _evaluate_keypoints(model, method: str, cfg: KeypointConfig, specs, device="auto", precision="auto") -> list:
    """``[(metrics, predictions or None)]``, one per spec of :func:`keypoint_spec`."""
    out = []
    for spec in specs:
        images, gt, meta = keypoint_data(spec["n"], spec["seed"], spec["hard_fraction"])
        preds = predict_keypoints(model, method, images, cfg, device=device, precision=precision,
                                  return_heatmaps=spec["heatmap_mse"])
        decoded = {d: preds[d] for d in spec["decodings"]}
        m = keypoint_metrics(method, decoded, gt, keypoint_subsets(meta) if spec["subsets"] else None)
        if spec["heatmap_mse"]:
            m["heatmap_mse"] = heatmap_mse(preds["heatmaps"], gt, cfg)
        out.append((m, decoded if spec["predictions"] else None))
    return out


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
    from .results import Record, ceiling_plateau, plateau

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
    for twice its schedule, run ``<arm>_x2_s<seed>``; :func:`hwlib.results.ceiling_plateau`), as in
    :func:`run_detectors`."""
    from .results import Record, ceiling_plateau, plateau

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


# ----------------------------------------------------------------------------- the code a run's keys name
# The training path decides a run's weights and validation curve (data streams, batches, model, loss, fit,
# validation); the evaluation path turns weights into a record's metrics (decoding, matching, AP, PCK, head x size
# tables). The roots of the code that a run's training, or an evaluation, executes: per task, the functions of this module
# whose code closure (hwlib.store.code_closure: every hwlib function, class and value they reach by name) is hashed
# into the training key and the evaluation spec. A change to code that no root reaches (a new metric, a plot, the
# other task's model) leaves every stored run valid; a change to code they reach makes the runs it touches new runs.
# (The functions themselves, bound here at import: a later monkeypatch of the module's names leaves the keys alone.)
TRAINING_PATH = {"detector": (_train_detector,), "keypoint": (_train_keypoint_model,)}
EVAL_PATH = {"detector": (_evaluate_detector,), "keypoint": (_evaluate_keypoints, keypoint_subsets),
             "positives": (evaluate_positives,)}


@functools.lru_cache(maxsize=None)
def training_code(task: str) -> str:
    """Hash of the code a ``task`` ("detector" | "keypoint") training executes (:func:`hwlib.store.closure_digest` of
    :data:`TRAINING_PATH`): the ``code`` of its training keys."""
    from .store import parts_digest

    return parts_digest(training_parts(task))


@functools.lru_cache(maxsize=None)
def training_parts(task: str) -> dict:
    """The code closure that :func:`training_code` hashes: ``{qualified name: hash}`` (kept in each stored run)."""
    from .store import code_closure

    return code_closure(TRAINING_PATH[task])


@functools.lru_cache(maxsize=None)
def eval_code(kind: str) -> str:
    """Hash of the code an evaluation of ``kind`` ("detector" | "keypoint" | "positives") executes (:data:`EVAL_PATH`): the
    ``code`` of its evaluation specs."""
    from .store import closure_digest

    return closure_digest(EVAL_PATH[kind])
