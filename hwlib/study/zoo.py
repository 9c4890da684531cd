"""The model zoo: the ``cpu`` run's seed-0 headline checkpoints, stored in bf16, with a manifest.

::

    python -m hwlib.zoo [--run-dir runs/cpu] [--out models] [--n 1000]

reads ``<run-dir>/{02_seed_exact_s0, 02_rf_aware_s0, 04_heatmap_s0, 04_regression_s0, 04_integral_s0}.pt``
and writes ``<out>/{seed_exact, rf_aware, heatmap, regression, integral}.pt``: the same payload as
:func:`hwlib.vision.train.save_checkpoint` (so :func:`hwlib.vision.train.load_checkpoint`,
:func:`hwlib.study.detection.load_detector` and :func:`hwlib.study.keypointing.load_keypoint_model` read them),
with every floating-point tensor of the state dict (weights and BatchNorm statistics) in bf16 and
integer buffers unchanged. ``<out>/MANIFEST.json`` records for each model::

    {name: {"file", "sha256", "config", "test": {metric: value}, "train_seconds", "machine",
            "model", "source", "test_seed", "n_test"}}

where ``test`` is :func:`hwlib.study.evaluate.evaluate_checkpoint` of the bf16 file itself (fp32 inference,
test split) and ``machine`` the machine of the run (from the run's ``pipeline.json`` when there is one,
else the exporting machine). Every file is written atomically; nothing is written when a source is
missing or the zoo would exceed :data:`MAX_BYTES`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import torch

from hwlib.config import REPO_ROOT, REPORT_DIR, RUNS_DIR, ZOO_MANIFEST as MANIFEST
from hwlib.io import atomic_write_bytes, atomic_write_text, to_jsonable
from hwlib.study.evaluate import (DETECTOR_METRIC_KEYS, KEYPOINT_METRIC_KEYS, N_TEST, TEST_SPLIT_SEED,
                                  evaluate_checkpoint, file_sha256, load_model)
from hwlib.vision.train import CheckpointError

# zoo name -> checkpoint of the cpu run (seed 0 of each headline model)
ZOO = {"seed_exact": "02_seed_exact_s0.pt", "rf_aware": "02_rf_aware_s0.pt", "heatmap": "04_heatmap_s0.pt",
       "regression": "04_regression_s0.pt", "integral": "04_integral_s0.pt"}
MAX_BYTES = 60_000_000           # the whole zoo, files together (SPEC: <= 60 MB)


def to_bf16(state_dict: dict) -> dict:
    """A state dict with every floating tensor cast to bf16 (contiguous, detached, CPU); other tensors
    (integer buffers such as ``num_batches_tracked``) unchanged."""
    return {k: (v.detach().cpu().to(torch.bfloat16).contiguous() if v.is_floating_point() else v.detach().cpu())
            for k, v in state_dict.items()}


def bf16_checkpoint_bytes(src) -> tuple[bytes, dict]:
    """The bytes of a bf16 copy of checkpoint ``src`` (same payload, bf16 state dict) and its payload.

    Raises:
        CheckpointError: ``src`` is missing, corrupt, or not a model :func:`hwlib.study.evaluate.load_model` builds.
    """
    *_, payload = load_model(src)       # the source must be a complete, loadable hwlib checkpoint
    out = {**payload, "state_dict": to_bf16(payload["state_dict"]),
           "extra": {**payload.get("extra", {}), "weights_dtype": "bfloat16"}}
    buf = io.BytesIO()
    torch.save(out, buf)
    return buf.getvalue(), out


def run_machine(run_dir) -> dict:
    """A short description of the machine that trained the run: from the run's ``pipeline.json`` (written by
    :mod:`hwlib.study.pipeline`; ``report/generated/`` for the ``cpu`` profile, ``<run_dir>/generated/`` for
    the others) when it names this profile, else the machine running the export."""
    from hwlib.study.machine import machine_info

    run_dir = Path(run_dir)
    keys = ("cpu", "cores", "threads", "bf16_native", "amx", "torch")
    for rec_path in (run_dir / "generated" / "pipeline.json", REPORT_DIR / "generated" / "pipeline.json"):
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("profile") == run_dir.name and isinstance(rec.get("machine"), dict):
            return {**{k: rec["machine"][k] for k in keys if k in rec["machine"]}, "source": "pipeline.json"}
    info = machine_info()
    return {**{k: info[k] for k in keys if k in info}, "source": "export"}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def export_zoo(run_dir=RUNS_DIR / "cpu", out_dir=REPO_ROOT / "models", names=tuple(ZOO), n: int = N_TEST,
               seed: int = TEST_SPLIT_SEED, max_bytes: int = MAX_BYTES, progress: bool = True) -> dict:
    """Build the model zoo from a run's checkpoints and return the manifest.

    Args:
        run_dir: the run's checkpoint folder (``runs/cpu``).
        out_dir: where the bf16 files and ``MANIFEST.json`` go (``models``).
        names: which zoo entries (keys of :data:`ZOO`) to export; entries of an existing manifest that are
            not re-exported are kept when their file is still there with the recorded sha256.
        n, seed: the test images each bf16 file is evaluated on (the report's test split by default).
        max_bytes: the budget for all files of the zoo together.
        progress: tqdm bars while evaluating.

    Returns:
        the manifest written to ``<out_dir>/MANIFEST.json``.

    Raises:
        ValueError: an unknown name, or a zoo larger than ``max_bytes`` (nothing is written).
        CheckpointError: a source checkpoint is missing or unreadable (nothing is written).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    names = list(names)
    unknown = [k for k in names if k not in ZOO]
    if unknown or not names:
        raise ValueError(f"zoo names must be a non-empty subset of {', '.join(ZOO)}; got {names}")
    missing = [str(run_dir / ZOO[k]) for k in names if not (run_dir / ZOO[k]).exists()]
    if missing:
        raise CheckpointError(f"zoo sources missing: {', '.join(missing)} (run the notebooks of that profile first)")

    manifest_path = out_dir / MANIFEST
    kept = {}
    try:
        old = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        old = {}
    for name, entry in (old if isinstance(old, dict) else {}).items():
        f = out_dir / str(entry.get("file", ""))
        if name not in names and name in ZOO and f.is_file() and file_sha256(f) == entry.get("sha256"):
            kept[name] = entry

    # everything in memory first: the size budget is checked before any file is written
    blobs = {name: bf16_checkpoint_bytes(run_dir / ZOO[name]) for name in names}
    total = sum(len(b) for b, _ in blobs.values()) + sum((out_dir / e["file"]).stat().st_size for e in kept.values())
    if total > max_bytes:
        sizes = ", ".join(f"{k} {len(b) / 1e6:.1f} MB" for k, (b, _) in blobs.items())
        raise ValueError(f"the zoo would take {total / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB budget ({sizes})")

    machine = run_machine(run_dir)
    manifest = dict(kept)
    # evaluate the very bytes that will be published (from a scratch copy), and only then publish them, so a
    # failure part-way leaves the previous zoo as it was
    with tempfile.TemporaryDirectory(prefix="hwlib-zoo-") as scratch:
        for name, (data, payload) in blobs.items():
            scratch_path = Path(scratch) / f"{name}.pt"
            scratch_path.write_bytes(data)
            result = evaluate_checkpoint(scratch_path, seed=seed, n=n, progress=progress)
            keys = DETECTOR_METRIC_KEYS if result["task"] == "detector" else KEYPOINT_METRIC_KEYS
            test = {k: result[k] for k in keys}
            if "decodings" in result:
                test["decodings"] = result["decodings"]
            manifest[name] = {"file": f"{name}.pt", "sha256": result["sha256"], "config": payload["config"],
                              "test": test, "train_seconds": payload.get("extra", {}).get("train_seconds"),
                              "machine": machine, "model": payload["model"], "source": _rel(run_dir / ZOO[name]),
                              "test_seed": seed, "n_test": n, "training_key": _training_key_of(run_dir / ZOO[name])}
    for name, (data, _) in blobs.items():
        atomic_write_bytes(out_dir / f"{name}.pt", data)
    manifest = to_jsonable({k: manifest[k] for k in ZOO if k in manifest})
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _training_key_of(ckpt: Path) -> str | None:
    """The training key a checkpoint's ``.key`` file names (written beside it by the experiment layer), or ``None``."""
    key = ckpt.with_suffix(".key")
    return key.read_text().strip() if key.exists() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwlib.zoo",
                                     description="Export the run's headline checkpoints as the bf16 model zoo.")
    parser.add_argument("--run-dir", default=str(RUNS_DIR / "cpu"), help="checkpoints of the run (default runs/cpu)")
    parser.add_argument("--out", default=str(REPO_ROOT / "models"), help="zoo folder (default models)")
    parser.add_argument("--names", nargs="+", default=list(ZOO), choices=list(ZOO), help="entries to export")
    parser.add_argument("--n", type=int, default=N_TEST, help=f"test images per model (default {N_TEST})")
    args = parser.parse_args(argv)
    try:
        manifest = export_zoo(args.run_dir, args.out, names=args.names, n=args.n)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for name, e in manifest.items():
        size = (Path(args.out) / e["file"]).stat().st_size / 1e6
        headline = e["test"].get("map_standard", e["test"].get("pck_0.05"))
        print(f"{name:<11} {e['file']:<15} {size:6.1f} MB  {'mAP' if 'map_standard' in e['test'] else 'PCK@0.05'} "
              f"{headline:.4f}  sha256 {e['sha256'][:12]}")
    print(f"manifest -> {Path(args.out) / MANIFEST}")
    return 0
