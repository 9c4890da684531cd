"""The training loop shared by the detector and the keypoint models.

AdamW, linear warm-up then cosine decay, bf16 autocast + channels_last on CPUs that support
bf16 natively (AVX512-BF16 or AMX; fp32 elsewhere), tqdm progress with loss and images/s,
periodic validation, a NaN/inf guard, and atomic checkpoints that carry their config.
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
from tqdm.auto import tqdm

from .report import atomic_write_bytes, atomic_write_text, to_jsonable


class NonFiniteLossError(RuntimeError):
    """Raised when the loss becomes NaN or inf; the last good checkpoint is kept."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or of another architecture."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


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


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 1% of ``peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def fit(model: torch.nn.Module, loss_fn: Callable, get_batch: Callable, *, steps: int, lr: float,
        weight_decay: float, warmup_steps: int, seed: int = 0, device: str = "auto", precision: str = "auto",
        evaluate: Callable | None = None, eval_every: int = 0, checkpoint: str | Path | None = None,
        config=None, desc: str = "train", log_every: int = 1, progress: bool = True) -> History:
    """Train ``model`` for ``steps`` optimizer steps.

    Args:
        loss_fn: ``(outputs, targets) -> (loss, logs)``.
        get_batch: ``(step, rng) -> (inputs Tensor[B, ...], targets)``; ``rng`` is a numpy Generator
            seeded from ``seed``, so the batch order is reproducible.
        evaluate: ``model -> dict of metrics``, called every ``eval_every`` steps and at the end
            (model in eval mode, under no_grad, same precision).
        checkpoint: where to save (atomically) after each evaluation and at the end.

    Raises:
        NonFiniteLossError: the loss became NaN or inf (the message gives the step).
    """
    seed_everything(seed)
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    model.to(dev)
    channels_last = dev.type == "cpu" and prec == "bf16"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    hist = History(precision=prec)
    train_time, n_images = 0.0, 0

    def run_eval(step):
        model.eval()
        with torch.no_grad(), autocast(dev, prec):
            metrics = evaluate(model)
        model.train()
        hist.evals.append({"step": step, "seconds": train_time, **metrics})
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, config or {}, metrics, {"step": step})
        return metrics

    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=2.0, leave=True)
    model.train()
    for step in bar:
        x, targets = get_batch(step, rng)
        t0 = time.perf_counter()
        x = x.to(dev, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup_steps)
        with autocast(dev, prec):
            out = model(x)
        loss, logs = loss_fn(out, targets)
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLossError(
                f"{desc}: loss became {float(loss.detach())} at step {step}; stopping"
                + (f" (last good checkpoint kept at {checkpoint})" if checkpoint and Path(checkpoint).exists() else ""))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_time += time.perf_counter() - t0
        n_images += len(x)
        if step % log_every == 0 or step == steps - 1:
            hist.steps.append(step)
            hist.loss.append(float(loss.detach()))
            hist.seconds.append(train_time)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", img_s=f"{n_images / max(train_time, 1e-9):.1f}", refresh=False)
        if evaluate is not None and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            m = run_eval(step + 1)
            bar.write(f"{desc} step {step + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float)))
    bar.close()
    hist.train_seconds = train_time
    hist.images_per_second = n_images / max(train_time, 1e-9)
    if evaluate is not None:
        run_eval(steps)
    elif checkpoint is not None:
        save_checkpoint(checkpoint, model, config or {}, {}, {"step": steps})
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return hist
