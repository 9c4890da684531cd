"""``python -m hwlib.pipeline``: Run the numbered notebooks in order with papermill, then build the PDF.

The command; its code is :mod:`hwlib.study.pipeline`."""

import sys

from hwlib.study.pipeline import *  # noqa: F401,F403
from hwlib.study.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
