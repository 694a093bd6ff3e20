"""Every Redis key evalq writes, in one place, so that atomic scripts in different modules agree."""

from __future__ import annotations

#: Dramatiq's own key namespace (queues are ``dramatiq:<queue>``, their payloads
#: ``dramatiq:<queue>.msgs``, delayed messages ``dramatiq:<queue>.DQ``).
DRAMATIQ_NAMESPACE = "dramatiq"

#: Per-job state hash (state, queue, actor, timestamps, last error).
JOB_PREFIX = "evalq:job:"
#: Per-job attempt timeline hash: field ``<n>`` holds the JSON of attempt n.
ATTEMPTS_PREFIX = "evalq:attempts:"
#: Per-job attempt counter, incremented when an attempt starts.
ATTEMPT_COUNTER_PREFIX = "evalq:attempt-count:"
#: Dead-letter store namespace (records, indexes, counters).
DLQ_PREFIX = "evalq:dlq:"


def job_key(job_id: str) -> str:
    """The state hash of one job."""
    return f"{JOB_PREFIX}{job_id}"


def attempts_key(job_id: str) -> str:
    """The attempt timeline of one job."""
    return f"{ATTEMPTS_PREFIX}{job_id}"


def attempt_counter_key(job_id: str) -> str:
    """The attempt counter of one job."""
    return f"{ATTEMPT_COUNTER_PREFIX}{job_id}"


def queue_key(queue: str) -> str:
    """Dramatiq's list of ready message ids of ``queue``."""
    return f"{DRAMATIQ_NAMESPACE}:{queue}"


def queue_messages_key(queue: str) -> str:
    """Dramatiq's hash of message payloads of ``queue``, by Redis message id."""
    return f"{DRAMATIQ_NAMESPACE}:{queue}.msgs"


def nacked_key(queue: str) -> str:
    """Dramatiq's dead set of ``queue``: messages a worker nacked (sorted by time)."""
    return f"{DRAMATIQ_NAMESPACE}:{queue}.XQ"


def delay_queue_name(queue: str) -> str:
    """The name of ``queue``'s delay queue."""
    return f"{queue}.DQ"


def acks_key(broker_id: str, queue: str) -> str:
    """Dramatiq's set of message ids fetched (and not yet acked) by one broker from ``queue``."""
    return f"{DRAMATIQ_NAMESPACE}:__acks__.{broker_id}.{queue}"


def heartbeats_key() -> str:
    """Dramatiq's sorted set of worker (broker) ids by the time of their last heartbeat, in ms."""
    return f"{DRAMATIQ_NAMESPACE}:__heartbeats__"


# Job index (middleware/state/jobs.py: search_jobs). Sorted sets of job ids, scored by when the job
# was enqueued (ms since the epoch), kept in step with each job's record by the scripts that
# change it (lua/shared/job_index.lua) and trimmed by age.

#: Prefix of every index key: ``<prefix>all``, ``<prefix><field>:<value>`` for the fields in
#: ``JOB_INDEX_FIELDS`` and ``<prefix>queue-state:<queue>:<state>``; ``<prefix>names:<field>``
#: is the set of values indexed for a field (the trim walks them; nothing is scanned).
JOB_INDEX_PREFIX = "evalq:jobs:"
#: Index of every job.
JOB_INDEX_ALL = f"{JOB_INDEX_PREFIX}all"
#: The fields jobs are indexed by, one index per value; ``queue-state`` pairs two of them.
JOB_INDEX_FIELDS = ("queue", "actor", "state", "category")
#: Held (``SET NX EX``) by the process trimming the job index, so that one trims at a time.
JOB_INDEX_TRIM_LOCK = f"{JOB_INDEX_PREFIX}trimming"


def job_index_key(field: str, value: str) -> str:
    """The index of the jobs whose ``field`` (one of ``JOB_INDEX_FIELDS``) is ``value``."""
    return f"{JOB_INDEX_PREFIX}{field}:{value}"


def job_queue_state_index_key(queue: str, state: str) -> str:
    """The index of the jobs in ``state`` on ``queue`` (queue names cannot contain ``:``)."""
    return f"{JOB_INDEX_PREFIX}queue-state:{queue}:{state}"


# Dead-letter store (middleware/state/dead_letters.py). Record ids sort lexically by time; every
# index is a sorted set whose members are record ids, all with score 0, so lexical range queries
# page it.

