"""hwlib.lock: one training at a time on a machine; a second waits or refuses, saying who holds the lock."""

import threading
import time

import pytest

from hwlib import lock


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
    # ranks other than 0 of a distributed job do not take it; "off" takes none
    with lock.training_slot("rank0"):
        with lock.training_slot("rank1", rank=1):
            pass
    monkeypatch.setenv(lock.LOCK_ENV, "off")
    assert lock.lock_path() is None


def test_the_load_beside_a_training_is_measured(tmp_path, monkeypatch):
    monkeypatch.setenv(lock.LOCK_ENV, str(tmp_path / "train.lock"))
    with lock.training_slot("busy") as load:
        t0 = time.process_time()
        while time.process_time() - t0 < 0.3:            # this process's own work is not "other" load
            pass
    if load.other_share is not None:                     # /proc/stat readable
        assert 0.0 <= load.other_share <= 1.0
    assert set(load.as_dict()) == {"other_share", "waited_s", "loadavg", "cores"}
