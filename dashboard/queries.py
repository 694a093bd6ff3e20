"""What the pages and the JSON API show, read from Redis: one function per view, shared by both.

Every read here costs a bounded number of round trips whatever the size of the queues, the
history or the dead-letter store: counts come from counters and index cardinalities, lists from
one page of an index.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.errors import DecodeError

from dashboard.filters import DeadLetterFilter, JobFilter
from dashboard.services import Services
from middleware.core.redaction import redact
from middleware.state import job_states, keys
from middleware.state.dead_letter_record import latest_event_id
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import search_jobs
from middleware.state.payload_copy import FIELD as PAYLOAD_FIELD
from middleware.state.payload_copy import read_payload_copy
from middleware.worker_registry import live_workers
from workers.status import collect_status

#: Minutes the overview's chart covers.
CHART_MINUTES = 60


def overview(services: Services) -> dict[str, Any]:
    """Queue counts, dead letters, workers with their current jobs, and the outcome chart."""
    status = collect_status(services.client, services.dead_letters, queues=services.queues)
    return {**status, "chart": outcome_series(services)}


def outcome_series(services: Services, *, minutes: int = CHART_MINUTES) -> dict[str, Any]:
    """Succeeded and failed attempts per minute over the last ``minutes``, failures by category;
    one pipelined round trip."""
    last = services.clock() // 60_000
    span = list(range(last - minutes + 1, last + 1))
    pipe = services.client.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(keys.outcomes_minute_key(minute))
    succeeded: list[int] = []
    failed: dict[str, list[int]] = {}
    for index, counts in enumerate(pipe.execute()):
        succeeded.append(0)
        for raw_field, raw_count in counts.items():
            outcome, _, category = keys.text(raw_field).partition(":")
            if outcome == "succeeded":
                succeeded[index] += int(raw_count)
            elif outcome == "failed":
                failed.setdefault(category or "unknown", [0] * len(span))[index] += int(raw_count)
    return {
        "minutes": [minute * 60_000 for minute in span],
        "succeeded": succeeded,
        "failed_by_category": dict(sorted(failed.items())),
    }


def running_jobs(services: Services) -> list[dict[str, Any]]:
    """Jobs running now, from the workers' heartbeats: queue, actor, worker, started, elapsed,
    attempt n of max. Two round trips whatever the number of jobs."""
    now = services.clock()
    rows: list[dict[str, Any]] = []
    for worker in live_workers(services.client):
        for job in worker.get("jobs", []):
            rows.append(
                {**job, "worker": worker["id"], "elapsed_ms": max(now - job["started_at"], 0)}
            )
    if not rows:
        return rows
    counters = services.client.mget([keys.attempt_counter_key(row["job_id"]) for row in rows])
    for row, counter in zip(rows, counters, strict=True):  # type: ignore[arg-type]
        row["attempt"] = int(counter or 0)
        row["max_attempts"] = services.policy.resolve(
            "unknown", actor=row["actor"], queue=row["queue"], env=services.env
        ).max_attempts
    rows.sort(key=lambda row: row["started_at"])
    return rows


def workers(services: Services) -> list[dict[str, Any]]:
    """Workers alive (heartbeat within 30 s): host, pid, queues (lane), threads, current jobs."""
    return live_workers(services.client)


def job_detail(services: Services, job_id: str) -> dict[str, Any] | None:
    """A job's state and attempt timeline (rule, worker and Sentry event of each attempt), its
    payload (redacted: from its delivery while it waits or runs, from its dead letter once dead,
    else from the copy its record kept when it finished), its
    dead letter (rule, error, traceback) when it has one, and its result when it succeeded;
    None for an unknown job."""
    document = services.history.show(job_id)
    if document is None:
        return None
    extra = services.client.hmget(
        keys.job_key(job_id),
        ["evaluation_uuid", "target_uuid", "abort_requested_at", "started_at", "worker",
         "redis_message_id", PAYLOAD_FIELD],
    )  # fmt: skip
    evaluation_uuid, target_uuid, abort_at, started_at, worker, delivery, kept = (
        None if value is None else keys.text(value) or None
        for value in extra  # type: ignore[union-attr]
    )
    dead_letter = None
    if document.get("dead_letter_id"):
        record = services.dead_letters.get(document["dead_letter_id"])
        dead_letter = None if record is None else record.model_dump(mode="json")
    result = None
    if document["state"] == "succeeded" and evaluation_uuid and target_uuid:
        stored = services.results.get(evaluation_uuid, target_uuid)
        result = None if stored is None else stored.model_dump(mode="json")
    if dead_letter is not None and not document["attempts"]:
        # The history's copy of the last attempt is flushed a moment after the dead letter.
        document["attempts"] = dead_letter["attempts"]
    document["attempts"] = with_waits(document["attempts"])
    state = document["state"]
    payload, source, running_n = None, None, None
    if state in job_states.ACTIVE_STATES:
        payload, source, running_n = _delivery(services, job_id, document["queue"], delivery)
    elif dead_letter is not None:
        payload, source = dead_letter["payload"], "dead_letter"
    else:
        payload, source = read_payload_copy(kept)
    running_attempt = None
    if state == job_states.RUNNING and running_n:
        running_attempt = {"n": running_n, "started_at": started_at, "worker": worker}
    return {
        **document,
        "evaluation_uuid": evaluation_uuid,
        "target_uuid": target_uuid,
        "started_at": started_at,
        "abort_requested_at": abort_at,
        "worker": worker,
        "running_attempt": running_attempt,
        "payload": payload,
        "payload_source": source,
        "sentry_event_id": latest_event_id(document["attempts"])
        or (dead_letter or {}).get("sentry_event_id"),
        "dead_letter": dead_letter,
        "result": result,
        "can_abort": state in job_states.ACTIVE_STATES and not abort_at,
        "can_redrive": dead_letter is not None,
    }


def _delivery(
    services: Services, job_id: str, queue: str | None, delivery: str | None
) -> tuple[dict[str, Any] | None, str | None, int | None]:
    """The redacted payload of a waiting or running job's delivery (the Dramatiq message,
    ``Message.asdict()``), where it was found (``queue``, ``delay_queue``, or ``undecodable``
    when it is there but cannot be read) and the number of its current attempt: one round
    trip, reading Dramatiq's payload hashes by delivery id."""
    pipe = services.client.pipeline(transaction=False)
    base = q_name(queue) if queue else None
    if base and delivery:
        pipe.hget(keys.queue_messages_key(base), delivery)
        pipe.hget(keys.queue_messages_key(keys.delay_queue_name(base)), delivery)
    pipe.get(keys.attempt_counter_key(job_id))
    *found, counter = pipe.execute()
    n = int(counter) if counter else None
    for source, raw in zip(("queue", "delay_queue"), found, strict=False):
        if raw is not None:
            try:
                message = dramatiq.Message.decode(raw)
            except DecodeError:
                return None, "undecodable", n
            payload: dict[str, Any] = redact(message.asdict())
            return payload, source, n
    return None, None, n


