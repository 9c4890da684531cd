"""``python -m hwlib.verify``: Retrain stored runs and compare them with their store files.

The command; its code is :mod:`hwlib.study.verify`."""

from hwlib.study.verify import *  # noqa: F401,F403
from hwlib.study.verify import main

if __name__ == "__main__":
    raise SystemExit(main())