#: One dead letter: a hash with the record's JSON and the fields its removal needs.
DLQ_RECORD_PREFIX = f"{DLQ_PREFIX}record:"
#: Index of every dead letter.
DLQ_INDEX_ALL = f"{DLQ_PREFIX}index:all"
#: Prefix of the per-queue index (followed by the queue name).
DLQ_INDEX_QUEUE_PREFIX = f"{DLQ_PREFIX}index:queue:"
#: Prefix of the per-category index (followed by the category).
DLQ_INDEX_CATEGORY_PREFIX = f"{DLQ_PREFIX}index:category:"
#: Prefix of the per-(queue, category) index (followed by ``<queue>:<category>``; queue names
#: cannot contain ``:``).
DLQ_INDEX_QUEUE_CATEGORY_PREFIX = f"{DLQ_PREFIX}index:queue-category:"
#: Hash: category -> number of dead letters.
DLQ_COUNT_BY_CATEGORY = f"{DLQ_PREFIX}count:category"
#: Hash: queue -> number of dead letters.
DLQ_COUNT_BY_QUEUE = f"{DLQ_PREFIX}count:queue"
#: Hash of retention counters: ``overflow`` (evicted by count), ``expired`` (evicted by age).
DLQ_COUNTERS = f"{DLQ_PREFIX}counters"


def dlq_record_key(record_id: str) -> str:
    """The hash holding one dead letter."""
    return f"{DLQ_RECORD_PREFIX}{record_id}"


def dlq_queue_index_key(queue: str) -> str:
    """The index of the dead letters of ``queue``."""
    return f"{DLQ_INDEX_QUEUE_PREFIX}{queue}"


def dlq_category_index_key(category: str) -> str:
    """The index of the dead letters of ``category``."""
    return f"{DLQ_INDEX_CATEGORY_PREFIX}{category}"


def dlq_queue_category_index_key(queue: str, category: str) -> str:
    """The index of the dead letters of ``category`` on ``queue``."""
    return f"{DLQ_INDEX_QUEUE_CATEGORY_PREFIX}{queue}:{category}"


def dlq_index_key(queue: str | None, category: str | None) -> str:
    """The index of the dead letters on ``queue`` in ``category`` (None: any)."""
    if queue is not None and category is not None:
        return dlq_queue_category_index_key(queue, category)
    if queue is not None:
        return dlq_queue_index_key(queue)
    if category is not None:
        return dlq_category_index_key(category)
    return DLQ_INDEX_ALL


# Sentry reporting (middleware/sentry.py).

#: Marks that one job's failure with one root cause (fingerprint digest) was sent to Sentry.
SENTRY_SENT_PREFIX = "evalq:sentry-sent:"


def sentry_sent_key(job_id: str, fingerprint_digest: str) -> str:
    """Set (``SET NX EX``) when a Sentry event for ``job_id`` with one fingerprint is sent."""
    return f"{SENTRY_SENT_PREFIX}{job_id}:{fingerprint_digest}"


#: Per-job abort request, set by ``evalq abort`` and read when an attempt starts.
ABORT_PREFIX = "evalq:abort:"
#: Channel on which abort requests are published to the workers running the job.
ABORT_CHANNEL = "evalq:aborts"
#: Counters operators watch (hash: ``<what>:<queue>`` -> count), e.g. ``throttled:default``.
METRICS_KEY = "evalq:metrics"


def abort_key(job_id: str) -> str:
    """The abort request of one job."""
    return f"{ABORT_PREFIX}{job_id}"


#: Provider rate limits (workers/rate_limits.py): ``evalq:limit:<provider>:concurrency`` counts
#: requests in flight; ``evalq:limit:<provider>:rpm@<epoch second>`` counts requests per second.
LIMIT_PREFIX = "evalq:limit:"


def limit_key(provider: str, limit: str) -> str:
    """The key of one rate limit (``concurrency`` or ``rpm``) of one provider."""
    return f"{LIMIT_PREFIX}{provider}:{limit}"


def text(value: bytes | str | int) -> str:
    """A Redis reply as text (replies are bytes: clients here do not decode responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


#: Attempt outcomes per minute (hash ``<outcome>:<category>`` -> count), for the dashboard's
#: chart; followed by the minute (ms since the epoch // 60,000). Kept two hours.
OUTCOMES_PER_MINUTE_PREFIX = "evalq:outcomes:"
#: Attempt outcomes since Redis was created (hash ``<outcome>:<category>`` -> count), for /metrics.
OUTCOMES_TOTAL_KEY = "evalq:outcomes-total"


def outcomes_minute_key(minute: int) -> str:
    """The outcome counts of one minute (``minute`` = ms since the epoch // 60,000)."""
    return f"{OUTCOMES_PER_MINUTE_PREFIX}{minute}"


# Dashboard (dashboard/): the record of bulk dead-letter actions.

#: List of bulk action ids, newest first (capped).
BULK_ACTIONS_KEY = "evalq:dashboard:bulk-actions"
#: Prefix of one bulk action's hash (who, when, filter, count, progress).
BULK_ACTION_PREFIX = "evalq:dashboard:bulk:"


def bulk_action_key(action_id: str) -> str:
    """The hash of one bulk dead-letter action."""
    return f"{BULK_ACTION_PREFIX}{action_id}"
