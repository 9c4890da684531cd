"""Evaluate any checkpoint from the command line, on the held-out test split, with the report's protocol.

::

    python -m hwlib.evaluate CHECKPOINT [--seed S] [--n N] [--predictions OUT.pt] [--json OUT.json]

The task is read from the checkpoint (its model class and stored config): a ``MultiScaleDetector`` is
evaluated on ``make_detection_data(N, seed=S, size_mode=cfg.size_mode,
balanced_classes=cfg.balanced_classes)``, a ``HeatmapNet``, ``RegressionNet`` or ``IntegralNet`` on
``make_keypoint_data(N, seed=S, hard_fraction=cfg.hard_fraction)``; the defaults are the report's test split
(``S = TEST_SPLIT_SEED``, ``N = 1000``). Inference runs in fp32 on the CPU, whatever precision the model was
trained or stored in, so the numbers do not depend on the machine's bf16 support. Metrics:

- detectors: VOC AP@0.5 per class and mAP under the standard protocol (detections decoded at
  confidence >= 0.001) and the seed protocol (>= ``cfg.conf_seed``, 0.5): ``map_standard``,
  ``map_seed``, ``ap_standard`` and ``ap_seed`` (dicts per class name);
- keypoint models: PCK at 0.05 ... 0.2 of the ground-truth keypoints' bounding-box diagonal
  (``pck_0.05`` ...), PCK@0.05 with the torso norm, PCK@0.05 per keypoint and the mean error in
  pixels; heatmap models are decoded with DARK for these keys, and their other decodings (argmax) have the
  same keys under ``decodings``.

A missing, truncated, corrupt or foreign checkpoint ends the command with one line on stderr naming
the file, and exit code 2.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
from pathlib import Path

import torch

from hwlib.config import CLASS_NAMES, SPLIT_SEEDS
from hwlib.io import atomic_write_bytes, atomic_write_text, to_jsonable
from hwlib.study.checkpoints import (MODEL_CLASSES, TASK_CONFIGS, checkpoint_task, config_from_checkpoint, load_model)  # noqa: F401
from hwlib.vision.train import CheckpointError

TEST_SPLIT_SEED = SPLIT_SEEDS["test"]   # the held-out test split: used for nothing but reported numbers
N_TEST = 1000
STANDARD_CONF = 0.001            # the standard protocol's confidence pre-filter (VOC/COCO/YOLO validation)

DETECTOR_METRIC_KEYS = ("map_standard", "map_seed", "ap_standard", "ap_seed")
KEYPOINT_METRIC_KEYS = ("pck_0.02", "pck_0.05", "pck_0.1", "pck_0.15", "pck_0.2", "pck_auc_0.1", "pck_torso_0.05",
                        "pck_per_keypoint_0.05", "mean_px_error")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- evaluation
def _chunks(n: int, size: int, progress: bool, desc: str):
    from tqdm import tqdm

    starts = range(0, n, size)
    return tqdm(starts, desc=desc, unit="chunk", disable=not progress or len(starts) <= 1, leave=False,
                file=sys.stderr)


def _evaluate_detector(model, cfg, n, seed, progress, chunk):
    from hwlib.study.splits import detection_data
    from hwlib.study.detection import detector_metrics, predict_detector, seed_protocol_preds

    images, targets = detection_data(n, seed, cfg.size_mode, cfg.balanced_classes)
    preds, seed_preds = [], []
    for s in _chunks(n, chunk, progress, "evaluate detector"):
        p, raw = predict_detector(model, images[s:s + chunk], cfg, conf=STANDARD_CONF, device="cpu",
                                  precision="fp32", raw=True)
        preds += p
        seed_preds.append(seed_protocol_preds(raw, cfg))   # None unless the checkpoint has the seed's S3 cut
    seed_preds = None if seed_preds[0] is None else [d for chunk_preds in seed_preds for d in chunk_preds]
    metrics = detector_metrics(preds, list(targets), cfg, seed_preds)
    saved = {"predictions": [{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds],
             "targets": [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]}
    return metrics, saved


def _evaluate_keypoints(model, method, cfg, n, seed, progress, chunk):
    from hwlib.vision import keypoints as kp
    from hwlib.study.splits import keypoint_data
    from hwlib.study.keypointing import keypoint_metrics, predict_keypoints

    images, gt, _ = keypoint_data(n, seed, cfg.hard_fraction)
    parts: dict = {}
    for s in _chunks(n, chunk, progress, f"evaluate {method}"):
        for key, p in predict_keypoints(model, method, images[s:s + chunk], cfg, device="cpu",
                                        precision="fp32").items():
            parts.setdefault(key, []).append(p)
    preds = {key: torch.cat(v) for key, v in parts.items()}
    head = kp.headline_decoding(method)
    metrics = keypoint_metrics(method, preds, gt)
    metrics["decoding"] = head
    saved = {"pred": preds[head], "gt": gt.clone()}
    saved.update({f"pred_{d}": p for d, p in preds.items() if d != head})
    return metrics, saved


def evaluate_checkpoint(path, seed: int = TEST_SPLIT_SEED, n: int = N_TEST, predictions_path=None,
                        progress: bool = True, chunk: int = 100) -> dict:
    """Evaluate one checkpoint with the report's protocol, fp32 inference on the CPU.

    Args:
        path: checkpoint file (``.pt`` of :func:`hwlib.vision.train.save_checkpoint` or a bf16 zoo file).
        seed: data seed; the default is the report's test split.
        n: number of images (>= 1).
        predictions_path: if given, ``torch.save`` there (atomically) a file outside tools can score:
            detectors ``{"predictions": [{"boxes" float32 [D, 4] xyxy px, "scores" float32 [D],
            "labels" int64 [D]} per image, decoded at confidence 0.001], "targets": [{"boxes" float32
            [M, 4] xyxy px, "labels" int64 [M]} per image]}``; keypoint models ``{"pred": float32
            [N, 5, 2], "gt": float32 [N, 5, 2]}`` (x, y) in image pixels (heatmap models: DARK
            decoding, and each other decoding as ``"pred_<decoding>"``, e.g. ``"pred_heatmap_argmax"``). Both also hold ``"meta"`` (checkpoint, seed, n).
        progress: a tqdm bar on stderr over chunks of ``chunk`` images.
        chunk: images per progress step.

    Returns:
        a JSON-able dict: detectors ``map_standard``, ``map_seed`` (float), ``ap_standard``,
        ``ap_seed`` (``{class name: AP}``), plus the head x size-bucket TP table (seed protocol) and
        per-bucket recall of :func:`hwlib.study.detection.detector_metrics`; keypoint models
        ``pck_0.02``, ``pck_0.05`` .. ``pck_0.2`` (bbox-diagonal norm), ``pck_auc_0.1``, ``pck_torso_0.05``,
        ``pck_per_keypoint_0.05`` (``{keypoint name: PCK}``), ``mean_px_error`` (pixels), and for
        the headline ``decoding`` and, for heatmap models, ``decodings`` (``{name: the same keys}``); always ``checkpoint``, ``sha256``, ``seed``,
        ``n``, ``task``, ``method`` (keypoint method, or the detector's head variant), ``model``,
        ``eval_split`` (``"test"`` at the default seed, else ``"seed <S>"``), ``device``, ``precision``.

    Raises:
        CheckpointError: see :func:`load_model`.
        ValueError: ``n < 1``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    path = Path(path)
    model, cfg, task, method, payload = load_model(path)
    sha = file_sha256(path)
    if task == "detector":
        metrics, saved = _evaluate_detector(model, cfg, n, seed, progress, chunk)
        method = cfg.head
    else:
        metrics, saved = _evaluate_keypoints(model, method, cfg, n, seed, progress, chunk)
    meta = {"checkpoint": str(path), "sha256": sha, "seed": seed, "n": n, "task": task, "method": method,
            "model": payload["model"], "eval_split": "test" if seed == TEST_SPLIT_SEED else f"seed {seed}",
            "device": "cpu", "precision": "fp32"}
    if predictions_path is not None:
        buf = io.BytesIO()
        torch.save({**saved, "meta": meta}, buf)
        atomic_write_bytes(predictions_path, buf.getvalue())
    return to_jsonable({**meta, **metrics})


# ----------------------------------------------------------------------------- command line
def format_table(result: dict) -> str:
    """A small plain-text table of :func:`evaluate_checkpoint`'s result."""
    def f(v):
        return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

    head = (f"{result['checkpoint']}  ({result['model']}, {result['task']}"
            f"{'' if result['method'] is None else ' ' + str(result['method'])})\n"
            f"{result['eval_split']}: {result['n']} images, seed {result['seed']}, fp32 on CPU\n")
    if result["task"] == "detector":
        rows = [f"{'protocol':<10} {'mAP@0.5':>8} " + " ".join(f"{c:>8}" for c in CLASS_NAMES)]
        for proto, conf in (("standard", "conf>=0.001"), ("seed", "conf>=0.5")):
            rows.append(f"{proto:<10} {f(result[f'map_{proto}']):>8} "
                        + " ".join(f"{f(result[f'ap_{proto}'][c]):>8}" for c in CLASS_NAMES) + f"   {conf}")
        return head + "\n".join(rows)
    taus = ("0.05", "0.1", "0.15", "0.2")
    rows = [f"{'decoding':<10} " + " ".join(f"{'PCK@' + t:>8}" for t in taus)
            + f" {'torso@.05':>9} {'err px':>7}"]
    main = result.get("decoding", result["method"])
    rows.append(f"{main:<10} " + " ".join(f"{f(result[f'pck_{t}']):>8}" for t in taus)
                + f" {f(result['pck_torso_0.05']):>9} {result['mean_px_error']:>7.2f}")
    for name, m in result.get("decodings", {}).items():
        rows.append(f"{name:<10} " + " ".join(f"{f(m[f'pck_{t}']):>8}" for t in taus)
                    + f" {f(m['pck_torso_0.05']):>9} {m['mean_px_error']:>7.2f}")
    per_kp = "  ".join(f"{k} {f(v)}" for k, v in result["pck_per_keypoint_0.05"].items())
    return head + "\n".join(rows) + f"\nPCK@0.05 per keypoint ({main}): {per_kp}"


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
        return v
    return parse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hwlib.evaluate",
        description="Evaluate a detector or keypoint checkpoint on the test split with the report's protocol "
                    "(fp32 inference on the CPU).")
    parser.add_argument("checkpoint", help="checkpoint file (.pt), e.g. models/seed_exact.pt")
    parser.add_argument("--seed", type=_int_at_least(0), default=TEST_SPLIT_SEED,
                        help=f"data seed (default: the test split, {TEST_SPLIT_SEED})")
    parser.add_argument("--n", type=_int_at_least(1), default=N_TEST, help=f"number of images (default {N_TEST})")
    parser.add_argument("--predictions", metavar="OUT.pt", help="also torch.save the predictions and ground truth")
    parser.add_argument("--json", metavar="OUT.json", help="write the metrics as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        result = evaluate_checkpoint(args.checkpoint, seed=args.seed, n=args.n, predictions_path=args.predictions,
                                     progress=not args.no_progress)
        print(format_table(result))
        if args.json:
            atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
            print(f"metrics -> {args.json}")
        if args.predictions:
            print(f"predictions -> {args.predictions}")
    except CheckpointError as e:      # a wrong checkpoint: one line, no traceback
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:              # an output that cannot be written
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    return 0
