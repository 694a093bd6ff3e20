"""An actor that kills its own worker process for one tag (a poison message) and sleeps a little
for the others, imported by test pools (``dramatiq workers workers tests.support.crashing_actors``).
"""

from __future__ import annotations

import os
import signal
import time

import dramatiq

from tests.support.dramatiq_option_actors import record_run
from workers import broker

POISON = "poison"


@dramatiq.actor(broker=broker, queue_name="default")
def maybe_kill_worker(tag: str) -> None:
    """Kill this worker process when ``tag`` is the poison one; else take a moment and record
    the run."""
    if tag == POISON:
        time.sleep(0.3)  # let the jobs fetched beside it start
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.8)
    record_run(tag)
