"""``python -m hwlib.run``: Train one model of a profile from the command line, in one process or scaled out with torchrun.

The command; its code is :mod:`hwlib.study.launch`."""

from hwlib.study.launch import *  # noqa: F401,F403
from hwlib.study.launch import main

if __name__ == "__main__":
    raise SystemExit(main())
