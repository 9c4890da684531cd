"""The seed's multi-scale anchor detector: network, target assignment, loss and decoding.

Public API (SPEC §5); the code is :mod:`hwlib.vision.detector`."""

from hwlib.vision.detector import *  # noqa: F401,F403
