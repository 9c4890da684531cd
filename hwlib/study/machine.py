"""What machine this is: CPU model and kind, threads, bf16 support, torch, GPU. Read by the pipeline's stage records,
the benchmark, the zoo and every run the store records (:mod:`hwlib.study.store`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from hwlib.vision.train import bf16_native, cpu_flags, cpu_kind


def cpu_model() -> str:
    try:
        return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "") or platform.processor()
    except OSError:
        return platform.processor()


def machine_info() -> dict:
    """The full description: ``cpu``, ``cores``, ``torch``, ``threads``, ``python``, ``bf16_native``, ``amx``,
    ``avx512_bf16``, ``cuda``, ``glibc_tunables``."""
    flags = cpu_flags()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "bf16_native": bf16_native(), "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "cuda": torch.cuda.is_available(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}


def machine_record() -> dict:
    """The short description a stored run carries: ``cpu``, ``cpu_kind`` (``"amx"``, ``"avx512_bf16"`` or
    ``"avx2"``...), ``threads``, ``torch`` and ``gpu`` (its name, or ``""``)."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": gpu}
