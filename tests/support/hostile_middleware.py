"""An actor and middleware that misbehave on purpose, imported by test pools
(``dramatiq workers workers tests.support.hostile_middleware``).

``Skipper`` skips (``SkipMessage``) every job tagged ``skip:``, after its attempt started.

The middleware raises ``ThreadDeath`` (a ``BaseException``, which Dramatiq's worker thread does
not catch) on the first run of a job whose tag names where: ``after:`` in the after hook (the
error policy never ends the attempt; the delivery is still acked by the thread), ``ack:`` just
before the ack (the outcome is written, the delivery never acked), ``both:`` in both (neither).
The exception's text carries a planted key, which must never reach the worker's output.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware import SkipMessage

from tests.support.dramatiq_option_actors import record_run
from workers import broker

PLANTED_KEY = "sk-live-threaddeath0123456789abcdef"


class ThreadDeath(BaseException):
    """What kills a worker thread: not an ``Exception``, so nothing in Dramatiq catches it."""


@dramatiq.actor(broker=broker, queue_name="default")
def run_and_record(tag: str) -> None:
    """Record one run of the job tagged ``tag``."""
    record_run(tag)


def _first_run(message: MessageProxy, where: str) -> bool:
    if message.actor_name != run_and_record.actor_name:
        return False
    tag = str(message.args[0])
    if not tag.startswith((f"{where}:", "both:")):
        return False
    return int(broker.client.llen(f"test:runs:{tag}")) == 1


class ThreadKiller(dramatiq.Middleware):
    """Kills the worker thread running the first run of a job tagged to die (see the module)."""

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:  # fmt: skip
        if _first_run(message, "after"):
            raise ThreadDeath(f"killed after {message.args[0]} with key {PLANTED_KEY}")

    def before_ack(self, broker: Broker, message: MessageProxy) -> None:
        if _first_run(message, "ack"):
            raise ThreadDeath(f"killed before the ack of {message.args[0]} with key {PLANTED_KEY}")


class Skipper(dramatiq.Middleware):
    """Skips every job tagged ``skip:`` before it runs."""

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        if message.actor_name == run_and_record.actor_name and str(message.args[0]).startswith(
            "skip:"
        ):
            raise SkipMessage(f"{message.args[0]} is not for today")


broker.add_middleware(ThreadKiller())
broker.add_middleware(Skipper())
