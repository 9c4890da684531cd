"""Boxes: IoU and class-aware NMS, plus the input checks shared by the public API.

Public API (SPEC §5); the code is :mod:`hwlib.vision.boxes`."""

from hwlib.vision.boxes import *  # noqa: F401,F403
