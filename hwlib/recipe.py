"""``python -m hwlib.recipe``: The training-recipe study (issue #14): how many training images each recipe needs to reach a goal accuracy.

The command; its code is :mod:`hwlib.study.recipe`."""

import sys

from hwlib.study.recipe import *  # noqa: F401,F403
from hwlib.study.recipe import main

if __name__ == "__main__":
    sys.exit(main())
