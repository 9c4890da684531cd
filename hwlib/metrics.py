"""Metrics that know nothing of models: VOC AP for detection, PCK for keypoints.

Public API (SPEC §5); the code is :mod:`hwlib.vision.metrics`."""

from hwlib.vision.metrics import *  # noqa: F401,F403
