"""The study's data splits: training streams per run seed, validation (every choice) and test (reported numbers only),
each drawn once per process (cached).
"""

from __future__ import annotations

import functools

from hwlib.config import SPLIT_SEEDS
from hwlib.vision.data import make_detection_data, make_keypoint_data


VAL_SEED = SPLIT_SEEDS["val"]     # validation images: the same for every run and arm
TEST_SEED = SPLIT_SEEDS["test"]   # the held-out test split: reported numbers only (never a choice)


@functools.lru_cache(maxsize=8)
def detection_data(n: int, seed: int, size_mode: str = "class", balanced_classes: bool = True):
    """Cached :func:`hwlib.vision.data.make_detection_data` (arms of a notebook share their data); pass a config's
    ``size_mode`` and ``balanced_classes``."""
    return make_detection_data(n, seed=seed, size_mode=size_mode, balanced_classes=balanced_classes)


@functools.lru_cache(maxsize=8)
def keypoint_data(n: int, seed: int, hard_fraction: float = 0.2):
    return make_keypoint_data(n, seed=seed, hard_fraction=hard_fraction, return_meta=True)


def split_seed(split: str) -> int:
    """The data seed of an evaluation split: ``"val"`` (curves, every choice) or ``"test"`` (reported numbers)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {tuple(SPLIT_SEEDS)}, got {split!r}")
    return SPLIT_SEEDS[split]
