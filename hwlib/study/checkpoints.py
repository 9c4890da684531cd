"""Checkpoints back to models: the model class a checkpoint stores, its config rebuilt, its weights loaded (fp32).

Beneath the experiment layer: :mod:`hwlib.study.detection`, :mod:`hwlib.study.keypointing`,
:mod:`hwlib.study.evaluate` and :mod:`hwlib.study.zoo` read checkpoints through :func:`load_model`.
"""

from __future__ import annotations

import dataclasses

from hwlib.config import DetectorConfig, KeypointConfig, before_field_existed
from hwlib.vision.detector import build_detector
from hwlib.vision.keypoints import build_keypoint_model
from hwlib.vision.train import CheckpointError, load_checkpoint

# model class stored in the checkpoint -> (task, method)
MODEL_CLASSES = {"MultiScaleDetector": ("detector", None), "HeatmapNet": ("keypoint", "heatmap"),
                 "RegressionNet": ("keypoint", "regression"), "IntegralNet": ("keypoint", "integral")}
TASK_CONFIGS = {"detector": DetectorConfig, "keypoint": KeypointConfig}


def _tuples(value):
    """JSON lists back to the tuples the frozen config dataclasses hold (nested: ``anchors``)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_from_checkpoint(path, payload: dict, cls):
    """Rebuild the config dataclass ``cls`` from a checkpoint's stored ``"config"`` dict.

    Lists become tuples (``anchors`` is a tuple of three tuples); keys the checkpoint does not hold
    (checkpoints written before a field existed) take the behaviour the code had then: the dataclass default, or the
    field's entry in :data:`hwlib.config.BEFORE_FIELD_EXISTED` where the default has changed since.

    Raises:
        CheckpointError: no config, or a key ``cls`` does not know (another task's config, or a
        checkpoint written by a newer version); the message names the file.
    """
    cfg = payload.get("config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint {path} stores no config (expected a dict of {cls.__name__} fields)")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        raise CheckpointError(f"checkpoint {path} has config keys unknown to {cls.__name__}: {', '.join(unknown)} "
                              f"(a config of another task, or of a newer hwlib)")
    try:
        return cls(**{**before_field_existed(cls), **{k: _tuples(v) for k, v in cfg.items()}})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has a config that does not build a {cls.__name__} ({e})") from None


def checkpoint_task(path, payload: dict) -> tuple[str, str | None]:
    """``(task, method)`` of a loaded checkpoint from its stored model class: ``("detector", None)`` or
    ``("keypoint", "heatmap" | "regression" | "integral")``.

    Raises:
        CheckpointError: the model class is missing or not one of :data:`MODEL_CLASSES`.
    """
    name = payload.get("model")
    if name not in MODEL_CLASSES:
        raise CheckpointError(f"checkpoint {path} holds a model of class {name!r}; expected one of "
                              f"{', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[name]


def load_model(path, task: str | None = None):
    """Build the model a checkpoint describes and load its weights as float32.

    Args:
        path: a checkpoint written by :func:`hwlib.vision.train.save_checkpoint` (or a bf16 zoo file of
            :mod:`hwlib.study.zoo`; bf16 weights are cast to the fp32 model's dtype).
        task: ``"detector"`` or ``"keypoint"`` to insist on one task; ``None`` accepts either.

    Returns:
        ``(model, cfg, task, method, payload)``: the model in eval mode on the CPU, its
        :class:`~hwlib.config.DetectorConfig` or :class:`~hwlib.config.KeypointConfig`, the task,
        the keypoint method (``None`` for detectors) and the checkpoint's payload.

    Raises:
        CheckpointError: missing, truncated or corrupt file, not an hwlib checkpoint, another task
        than ``task``, a config that does not fit, or weights of another architecture.
    """
    payload = load_checkpoint(path)
    found, method = checkpoint_task(path, payload)
    if task is not None and found != task:
        raise CheckpointError(f"checkpoint {path} holds a {payload['model']} ({found} model), not a {task}")
    cfg = config_from_checkpoint(path, payload, TASK_CONFIGS[found])
    try:
        model = build_detector(cfg) if found == "detector" else build_keypoint_model(method, cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} has a config that does not build its model ({e})") from None
    # load_state_dict copies into the fp32 parameters and buffers, casting bf16 weights; integer
    # buffers (BatchNorm's num_batches_tracked) stay integer
    load_checkpoint(path, model)
    model.float().eval()
    return model, cfg, found, method, payload
