"""An application's own actors on evalq: monthly reports built from a (toy) warehouse.

Nothing here is about evaluations. The module declares its actors on evalq's broker, on a queue
of its own (``reports``) with its own options (``max_attempts``), and raises its own exceptions;
its policy file (``examples/reports/policies.toml``) adds a rule for one of them. Run it with::

    EVALQ_POLICY_FILE=examples/reports/policies.toml \
        dramatiq workers examples.reports.actors -Q reports

and the jobs get what evaluation jobs get: the error policy (retries by category, dead letters),
job history (``evalq jobs show``), ``evalq abort``, deduplication through the client
(``Evalq.submit_job(..., idempotency_key=...)``) and Sentry grouping.

The warehouse is a few Redis keys, so that the example runs anywhere: ``warehouse:busy:<account>``
counts how many more requests it answers with HTTP 429, ``warehouse:closed`` holds the periods
whose ledger is closed.
"""

from __future__ import annotations

import time

import dramatiq

from middleware.errors import NonRetryable
from workers import broker  # evalq's broker, built from the EVALQ_* environment

REPORTS_QUEUE = "reports"
BUILT_KEY = "reports:built"


class WarehouseBusy(Exception):
    """The warehouse asks us to come back later. Like the openai SDK's ``RateLimitError`` it
    carries ``status_code = 429``, so evalq's shipped rules make it ``rate_limited``."""

    status_code = 429


class LedgerClosed(Exception):
    """The period's ledger is closed: no attempt will ever succeed. The application's policy
    file has a rule for it (``ledger_closed``: ``invalid_request``, dead-lettered at once)."""


def _fetch_totals(account: str, period: str) -> int:
    client = broker.client
    if client.sismember("warehouse:closed", period):
        raise LedgerClosed(f"the ledger of {period} is closed")
    if int(client.decr(f"warehouse:busy:{account}")) >= 0:
        raise WarehouseBusy(f"warehouse busy, retry later ({account})")
    return len(account) * 100


@dramatiq.actor(broker=broker, queue_name=REPORTS_QUEUE, max_attempts=5)
def build_report(account: str, period: str) -> None:
    """Build one account's report for one period and record it."""
    if not account:
        raise NonRetryable("an account is required", category="invalid_payload")
    total = _fetch_totals(account, period)
    broker.client.hset(BUILT_KEY, f"{account}:{period}", total)


@dramatiq.actor(broker=broker, queue_name=REPORTS_QUEUE, time_limit=120_000)
def rebuild_history(account: str, seconds: float) -> None:
    """Rebuild an account's whole history: long, in short steps, so ``evalq abort`` can stop it
    between two of them."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    broker.client.hset(BUILT_KEY, f"{account}:history", 1)
