"""The job index: find jobs by queue, actor, state, category and time, a page at a time.

Every job is in sorted sets scored by when it was enqueued (ms since the epoch): one of every
job, and one per queue, actor, state, category and (queue, state) pair. The scripts that change a
job's record move its entries in the same step (``lua/shared/job_index.lua``: submit, start,
retry, dead letter, abort, redrive, and the history flusher's outcomes), so the index adds no
round trip to a job's life. A page reads the smallest index that holds every match, from the
cursor on, and checks each job's record against the filters, so it costs the same at any depth
and whatever the size of the history; entries are trimmed by age on a schedule
(``trim_job_index``), not per job.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

import redis

from middleware.state import keys
from middleware.state.job_states import STATES, state_list
from middleware.state.scripts import scripts_for

#: Largest page ``search_jobs`` returns.
MAX_PAGE_SIZE: Final = 1_000
#: Most index entries one page reads, per job asked for: a page whose filters few jobs match
#: stops there and returns a cursor to go on from.
ENTRIES_READ_PER_JOB: Final = 20
#: Most entries one ``trim_job_index`` call removes.
TRIM_BUDGET: Final = 10_000

_CURSOR = re.compile(r"(\d{1,15}):([^\s:]{1,200})")
_SUMMARY_TEXT = ("queue", "actor", "state", "category")
_SUMMARY_ERRORS = ("error_type", "error_message", "dead_letter_id")


def search_jobs(
    client: redis.Redis,
    *,
    queue: str | None = None,
    state: str | None = None,
    actor: str | None = None,
    category: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of jobs, newest first, and the cursor of the next page (None on the last one).

    Filters (None: any) combine: ``queue``, ``state`` (one of ``job_states.STATES``), ``actor``,
    ``category`` (a job's latest failure category), and ``since_ms``/``until_ms``, inclusive
    bounds on when the job was enqueued (ms since the epoch; a redrive enqueues it anew). Pass
    the previous page's cursor as ``cursor`` for the next page. One round trip; a page reads at
    most ``ENTRIES_READ_PER_JOB * limit`` index entries, so with filters few jobs match a page
    may hold fewer than ``limit`` jobs (even none) and still return a cursor.

    Each job is the summary of its ``evalq jobs show`` document: ``{"job_id", "queue", "actor",
    "state", "category", "attempts", "enqueued_at", "finished_at", "error_type",
    "error_message", "dead_letter_id"}``, where ``attempts`` is the number of attempts started,
    times are ms since the epoch and a field the job does not have is None.

    Raises:
      ValueError: ``limit`` is not in 1..1000, or ``cursor`` is not one this function gave.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")
    after_score, after_id = ("", "") if cursor is None else _decode_cursor(cursor)
    upper = "+inf" if until_ms is None else str(until_ms)
    if after_score and until_ms is not None and int(after_score) > until_ms:
        after_score, after_id = "", ""  # a cursor from beyond the window: start at its top
    lower = "-inf" if since_ms is None else str(since_ms)
    filters = {"queue": queue, "actor": actor, "state": state, "category": category}
    candidates = [keys.job_index_key(f, v) for f, v in filters.items() if v is not None]
    if queue is not None and state is not None:
        candidates.append(keys.job_queue_state_index_key(queue, state))
    reply = scripts_for(client).job_page(
        keys=candidates or [keys.JOB_INDEX_ALL],
        args=[
            keys.JOB_PREFIX,
            keys.ATTEMPT_COUNTER_PREFIX,
            upper,
            lower,
            after_score,
            after_id,
            limit,
            ENTRIES_READ_PER_JOB * limit,
            *(value or "" for value in filters.values()),
        ],
    )
    more, last_score, last_id = int(reply[0]), keys.text(reply[1]), keys.text(reply[2])
    jobs = [_summary([keys.text(v) for v in reply[i : i + 11]]) for i in range(3, len(reply), 11)]
    return jobs, _encode_cursor(last_score, last_id) if more else None


def _summary(row: list[str]) -> dict[str, Any]:
    job_id, score, *text, finished_at = row[:7]
    errors, attempts = row[7:10], row[10]
    summary: dict[str, Any] = {"job_id": job_id}
    summary.update({name: value or None for name, value in zip(_SUMMARY_TEXT, text, strict=True)})
    summary["attempts"] = int(attempts)
    summary["enqueued_at"] = int(float(score))
    summary["finished_at"] = int(finished_at) if finished_at else None
    summary.update(
        {name: value or None for name, value in zip(_SUMMARY_ERRORS, errors, strict=True)}
    )
    return summary


def trim_job_index(
    client: redis.Redis, *, max_age_s: int, now_ms: int, budget: int = TRIM_BUDGET
) -> tuple[int, bool]:
    """Remove the index entries of jobs enqueued more than ``max_age_s`` seconds before
    ``now_ms``, at most ``budget`` of them; returns how many were removed and whether entries
    that old are left (then call it again)."""
    removed, unfinished = scripts_for(client).job_index_trim(
        args=[keys.JOB_INDEX_PREFIX, now_ms - max_age_s * 1000, budget, state_list(STATES)]
    )
    return int(removed), bool(unfinished)


def _encode_cursor(score: str, job_id: str) -> str:
    raw = f"{int(float(score))}:{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    found = _CURSOR.fullmatch(raw)
    if found is None:
        raise ValueError(
            f"invalid job cursor {cursor!r}: pass the next_cursor of a previous page, "
            "or no cursor for the first page"
        )
    return found.group(1), found.group(2)
