"""What a run and an evaluation are: the code on each training path (its hash is in every training key) and on each
evaluation path (in every evaluation spec), and the specs themselves.
"""

from __future__ import annotations

import functools

from hwlib.config import DetectorConfig, KeypointConfig
from hwlib.study.detection import DECODING_FIELDS, _evaluate_detector, _train_detector, evaluate_positives
from hwlib.study.keypointing import _evaluate_keypoints, _train_keypoint_model, keypoint_subsets
from hwlib.study.splits import split_seed
from hwlib.vision import keypoints as kp


# The training path decides a run's weights and validation curve (data streams, batches, model, loss, fit,
# validation); the evaluation path turns weights into a record's metrics (decoding, matching, AP, PCK, head x size
# tables). The roots of the code that a run's training, or an evaluation, executes: per task, the functions of
# hwlib.study.detection and hwlib.study.keypointing whose code closure (hwlib.study.store.code_closure: every hwlib function, class and value they reach by name) is hashed
# into the training key and the evaluation spec. A change to code that no root reaches (a new metric, a plot, the
# other task's model) leaves every stored run valid; a change to code they reach makes the runs it touches new runs.
# (The functions themselves, bound here at import: a later monkeypatch of the module's names leaves the keys alone.)

TRAINING_PATH = {"detector": (_train_detector,), "keypoint": (_train_keypoint_model,)}
EVAL_PATH = {"detector": (_evaluate_detector,), "keypoint": (_evaluate_keypoints, keypoint_subsets),
             "positives": (evaluate_positives,)}


@functools.lru_cache(maxsize=None)
def training_code(task: str) -> str:
    """Hash of the code a ``task`` ("detector" | "keypoint") training executes (:func:`hwlib.study.store.closure_digest` of
    :data:`TRAINING_PATH`): the ``code`` of its training keys."""
    from hwlib.study.store import parts_digest

    return parts_digest(training_parts(task))


@functools.lru_cache(maxsize=None)
def training_parts(task: str) -> dict:
    """The code closure that :func:`training_code` hashes: ``{qualified name: hash}`` (kept in each stored run)."""
    from hwlib.study.store import code_closure

    return code_closure(TRAINING_PATH[task])


@functools.lru_cache(maxsize=None)
def eval_code(kind: str) -> str:
    """Hash of the code an evaluation of ``kind`` ("detector" | "keypoint" | "positives") executes (:data:`EVAL_PATH`): the
    ``code`` of its evaluation specs."""
    from hwlib.study.store import closure_digest

    return closure_digest(EVAL_PATH[kind])


def positives_spec(cfg: DetectorConfig, split: str = "val", n: int = 200) -> dict:
    """What :func:`evaluate_positives` computes (its evaluation key): ``n`` images of ``split`` (validation by
    default: a diagnosis, not a reported score) drawn like ``cfg``'s training data, inference in fp32."""
    return {"kind": "positives", "split": split, "seed": split_seed(split), "n": int(n), "size_mode": cfg.size_mode,
            "balanced_classes": cfg.balanced_classes, "code": eval_code("positives")}


def detector_spec(cfg: DetectorConfig, split: str, n: int, size_mode: str | None = None,
                  analyses: bool = False) -> dict:
    """What a detector evaluation is (its evaluation key, :func:`hwlib.study.store.evaluation_key`): the ``split``'s first
    ``n`` images drawn with ``size_mode`` (default ``cfg``'s) and ``cfg``'s class balance, decoded with ``cfg``'s
    decoding fields; ``analyses``: also the class confusion and AP by class x size (``metrics["analyses"]``)."""
    return {"kind": "detector", "split": split, "seed": split_seed(split), "n": int(n),
            "size_mode": size_mode or cfg.size_mode, "balanced_classes": cfg.balanced_classes,
            "decoding": {f: getattr(cfg, f) for f in sorted(DECODING_FIELDS | {"size_buckets"})},
            "analyses": bool(analyses), "code": eval_code("detector")}


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
