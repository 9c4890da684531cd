"""The training loop shared by the detector and the keypoint models.

AdamW (or SGD with Nesterov momentum), linear warm-up then cosine (or linear) decay, bf16 autocast + channels_last on CPUs that support
bf16 natively (AVX512-BF16 or AMX; fp32 elsewhere), tqdm progress with loss and images/s,
periodic validation, a NaN/inf guard, and atomic checkpoints that carry their config. The same loop
runs under ``torchrun`` with DistributedDataParallel (gloo on CPU, nccl on GPUs); see :func:`fit`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from hwlib.config import OPTIMIZERS, SCHEDULES
from hwlib.io import atomic_write_bytes, atomic_write_text, to_jsonable


class NonFiniteLossError(RuntimeError):
    """Raised when the loss becomes NaN or inf; the last good checkpoint is kept, and ``history`` holds the run's log
    up to the last finite step (a learning-rate range test reads it)."""

    def __init__(self, message: str, history=None):
        super().__init__(message)
        self.history = history


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or of another architecture."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when present (under torchrun, the GPU of this process's ``LOCAL_RANK``), else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(device)


def device_name(dev: torch.device) -> str:
    """``"cpu"`` or the GPU's name (``"cuda: NVIDIA H100 80GB HBM3"``): where a run trained, for its history."""
    return f"cuda: {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else dev.type


def cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


BF16_ENV = "HWLIB_BF16_NATIVE"   # "0" forces the no-native-bf16 path (fp32), as on an AVX2-only CPU


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off.

    ``HWLIB_BF16_NATIVE=0`` in the environment answers ``False`` on any CPU, so the fp32 path of an
    AVX2-only machine (and its benchmark settings) can be exercised anywhere; ``=1`` cannot create
    bf16 hardware and is ignored where the flags are absent."""
    if os.environ.get(BF16_ENV, "").strip() == "0":
        return False
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_kind() -> str:
    """A short name of this CPU's kind for the costs in the README: ``"amx"``, ``"avx512_bf16"`` or ``"fp32-only"``
    (no native bf16: AVX2 or AVX-512 without BF16, or native bf16 switched off by ``HWLIB_BF16_NATIVE=0``)."""
    if not bf16_native():
        return "fp32-only"
    return "amx" if "amx_bf16" in cpu_flags() else "avx512_bf16"


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on CUDA or on a CPU with native bf16, else ``"fp32"``."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if bf16_native() else "fp32"


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


RANGE_DECADES = 4       # a learning-rate range test sweeps from peak / 10**RANGE_DECADES up to peak


def lr_at(step: int, total: int, peak: float, warmup: int, schedule: str = "cosine") -> float:
    """Linear warm-up over ``warmup`` steps, then decay to 1% of ``peak`` at ``total``: ``"cosine"`` (half a cosine)
    or ``"linear"`` (a straight line, as the one-cycle and linear-decay recipes of the speed-run literature).
    ``"range"`` is no training schedule but the sweep of a learning-rate range test (Smith 2017): a geometric rise
    from ``peak / 10**RANGE_DECADES`` at step 0 to ``peak`` at step ``total - 1``, no warm-up."""
    if schedule not in (*SCHEDULES, "range"):
        raise ValueError(f"schedule must be one of {(*SCHEDULES, 'range')}, got {schedule!r}")
    if schedule == "range":
        return peak * 10.0 ** (-RANGE_DECADES * (1 - step / max(1, total - 1)))
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min((step - warmup) / max(1, total - warmup), 1.0)
    shape = 0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine" else 1.0 - t
    return peak * (0.01 + 0.99 * shape)


def make_optimizer(params, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``"adamw"``: AdamW (decoupled weight decay); ``"sgd"``: SGD with YOLOv5's Nesterov momentum (0.937) and L2 weight
    decay on every parameter. Not YOLOv5's rate: its loss is summed over a nominal batch of 64 images, ours is a batch
    mean, so its lr0 0.01 moves the weights per image about as far as ``0.01 x batch_size`` here (at batch 8)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.937, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path, model: torch.nn.Module, config, metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Save weights + config + metrics + library versions atomically; the config also as ``.json`` beside it."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "config": to_jsonable(cfg), "metrics": to_jsonable(metrics or {}),
               "model": type(model).__name__, "extra": to_jsonable(extra or {}),
               "versions": {"torch": str(torch.__version__), "numpy": str(np.__version__)}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(
        {k: payload[k] for k in ("config", "metrics", "model", "extra", "versions")}, indent=2) + "\n")
    return path


def load_checkpoint(path, model: torch.nn.Module | None = None) -> dict:
    """Load a checkpoint with ``weights_only=True``; load its weights into ``model`` if given.

    Raises:
        CheckpointError: one message naming the file and the reason (missing, truncated or corrupt,
        not a checkpoint, or weights that do not fit the model).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"checkpoint {path} is not an hwlib checkpoint (no 'state_dict')")
    if model is not None:
        if payload.get("model") not in (None, type(model).__name__):
            raise CheckpointError(f"checkpoint {path} holds a {payload['model']}, not a {type(model).__name__}")
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise CheckpointError(f"checkpoint {path} does not match the model's architecture: "
                                  f"{' '.join(first[:3])[:300]}") from None
    return payload


