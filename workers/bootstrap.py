"""Build the Dramatiq broker evalq runs on, from Settings, and boot a worker process on it.

The middleware list is explicit: Dramatiq's own ``Retries`` is deliberately absent, because evalq's
error-policy middleware is the only retry owner (stacked retries multiply attempts).

Nothing here prints, exits or touches Sentry while a broker is built: problems are
``config.errors.ConfigurationError`` exceptions. Only a ``dramatiq workers`` process turns them
into ``evalq: <one line>`` and exit code 2 (``exit_worker``), at three moments of its start:

1. importing ``workers`` (settings, policy file, finding Redis): ``workers/__init__.py`` calls
   ``boot_worker_process`` when, and only when, Dramatiq's ``worker_process`` is importing it;
2. ``after_process_boot`` (``WorkerBoot``): Sentry is set up, through the host's client if the
   process already has one;
3. ``before_worker_boot`` (``WorkerBoot``), once every actor module is imported: time limits are
   applied and checked (unknown actor names in ``EVALQ_TIME_LIMITS``, a provider timeout that
   would outlive its job).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from config.errors import EXIT_CODE, ConfigurationError
from config.policy import Policy, load_policy
from config.settings import Settings, SettingsError
from middleware.abort import AbortWatcher
from middleware.delay_queue import KeepDelayed
from middleware.error_policy import ErrorPolicy
from middleware.heartbeat import Heartbeat
from middleware.job_history import JobHistory
from middleware.redelivery import Redelivery
from middleware.sentry import init_sentry
from middleware.state.broker import EvalqRedisBroker
from middleware.state.connections import redis_pool
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from middleware.state.keys import DRAMATIQ_NAMESPACE
from middleware.supervision import ThreadSupervisor
from middleware.worker_registry import WorkerRegistry
from workers.lanes import max_ages_ms
from workers.local_redis import NoRedisError, find_redis_url, missing_redis, unresolved_pool
from workers.runtime import LLM_ACTORS, Runtime


@dataclass(frozen=True)
class Stack:
    """What one evalq process runs on: its settings, its policy and its broker."""

    settings: Settings
    policy: Policy
    broker: RedisBroker


def exit_worker(error: ConfigurationError) -> NoReturn:
    """Stop a ``dramatiq workers`` process: ``evalq: <line>`` on stderr, exit code 2."""
    print(f"evalq: {error.describe()}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CODE)


class WorkerBoot(Middleware):
    """Sets up what only a worker process needs, when it boots (never on import).

    Parameters:
      settings: The process's settings.
      error_policy: The middleware that reports through the Sentry reporter made here.
    """

    def __init__(self, settings: Settings, error_policy: ErrorPolicy) -> None:
        self.settings = settings
        self.error_policy = error_policy

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        try:
            self.error_policy.sentry = init_sentry(self.settings, broker.client)  # type: ignore[attr-defined]
        except ConfigurationError as error:
            exit_worker(error)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        try:
            apply_time_limits(broker, self.settings)
        except ConfigurationError as error:
            exit_worker(error)


def apply_time_limits(broker: dramatiq.Broker, settings: Settings) -> None:
    """Give every actor its time limit: ``EVALQ_TIME_LIMITS``, else its own ``time_limit``
    option, else ``EVALQ_TIME_LIMIT_S``. Raises ``SettingsError`` for an unknown actor name and
    for a provider timeout that would outlive a job that calls the provider."""
    known = sorted(broker.actors)
    unknown = sorted(set(settings.time_limits) - set(known))
    if unknown:
        raise SettingsError(
            f"EVALQ_TIME_LIMITS: unknown actor(s) {', '.join(unknown)}; "
            f"the actors of this process are: {', '.join(known)}"
        )
    for name, actor in broker.actors.items():
        if name in settings.time_limits or "time_limit" not in actor.options:
            actor.options["time_limit"] = int(settings.time_limit_for(name) * 1000)
    problems = timeout_problems(settings, broker)
    if problems:
        raise SettingsError("; ".join(problems))


def timeout_problems(settings: Settings, broker: dramatiq.Broker) -> list[str]:
    """Why these settings would let a provider request outlive the job that makes it."""
    problems = []
    for name in LLM_ACTORS:
        actor = broker.actors.get(name)
        if actor is None:
            continue
        limit = actor.options.get("time_limit", settings.time_limit_for(name) * 1000) / 1000
        if settings.provider_timeout_s >= limit:
            problems.append(
                f"EVALQ_PROVIDER_TIMEOUT_S ({settings.provider_timeout_s:g} s) must be shorter "
                f"than the time limit of {name} ({limit:g} s; EVALQ_TIME_LIMIT_S / "
                "EVALQ_TIME_LIMITS)"
            )
    return problems


#: What a message may hold beside its request (ids, actor and queue names, evalq's options), in
#: bytes: a worker refuses a message over ``EVALQ_MAX_REQUEST_BYTES`` plus this.
MESSAGE_ENVELOPE_BYTES = 64 * 1024


def build_dead_letters(settings: Settings, client: redis.Redis) -> DeadLetters:
    """The dead-letter store, with the retention the settings ask for."""
    return DeadLetters(
        client, max_records=settings.dlq_max_records, max_age_s=settings.dlq_max_age_s
    )


def build_middleware(
    settings: Settings,
    client: redis.Redis,
    policy: Policy,
    dead_letters: DeadLetters | None = None,
) -> list[Middleware]:
    """The middleware stack, in order. ``Retries`` is not in it, on purpose, and neither is
    ``AgeLimit`` (the error policy expires old jobs into the DLQ). ``ErrorPolicy`` comes after
    everything that may refuse a job, so that it counts an attempt only once everything else let
    it start; ``AbortWatcher`` comes after it, so that it interrupts a thread only while the actor
    runs (its before hook runs last, its after hook first). ``ThreadSupervisor`` comes first:
    it notes a thread's message before any other hook runs, and its ack hooks run last."""
    history = History(
        client, ttl_s=settings.job_ttl_s, payload_bytes=settings.history_payload_bytes
    )
    dead_letters = dead_letters or build_dead_letters(settings, client)
    error_policy = ErrorPolicy(
        policy=policy,
        history=history,
        dead_letters=dead_letters,
        env=settings.env,
        max_age_ms=max_ages_ms(settings),
    )
    return [
        ThreadSupervisor(release=error_policy.release),
        WorkerBoot(settings, error_policy),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        WorkerRegistry(),
        Redelivery(
            heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
            interval_ms=settings.redelivery_interval_ms,
        ),
        KeepDelayed(),
        JobHistory(history),
        error_policy,
        AbortWatcher(client),
        *_liveness(settings),
    ]