def with_waits(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline with ``waited_ms`` on each attempt: how long the job waited after it before
    the next attempt started (the backoff it actually got), None for the last one."""
    timed = []
    for index, attempt in enumerate(attempts):
        following = attempts[index + 1] if index + 1 < len(attempts) else None
        waited = None
        if following and following.get("started_at") and attempt.get("finished_at"):
            waited = max(int(following["started_at"]) - int(attempt["finished_at"]), 0)
        timed.append({**attempt, "waited_ms": waited})
    return timed


def dead_letter_page(
    store: DeadLetters, selection: DeadLetterFilter, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """One page of dead letters, newest first, with how many match the indexed filters.

    The rule filter is applied to the page the store returns (no index by rule), so such a page
    may hold fewer than ``limit`` records while more pages follow.
    """
    page = store.list(
        queue=selection.queue, category=selection.category, since_ms=selection.since_ms,
        until_ms=selection.until_ms, limit=limit, cursor=cursor,
    )  # fmt: skip
    total = store.count(
        queue=selection.queue, category=selection.category, since_ms=selection.since_ms,
        until_ms=selection.until_ms,
    )  # fmt: skip
    return {
        "records": [r.summary() for r in page.records if selection.matches(r)],
        "next_cursor": page.next_cursor,
        "matching": total if selection.rule is None else None,
        "filter": selection.as_dict(),
    }


def history_page(
    services: Services, selection: JobFilter, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Jobs matching ``selection``, newest first: one page of the job index (``search_jobs``),
    which costs the same at any depth. A filtered page may hold fewer than ``limit`` jobs while
    more pages follow.

    Raises:
      ValueError: a cursor this index did not give.
    """
    jobs, next_cursor = search_jobs(
        services.client, **selection.as_dict(), limit=limit, cursor=cursor
    )
    return {"jobs": jobs, "next_cursor": next_cursor, "filter": selection.as_dict()}
