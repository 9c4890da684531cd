"""hwlib.study.lock: one training at a time on a machine; a second waits or refuses, saying who holds the lock."""

import threading
import time

import pytest

from hwlib.study import lock


def test_a_second_training_refuses_or_waits(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lock.LOCK_ENV, str(tmp_path / "train.lock"))
    with lock.training_slot("first") as load:
        monkeypatch.setenv(lock.WAIT_ENV, "refuse")
        with pytest.raises(lock.TrainingBusy, match="'first'"):
            with lock.training_slot("second"):
                pass
        monkeypatch.setenv(lock.WAIT_ENV, "wait")
        order = []

        def second():
            with lock.training_slot("second") as l2:
                order.append(("second", l2.waited_s))

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        order.append(("first ends", None))
    t.join(timeout=30)
    assert [o[0] for o in order] == ["first ends", "second"] and order[1][1] >= 0.4
    assert "waiting for it to finish" in capsys.readouterr().err
    assert load.other_share is None or 0.0 <= load.other_share <= 1.0
    monkeypatch.setenv(lock.LOCK_ENV, "off")                # "off": no lock at all
    assert lock.lock_path() is None


def test_the_load_beside_a_training_is_measured(tmp_path, monkeypatch):
    monkeypatch.setenv(lock.LOCK_ENV, str(tmp_path / "train.lock"))
    with lock.training_slot("busy") as load:
        t0 = time.process_time()
        while time.process_time() - t0 < 0.3:            # this process's own work is not "other" load
            pass
    if load.other_share is not None:                     # /proc/stat readable
        assert 0.0 <= load.other_share <= 1.0
    assert set(load.as_dict()) == {"other_share", "own_share", "waited_s", "loadavg", "cores"}
    if load.own_share is not None:
        assert 0.0 < load.own_share <= 1.0


def test_other_share_is_the_machine_less_this_training():
    # 2 cores for 10 s: 20 CPU-seconds; this process used 9, the machine 14 -> others 5 of 20
    assert lock.other_share(14.0, 9.0, 10.0, 2) == pytest.approx(0.25)
    assert lock.other_share(9.0, 9.0, 10.0, 2) == 0.0                        # alone
    assert lock.other_share(18.0, 9.0, 10.0, 2, world=2) == 0.0              # two ranks of one job: not "others"
    assert lock.other_share(40.0, 0.0, 10.0, 2) == 1.0                       # clipped


def test_ranks_of_a_job_wait_for_rank_0(tmp_path, monkeypatch):
    monkeypatch.setenv(lock.LOCK_ENV, str(tmp_path / "train.lock"))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    started = []

    def rank1():
        with lock.training_slot("r", rank=1, world=2):
            started.append(time.monotonic())

    t = threading.Thread(target=rank1)
    t.start()
    time.sleep(1.5)
    assert not started                                   # rank 0 does not hold it yet: rank 1 waits
    t0 = time.monotonic()
    with lock.training_slot("r", rank=0, world=2):
        t.join(timeout=10)
    assert started and started[0] >= t0
