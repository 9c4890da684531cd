"""Keypoint models and their codecs: heatmaps (argmax / DARK), direct regression, integral regression.

Public API (SPEC §5); the code is :mod:`hwlib.vision.keypoints`."""

from hwlib.vision.keypoints import *  # noqa: F401,F403
