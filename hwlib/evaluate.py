"""``python -m hwlib.evaluate``: Evaluate any checkpoint from the command line, on the held-out test split, with the report's protocol.

The command; its code is :mod:`hwlib.study.evaluate`."""

import sys

from hwlib.study.evaluate import *  # noqa: F401,F403
from hwlib.study.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
