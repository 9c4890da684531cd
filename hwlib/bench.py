"""``python -m hwlib.bench``: Throughput benchmark: images/s of every workload, plain fp32 eager against each faster setting.

The command; its code is :mod:`hwlib.study.bench`."""

import sys

from hwlib.study.bench import *  # noqa: F401,F403
from hwlib.study.bench import main

if __name__ == "__main__":
    sys.exit(main())
