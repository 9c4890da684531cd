"""``python -m hwlib.stages``: Training sets that a notebook asks for, callable without the notebook: fill the run store stage by stage.

The command; its code is :mod:`hwlib.study.stages`."""

import sys

from hwlib.study.stages import *  # noqa: F401,F403
from hwlib.study.stages import main

if __name__ == "__main__":
    sys.exit(main())
