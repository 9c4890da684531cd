"""Synthetic data: coloured shapes for detection, stick figures for keypoints.

Public API (SPEC §5); the code is :mod:`hwlib.vision.data`."""

from hwlib.vision.data import *  # noqa: F401,F403
