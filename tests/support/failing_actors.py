"""Actors that fail on purpose, imported by test worker pools (``dramatiq workers workers
tests.support.failing_actors``) to exercise the error policy and Sentry with real processes."""

from __future__ import annotations

import dramatiq

from workers import broker  # evalq's broker: these actors are declared on it

FAILING_QUEUE = "default"


class ShardLookupError(LookupError):
    """A root cause that no rule knows."""


class LedgerError(ArithmeticError):
    """Another root cause that no rule knows."""


class JobWrapperError(RuntimeError):
    """A wrapper of the kind that used to hide every root cause as "unknown"."""


class StepFailed(Exception):
    """Another wrapper."""


def _shard_lookup(job_tag: str) -> None:
    raise ShardLookupError(f"shard 0x{abs(hash(job_tag)) % 4096:03x} has no row for '{job_tag}'")


def _ledger(job_tag: str) -> None:
    raise LedgerError(f"ledger {job_tag} does not balance by 17 cents")


@dramatiq.actor(broker=broker, queue_name=FAILING_QUEUE)
def fail_unknown(root: str, wrapper: str, job_tag: str) -> None:
    """Fail with an unclassified root cause (``shard`` or ``ledger``) inside a wrapper."""
    raise_root = _shard_lookup if root == "shard" else _ledger
    try:
        raise_root(job_tag)
    except Exception as error:
        if wrapper == "from":
            raise JobWrapperError(f"job {job_tag} failed") from error
        if wrapper == "implicit":
            # Raised while handling the root cause: linked by __context__ only.
            raise StepFailed(f"step 3 of job {job_tag} failed")  # noqa: B904
        raise


class Unprintable(Exception):
    """An exception that cannot even say what it is."""

    def __str__(self) -> str:
        raise AttributeError("no message for you")


@dramatiq.actor(broker=broker, queue_name=FAILING_QUEUE)
def fail_unprintably() -> None:
    """Fail with an exception whose ``str()`` raises."""
    raise Unprintable()


#: A provider key that a failing job's error message quotes; it must never reach a log.
LEAKED_KEY = "sk-live-firstjob0123456789abcdef"


@dramatiq.actor(broker=broker, queue_name=FAILING_QUEUE)
def fail_quoting_a_key() -> None:
    """Fail with an unclassified error whose message quotes a provider key."""
    raise ShardLookupError(f"provider refused key {LEAKED_KEY}")
