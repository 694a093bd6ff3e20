"""The run-alone gate: ordinary jobs share it, a suspect job runs with no other."""

from __future__ import annotations

import threading
import time

from middleware.isolation import RunAlone


def test_a_suspect_waits_for_running_jobs_and_new_jobs_wait_for_the_suspect() -> None:
    gate = RunAlone()
    events: list[str] = []
    gate.share()  # an ordinary job is running

    def suspect() -> None:
        gate.enter_alone()
        events.append("suspect runs")
        time.sleep(0.05)
        events.append("suspect done")
        gate.leave_alone()

    def latecomer() -> None:
        gate.share()
        events.append("latecomer runs")
        gate.unshare()

    s = threading.Thread(target=suspect)
    s.start()
    time.sleep(0.05)
    late = threading.Thread(target=latecomer)
    late.start()
    time.sleep(0.05)
    assert events == []  # the suspect waits for the running job; the latecomer waits behind it
    events.append("running job done")
    gate.unshare()
    s.join(2)
    late.join(2)
    assert events == ["running job done", "suspect runs", "suspect done", "latecomer runs"]


def test_ordinary_jobs_share_the_gate() -> None:
    gate = RunAlone()
    gate.share()
    done = threading.Event()

    def another() -> None:
        gate.share()
        done.set()
        gate.unshare()

    threading.Thread(target=another).start()
    assert done.wait(1)
    gate.unshare()
