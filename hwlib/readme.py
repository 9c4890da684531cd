"""``python -m hwlib.readme``: Regenerate the README's results table from report/generated/*.json (between the markers).

The command; its code is :mod:`hwlib.study.readme`."""

from hwlib.study.readme import *  # noqa: F401,F403
from hwlib.study.readme import update_readme

if __name__ == "__main__":
    update_readme()
