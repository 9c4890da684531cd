"""Train one model of a profile from the command line, in one process or scaled out with torchrun.

    python -m hwlib.run detector --profile cpu                       # one process
    torchrun --nproc_per_node=4 -m hwlib.run detector --profile paper  # DistributedDataParallel

Models: ``detector`` (seed-exact), ``rf_aware`` (the receptive-field-aware heads of notebook 02),
``heatmap``, ``regression``, ``integral``. Under torchrun each process trains on its own batches of
the profile's per-process batch size (global batch = N x batch), gloo on CPU and nccl on GPUs, and
rank 0 validates, writes the checkpoint ``<out>/<name>.pt`` (config beside it) and a summary
``<out>/<name>.result.json``. The summary records, from every rank, a digest of the final weights:
equal digests show that the ranks stayed in sync.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from hwlib.config import load_profile
from hwlib.io import atomic_write_text, to_jsonable
from hwlib.vision.train import distributed

MODELS = ("detector", "rf_aware", "heatmap", "regression", "integral")


def weight_digest(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) over the parameters and buffers, in state-dict order."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("--profile", default="cpu", help="smoke | cpu | paper (default: cpu)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="override the profile's number of steps")
    ap.add_argument("--out", type=Path, help="output folder (default: runs/<profile>/cli)")
    ap.add_argument("--no-validate", action="store_true", help="skip validation during and after training")
    args = ap.parse_args(argv)

    from hwlib.study.obtain import train_detector, train_keypoint_model

    rank, world = distributed()
    P = load_profile(args.profile)
    out = args.out or P.run_dir / "cli"
    name = f"{args.model}_s{args.seed}"
    common = dict(seed=args.seed, run_dir=out, name=name, device=P.device, precision=P.precision,
                  progress=rank == 0, validate=not args.no_validate, store=P.store)
    if args.model in ("detector", "rf_aware"):
        cfg = P.detector if args.model == "detector" else dataclasses.replace(P.detector, head=P.rf_aware_head)
        if args.steps:
            cfg = dataclasses.replace(cfg, steps=args.steps)
        model, hist = train_detector(cfg, **common)
    else:
        cfg = P.keypoint
        if args.steps:
            cfg = dataclasses.replace(cfg, steps=args.steps, regression_steps=args.steps)
        model, hist = train_keypoint_model(args.model, cfg, **common)
    digests = _gather(weight_digest(model), world)
    if rank == 0:
        summary = {"profile": P.name, "model": args.model, "seed": args.seed, "world_size": world,
                   "per_process_batch": cfg.batch_size, "weight_digests": digests,
                   "final": hist.evals[-1] if hist.evals else {}, "history": hist.to_dict()}
        atomic_write_text(Path(out) / f"{name}.result.json", json.dumps(to_jsonable(summary), indent=2) + "\n")
        print(f"{name}: {hist.train_seconds:.1f} s of training on {world} process(es), "
              f"{hist.images_per_second:.1f} images/s; ranks in sync: {len(set(digests)) == 1}")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()               # no rank tears gloo down while rank 0 still writes (a rank aborted at exit once)
        dist.destroy_process_group()
    return 0
