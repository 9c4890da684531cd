"""``python -m hwlib.equivalence``: Changes on the training path that keep results keep their stored runs, with evidence.

The command; its code is :mod:`hwlib.study.equivalence`."""

import sys

from hwlib.study.equivalence import *  # noqa: F401,F403
from hwlib.study.equivalence import main

if __name__ == "__main__":
    sys.exit(main())