def _liveness(settings: Settings) -> list[Middleware]:
    """The heartbeat middleware when a liveness file is configured (Kubernetes), else none."""
    if settings.heartbeat_file is None:
        return []
    return [Heartbeat(settings.heartbeat_file, interval_s=settings.heartbeat_interval_s)]


def build_broker(
    settings: Settings, *, policy: Policy | None = None, url: str | None = None
) -> EvalqRedisBroker:
    """A Redis broker with evalq's middleware on ``url`` (default: ``EVALQ_REDIS_URL``, else a
    running ``evalq up``; with neither, every Redis command raises ``NoRedisError``), whose
    consumers dead-letter malformed messages (``middleware.state.broker``). Its ``runtime``
    attribute holds the services evalq's actors use. Raises ``PolicyError`` for a bad policy
    file; never connects."""
    if url is None:
        try:
            url = find_redis_url(settings)
        except NoRedisError as missing:
            pool = unresolved_pool(missing)
        else:
            pool = redis_pool(url, settings)
    else:
        pool = redis_pool(url, settings)
    client = redis.Redis(connection_pool=pool)
    dead_letters = build_dead_letters(settings, client)
    middleware = build_middleware(
        settings, client, policy or load_policy(settings.policy_file), dead_letters
    )
    broker = EvalqRedisBroker(
        dead_letters=dead_letters,
        max_message_bytes=settings.max_request_bytes + MESSAGE_ENVELOPE_BYTES,
        job_ttl_s=settings.job_ttl_s,
        replica_wait_ms=settings.redis_replica_wait_ms,
        client=client,
        middleware=middleware,
        namespace=DRAMATIQ_NAMESPACE,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
    )
    broker.runtime = Runtime(settings, client)  # type: ignore[attr-defined]
    return broker


def build_stack(settings: Settings) -> Stack:
    """Settings, policy and broker of a process, the broker set as Dramatiq's global one (so
    that an application's ``@dramatiq.actor`` binds to it). Raises ``ConfigurationError``s;
    prints nothing."""
    policy = load_policy(settings.policy_file)
    broker = build_broker(settings, policy=policy)
    dramatiq.set_broker(broker)
    return Stack(settings, policy, broker)


def require_redis(broker: RedisBroker) -> None:
    """Raise ``NoRedisError`` unless ``broker`` knows which Redis to use (a worker must)."""
    missing = missing_redis(broker.client.connection_pool)
    if missing is not None:
        raise missing


def imported_by_dramatiq_worker() -> bool:
    """Whether Dramatiq's ``worker_process`` (``dramatiq workers``) is what imports us now."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "worker_process" and (
            frame.f_globals.get("__name__") == "dramatiq.cli"
        ):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def repoint(broker: RedisBroker, url: str, settings: Settings | None = None) -> None:
    """Point an already-built broker (and everything sharing its client) at ``url``.

    ``evalq`` commands find or start their Redis after the broker was built; the broker, its
    Lua scripts, the result store, history, the dead-letter store and the abort watcher all hold
    the broker's one client, so giving that client a new pool before first use moves all of them
    at once. The pool comes from the one factory (``redis_pool``): ``url`` may name a Sentinel
    set, whose pool is of another class than a single node's. ``settings`` give the sentinels'
    password and TLS (default: the broker's own settings).
    """
    if settings is None:
        runtime = getattr(broker, "runtime", None)
        settings = runtime.settings if runtime is not None else None
    old = broker.client.connection_pool
    broker.client.connection_pool = redis_pool(url, settings)
    old.disconnect()
