"""Test-wide settings: the tests' trainings take their own training lock (:mod:`hwlib.study.lock`), so that a training
of the project running (or paused) on the machine never makes the suite wait; notebooks run by nbval inherit it."""

import os
import tempfile

os.environ["HWLIB_TRAINING_LOCK"] = os.path.join(tempfile.mkdtemp(prefix="hwlib-tests-"), "training.lock")
