"""``python -m hwlib.zoo``: The model zoo: the ``cpu`` run's seed-0 headline checkpoints, stored in bf16, with a manifest.

The command; its code is :mod:`hwlib.study.zoo`."""

import sys

from hwlib.study.zoo import *  # noqa: F401,F403
from hwlib.study.zoo import main

if __name__ == "__main__":
    sys.exit(main())
