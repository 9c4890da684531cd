"""One training at a time on a machine, and what else ran beside each.

Two trainings on two cores take four to ten times as long each, and their timings mean nothing. Every training of
the project (:func:`hwlib.study.obtain.obtain_run`, :func:`hwlib.study.verify.retrain`) runs inside
:func:`training_slot`: an exclusive lock on one file that every checkout and worktree on the machine shares
(``$TMPDIR/hwlib-training.lock``; ``HWLIB_TRAINING_LOCK=<path>`` another, ``=off`` none). A training that finds it
held waits, saying who holds it (``HWLIB_TRAINING_LOCK_WAIT=refuse``: stops with that message instead). The ranks
of one distributed job are one training: rank 0 holds the lock for all, and the other ranks wait until it does.

The slot also measures the machine's load while it trained (:class:`Load`): the share of the machine's cores that
*other* processes kept busy, from ``/proc/stat`` less this process's own CPU time. Each stored run records it in
its machine record, so that its seconds can be trusted or discounted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

LOCK_ENV = "HWLIB_TRAINING_LOCK"
WAIT_ENV = "HWLIB_TRAINING_LOCK_WAIT"
DEFAULT_LOCK = Path(tempfile.gettempdir()) / "hwlib-training.lock"


class TrainingBusy(RuntimeError):
    """Another training of the project holds the machine (and waiting was refused)."""


def lock_path() -> Path | None:
    """The lock file (``None``: no lock, ``HWLIB_TRAINING_LOCK=off``)."""
    v = os.environ.get(LOCK_ENV, "")
    if v.lower() in ("off", "0", "none"):
        return None
    return Path(v) if v else DEFAULT_LOCK


def _busy_seconds() -> float | None:
    """CPU-seconds the whole machine has been busy since boot (``/proc/stat``), or ``None`` where it is unreadable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Load:
    """What the machine did while one training ran: ``other_share`` the share of all its cores that other processes
    kept busy (0: the training had the machine to itself; 0.5 on 2 cores: another process took a core),
    ``own_share`` the share the training itself kept busy (far below its usual share: it was paused, SIGSTOP, for
    part of its seconds), ``waited_s`` seconds spent waiting for another training's lock, ``loadavg`` the 1-minute load at the end."""

    other_share: float | None = None
    own_share: float | None = None
    waited_s: float = 0.0
    loadavg: float | None = None
    cores: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def other_share(busy: float, own: float, wall: float, cores: int, world: int = 1) -> float:
    """The share of the machine's ``cores`` that other processes kept busy over ``wall`` seconds: the machine's busy
    CPU-seconds less this training's own (``own`` per process, ``world`` processes of one job taken to work alike),
    in [0, 1]."""
    return min(1.0, max(0.0, busy - world * own) / (wall * cores))


def _holder(f) -> str:
    try:
        f.seek(0)
        h = json.loads(f.read() or "{}")
        return f"pid {h.get('pid')}, {h.get('name')!r}, from {h.get('cwd')}, since {h.get('since')}"
    except (OSError, ValueError):
        return "another process"


def _job() -> str:
    """What names this distributed job on the machine (torchrun's run id, else its rendezvous address)."""
    return os.environ.get("TORCHELASTIC_RUN_ID") or f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"


def _holder_job(path: Path):
    try:
        return json.loads(path.read_text() or "{}").get("job")
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def training_slot(name: str, rank: int = 0, world: int = 1):
    """Hold the machine's training lock while the ``with`` body trains run ``name``; yields a :class:`Load` that is
    filled in when the body ends. Waits for another training of the project (printing who holds the lock, then every
    ten minutes), or raises :class:`TrainingBusy` with ``HWLIB_TRAINING_LOCK_WAIT=refuse``. In a distributed job of
    ``world`` processes, rank 0 takes the lock for the job and the other ranks wait until it holds it (before any
    of them starts training, so none sits in a collective operation while rank 0 waits)."""
    import fcntl

    load = Load()
    path = lock_path()
    f = None
    t0 = time.monotonic()
    if path is not None and rank != 0:
        while _holder_job(path) != _job():                # rank 0 writes the job's name once it holds the lock
            time.sleep(1.0)
        load.waited_s = time.monotonic() - t0
    elif path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"{name}: another training holds this machine ({_holder(f)}; lock {path})"
            if os.environ.get(WAIT_ENV, "wait") == "refuse":
                f.close()
                raise TrainingBusy(msg + f": not starting ({WAIT_ENV}=refuse)") from None
            print(msg + ": waiting for it to finish", file=sys.stderr, flush=True)
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(2.0)
                    if int(time.monotonic() - t0) % 600 < 2:
                        print(f"{name}: still waiting ({(time.monotonic() - t0) / 60:.0f} min)", file=sys.stderr,
                              flush=True)
        load.waited_s = time.monotonic() - t0
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "name": name, "cwd": os.getcwd(),
                            "since": time.strftime("%Y-%m-%d %H:%M:%S"), **({"job": _job()} if world > 1 else {})}))
        f.flush()
    busy0, own0, wall0 = _busy_seconds(), time.process_time(), time.monotonic()
    try:
        yield load
    finally:
        busy1, own1, wall1 = _busy_seconds(), time.process_time(), time.monotonic()
        if busy0 is not None and busy1 is not None and wall1 > wall0:
            load.other_share = other_share(busy1 - busy0, own1 - own0, wall1 - wall0, load.cores, world)
            load.own_share = min(1.0, world * (own1 - own0) / ((wall1 - wall0) * load.cores))
        with contextlib.suppress(OSError):
            load.loadavg = os.getloadavg()[0]
        if f is not None:
            with contextlib.suppress(OSError):
                f.seek(0)
                f.truncate()
                fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