# ----------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class History:
    """What a run logs: training loss per step and validation metrics, against step and training seconds
    (wall clock spent in training steps only; evaluation excluded)."""

    steps: list = dataclasses.field(default_factory=list)
    loss: list = dataclasses.field(default_factory=list)
    seconds: list = dataclasses.field(default_factory=list)
    evals: list = dataclasses.field(default_factory=list)   # dicts: step, seconds, metrics...
    images_per_second: float = 0.0
    train_seconds: float = 0.0
    precision: str = "fp32"
    world_size: int = 1
    device: str = ""                                         # where it trained (device_name); "": not recorded

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Inverse of :meth:`to_dict`; keys this version does not know are ignored (older logs load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def first_reaching(self, key: str, goal: float, field: str = "seconds") -> float | None:
        """Training seconds (``field="step"``: the step) at the first evaluation whose ``key`` is ``>= goal``;
        ``None`` if none did. Only as fine as the evaluation interval (an upper bound on the true value)."""
        return next((e[field] for e in self.evals if e.get(key, -math.inf) >= goal), None)


class _WeightAverage:
    """Exponential moving average of a model's weights and float buffers (BatchNorm statistics), as timm's
    ModelEma; decay warmed up as ``min(decay, (1+t)/(10+t))``; integer buffers are copied."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay, self.model = decay, copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        mine, live = self.model.state_dict().values(), model.state_dict().values()
        floats = [(a, b) for a, b in zip(mine, live) if a.is_floating_point()]
        torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], 1.0 - d)
        for a, b in zip(mine, live):
            if not a.is_floating_point():
                a.copy_(b)


def distributed() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` unless launched by ``torchrun`` with
    ``WORLD_SIZE > 1``; then the default process group is initialised on first call (gloo on CPU,
    nccl when CUDA is present)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _any_rank(flag: bool, world: int, dev: torch.device) -> bool:
    """Whether ``flag`` is true on any rank (a collective; a no-op in a single process)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=dev)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def fit(model: torch.nn.Module, loss_fn: Callable, get_batch: Callable, *, steps: int, lr: float,
        weight_decay: float, warmup_steps: int, seed: int = 0, device: str = "auto", precision: str = "auto",
        evaluate: Callable | None = None, eval_every: int = 0, checkpoint: str | Path | None = None,
        config=None, desc: str = "train", log_every: int = 1, progress: bool = True, ema: float = 0.0,
        grad_clip: float = 10.0, optimizer: str = "adamw", schedule: str = "cosine") -> History:
    """Train ``model`` for ``steps`` optimizer steps.

    Args:
        loss_fn: ``(outputs, targets) -> (loss, logs)``.
        get_batch: ``(step, rng) -> (inputs Tensor[B, ...], targets)``; ``rng`` is a numpy Generator
            seeded from ``seed`` (and the rank), so the batch order is reproducible.
        evaluate: ``model -> dict of metrics``, called every ``eval_every`` steps and at the end
            (model in eval mode, under no_grad, same precision).
        checkpoint: where to save (atomically) after each evaluation and at the end.
        grad_clip: the gradient norm is clipped to this before every optimizer step.
        optimizer: ``"adamw"`` | ``"sgd"`` (:func:`make_optimizer`); ``lr`` is its peak learning rate.
        schedule: ``"cosine"`` | ``"linear"``: the decay after warm-up (:func:`lr_at`).
        ema: decay of an exponential moving average of the weights (0: off). With it, evaluations and
            checkpoints use the averaged weights, and ``model`` holds them when training ends.

    Under ``torchrun --nproc_per_node=N`` the model is wrapped in ``DistributedDataParallel``: every
    rank draws its own batches (so the global batch is N x the per-process batch), gradients are
    averaged, and only rank 0 evaluates, saves checkpoints and shows progress. A single process is
    the ordinary loop, unchanged.

    Raises:
        NonFiniteLossError: the loss became NaN or inf on any rank (the message gives the step).
    """
    seed_everything(seed)
    rank, world = distributed()
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    core = model.to(dev)
    channels_last = dev.type == "cpu" and prec == "bf16"
    if channels_last:
        core.to(memory_format=torch.channels_last)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(core, device_ids=[dev.index] if dev.type == "cuda" else None)
    lr_at(0, steps, lr, warmup_steps, schedule)                       # an unknown schedule fails before any work
    opt = make_optimizer(model.parameters(), optimizer, lr, weight_decay)
    rng = np.random.default_rng(seed if world == 1 else [seed, rank])
    hist = History(precision=prec, world_size=world, device=device_name(dev))
    train_time, n_images = 0.0, 0
    lead = rank == 0
    averaged = _WeightAverage(core, ema) if ema > 0 else None

    def run_eval(step):
        target = averaged.model if averaged else core
        target.eval()
        with torch.no_grad(), autocast(dev, prec):
            metrics = evaluate(target)
        core.train()
        hist.evals.append({"step": step, "seconds": train_time, **metrics})
        if checkpoint is not None:
            save_checkpoint(checkpoint, target, config or {}, metrics, {"step": step, "train_seconds": train_time})
        return metrics

    bar = tqdm(range(steps), desc=desc, disable=not (progress and lead), mininterval=2.0, leave=True)
    model.train()
    for step in bar:
        x, targets = get_batch(step, rng)
        t0 = time.perf_counter()
        x = x.to(dev, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup_steps, schedule)
        with autocast(dev, prec):
            out = model(x)
        loss, logs = loss_fn(out, targets)
        if _any_rank(not bool(torch.isfinite(loss.detach())), world, dev):
            raise NonFiniteLossError(
                f"{desc}: loss became {float(loss.detach())} at step {step}"
                + (f" (rank {rank} of {world})" if world > 1 else "") + "; stopping"
                + (f" (last good checkpoint kept at {checkpoint})" if checkpoint and Path(checkpoint).exists() else ""),
                history=hist)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        if averaged:
            averaged.update(core, step)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_time += time.perf_counter() - t0
        n_images += len(x) * world
        if step % log_every == 0 or step == steps - 1:
            hist.steps.append(step)
            hist.loss.append(float(loss.detach()))
            hist.seconds.append(train_time)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", img_s=f"{n_images / max(train_time, 1e-9):.1f}", refresh=False)
        if lead and evaluate is not None and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            m = run_eval(step + 1)
            bar.write(f"{desc} step {step + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float)))
    bar.close()
    if world > 1:
        # DDP broadcasts buffers (BatchNorm running statistics) from rank 0 before each forward, so after
        # the last step each rank holds statistics of its own batch: take rank 0's, as the next step would
        import torch.distributed as dist

        for b in core.buffers():
            dist.broadcast(b, 0)
    if averaged:
        core.load_state_dict(averaged.model.state_dict())
        averaged = None
    hist.train_seconds = train_time
    hist.images_per_second = n_images / max(train_time, 1e-9)
    if lead and evaluate is not None:
        run_eval(steps)
    elif lead and checkpoint is not None:
        save_checkpoint(checkpoint, core, config or {}, {}, {"step": steps, "train_seconds": train_time})
    if channels_last:
        core.to(memory_format=torch.contiguous_format)
    return hist
