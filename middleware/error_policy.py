"""The error-policy middleware: the only retry owner of an evalq broker. It counts each attempt
before it runs and decides what its outcome is; ``middleware.outcomes`` writes it."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware import MiddlewareError, SkipMessage, TimeLimit

from config.policy import Policy, ResolvedPolicy
from middleware.core.attempts import (
    Attempt,
    begin,
    expiry,
    refusal,
    spent,
)
from middleware.core.classify import Classification, Classifier, exception_chain, throttled_by
from middleware.core.decisions import Decision, decide
from middleware.core.retry_options import (
    MESSAGE_RETRY_OPTIONS,
    RETRY_OPTIONS,
    InvalidRetryOption,
    RetryOptions,
    expected_failure,
    requested_retry,
    second_opinion,
)
from middleware.decision_log import log_decision, log_refusal, quiet_dramatiq_failure_logs
from middleware.isolation import RunAlone
from middleware.outcomes import Outcomes
from middleware.sentry import SentryReporter
from middleware.state.dead_letters import DeadLetters
from middleware.state.job_states import attempt_record
from middleware.state.jobs import History, Started, now_ms
from middleware.state.settlement import (
    is_settled,
    mark_put_back,
    settle,
)
from middleware.worker_registry import worker_id

logger = logging.getLogger("evalq.error_policy")

#: Dramatiq's TimeLimit default, for actors that set none, in milliseconds.
DEFAULT_TIME_LIMIT_MS = 600_000
#: After its time limit plus this, an attempt still recorded as running is known to be dead.
RUNNING_GRACE_MS = 60_000


class ErrorPolicy(dramatiq.Middleware):
    """Classifies every exception a job raises and retries, dead-letters or drops it by policy.

    Attempts are counted in Redis when they start, so an attempt whose worker died counts too
    (category ``crashed``); a job whose attempts reached ``max_attempts`` is dead-lettered
    without running. A retry is re-enqueued with a delay and its counters in the message
    options; a dead letter is written to the DLQ in the same atomic step that acks the message.

    Parameters:
      policy(Policy): The loaded policy file.
      history(History): Job states and attempt timelines.
      dead_letters(DeadLetters): The dead-letter store.
      env(str): The deployment environment the policy resolves for.
      max_age_ms(Mapping[str, int]): Per queue, how old (since it was first enqueued, in
        milliseconds) a job may be and still run; older ones are dead-lettered as ``expired``.
        The ``max_age`` message or actor option overrides it.
      sentry(SentryReporter | None): Reports ``unknown`` failures and categories whose
        policy says ``report = true`` (once per job and root cause); None: Sentry is off.
      rand(Callable[[], float]): Source of jitter in [0, 1).
      isolate_crashed(bool): Run a job that was in flight when its worker died alone in its
        process (``middleware.isolation``), so that only a job that kills workers spends
        ``crashed`` budget (default True).
    """

    def __init__(
        self,
        *,
        policy: Policy,
        history: History,
        dead_letters: DeadLetters,
        env: str,
        max_age_ms: Mapping[str, int] | None = None,
        sentry: SentryReporter | None = None,
        rand: Callable[[], float] = random.random,
        isolate_crashed: bool = True,
    ) -> None:
        self.policy = policy
        self.classifier = Classifier(policy)
        self.history = history
        self.dead_letters = dead_letters
        self.env = env
        self.max_age_ms = dict(max_age_ms or {})
        self.sentry = sentry
        self.rand = rand
        self.outcomes = Outcomes(history=history, dead_letters=dead_letters, rand=rand)
        self.isolation = RunAlone() if isolate_crashed else None
        self._actor_retry_options: dict[str, RetryOptions] = {}

    @property
    def actor_options(self) -> set[str]:
        return {"max_attempts", "max_age", *RETRY_OPTIONS}

    # --- hooks -------------------------------------------------------------------------------

    def before_declare_actor(self, broker: Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        # A MiddlewareError is the one kind Dramatiq lets out of a hook: the decorator fails.
        try:
            RetryOptions.read({}, actor.options, where=f"actor {actor.actor_name}")
        except InvalidRetryOption as error:
            raise InvalidActorOptions(str(error)) from None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Before the first job: Dramatiq 2.2 starts worker threads before after_worker_boot.
        quiet_dramatiq_failure_logs()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            self._before(broker, message)
        except SkipMessage:
            raise
        except Exception:
            # Dramatiq logs a hook's exception and runs the job anyway; a job we could not
            # count must not run uncounted. Nack it: it stays in the broker's dead set.
            logger.critical("job %s: could not start its attempt; nacking it",
                            message.message_id, exc_info=True)  # fmt: skip
            message.fail()
            raise SkipMessage("the error policy could not start the attempt") from None
        except BaseException as interrupt:
            if getattr(message, "_evalq_attempt", None) is not None:
                raise  # counted: the attempt ends, and is recorded, as any interrupted one
            # An interrupt (the job's time limit, the worker's shutdown) landed while the
            # attempt was being counted, typically while that waited for Redis: the actor never
            # ran. Dramatiq would ack the message and the job would be lost; it goes back on
            # its queue instead (if its start did reach Redis, it counts as a lost attempt).
            logger.warning("job %s: interrupted (%s) before it ran, while its attempt was being "
                           "counted; putting it back on queue %s", message.message_id,
                           type(interrupt).__name__, message.queue_name)  # fmt: skip
            mark_put_back(message)
            raise SkipMessage("interrupted before it ran") from None

    def _before(self, broker: Broker, message: MessageProxy) -> None:
        job_id, queue, actor = message.message_id, message.queue_name, message.actor_name
        max_age = _option(broker, message, "max_age") or self.max_age_ms.get(queue)
        expired = expiry(now_ms() - int(message.message_timestamp), max_age)
        if expired is not None:
            self._refuse(broker, message, "expired", expired)
        time_limit = int(_option(broker, message, "time_limit") or DEFAULT_TIME_LIMIT_MS)
        running_until = now_ms() + time_limit + RUNNING_GRACE_MS

        def start() -> Started:
            return self.history.start_attempt(
                job_id, queue=queue, actor=actor, running_until=running_until,
                enqueued_at=message.message_timestamp, worker=worker_id(),
                redis_message_id=message.options.get("redis_message_id", ""),
            )  # fmt: skip

        self._enter(message, alone=False)
        started = settle(message, start)
        n = started.n
        if started.aborted:
            self._refuse(broker, message, "aborted", "aborted by an operator before it ran")
        attempt = begin(n, message.options, started_at=now_ms())
        if attempt.lost:
            # The job's last start is the attempt just before this one: its worker died.
            lost = [
                attempt_record(
                    k, started_at=started.previous_started_at if k == n - 1 else None,
                    outcome="crashed", category="crashed",
                    worker=started.previous_worker if k == n - 1 else None,
                )
                for k in attempt.lost
            ]  # fmt: skip
            settle(message, lambda: self.history.record_lost_attempts(job_id, lost))
            logger.warning(
                "job %s: %d attempt(s) started but never finished (worker died); now attempt %d",
                job_id, len(attempt.lost), n,
            )  # fmt: skip
        try:
            options = self._retry_options(broker, message)
        except InvalidRetryOption as error:
            self._refuse(broker, message, "invalid_payload", str(error))
        message._evalq_retry_options = options  # type: ignore[attr-defined]
        refused = refusal(
            attempt,
            max_attempts=self._max_attempts(broker, message),
            crashed=options.apply(
                self.policy.resolve("crashed", actor=actor, queue=queue, env=self.env)
            ),
        )
        if refused is not None:
            self._refuse(broker, message, "crashed", refused)
        if attempt.lost and self.isolation is not None:
            n, aborted = self._start_alone(broker, message, start)
            if aborted:
                self._refuse(broker, message, "aborted", "aborted by an operator before it ran")
            attempt = begin(n, message.options, started_at=now_ms())
        message._evalq_attempt = attempt  # type: ignore[attr-defined]

    def _start_alone(
        self, broker: Broker, message: MessageProxy, start: Callable[[], Started]
    ) -> tuple[int, bool]:
        """Count the attempt of a job that was in flight when its worker died again, once it
        runs alone in this process (see ``middleware.isolation``); its time limit starts then."""
        settle(message, lambda: self.history.uncount_attempt(message.message_id))
        self._leave(message)
        logger.warning("job %s was running when its worker died: it runs alone in this process "
                       "once the jobs running here have finished", message.message_id)  # fmt: skip
        self._enter(message, alone=True)
        for time_limit in _time_limits(broker):
            time_limit.before_process_message(broker, message)  # type: ignore[no-untyped-call]
        started: Started = settle(message, start)
        return started.n, started.aborted

    def _retry_options(self, broker: Broker, message: MessageProxy) -> RetryOptions:
        """The retry options in force for ``message``: its own, else its actor's. An actor's
        are read once (they were checked when it was declared); a message's only when it
        carries any."""
        actor = broker.actors.get(message.actor_name)
        actor_options = actor.options if actor is not None else {}
        if MESSAGE_RETRY_OPTIONS.isdisjoint(message.options):
            known = self._actor_retry_options.get(message.actor_name)
            if known is None:
                where = f"actor {message.actor_name}"
                known = RetryOptions.read({}, actor_options, where=where)
                self._actor_retry_options[message.actor_name] = known
            return known
        where = f"job {message.message_id} ({message.actor_name})"
        return RetryOptions.read(message.options, actor_options, where=where)

    def _enter(self, message: MessageProxy, *, alone: bool) -> None:
        if self.isolation is None:
            return
        if alone:
            self.isolation.enter_alone()
        else:
            self.isolation.share()
        message._evalq_alone = alone  # type: ignore[attr-defined]

    def _leave(self, message: MessageProxy) -> None:
        alone = getattr(message, "_evalq_alone", None)
        if self.isolation is None or alone is None:
            return
        del message._evalq_alone
        if alone:
            self.isolation.leave_alone()
        else:
            self.isolation.unshare()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._leave(message)
        _disarm_time_limits(broker, message)
        attempt: Attempt | None = getattr(message, "_evalq_attempt", None)
        if attempt is not None and not is_settled(message):
            # Another middleware skipped a job whose attempt had started: Dramatiq acks it
            # without an outcome. End it visibly, with the ack, as dropped.
            self.outcomes.skipped(broker, message, attempt)

    def after_ack(self, broker: Broker, message: MessageProxy) -> None:
        # A hook that raised past this middleware's after hook would keep the isolation gate.
        self._leave(message)

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        self._leave(message)

    def release(self, message: MessageProxy) -> None:
        """Let go of what ``message``'s attempt holds in this process (its place at the
        isolation gate) when its worker thread died before the attempt ended."""
        self._leave(message)

    def _refuse(
        self, broker: Broker, message: MessageProxy, category: str, reason: str
    ) -> NoReturn:
        """Dead-letter ``message`` without running it, and skip it."""
        log_refusal(message, reason)
        attempt = Attempt(n=0, budget_n=0, started_at=now_ms(), crashes=0)
        decision = Decision("dead_letter", category, None, reason)
        self.outcomes.dead_letter(broker, message, None, decision, None, attempt, ran=False)
        raise SkipMessage(reason)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._leave(message)
        _disarm_time_limits(broker, message)
        try:
            self._after(broker, message, exception)
        except Exception:
            # Dramatiq would log this and ack the message: a job would leave the broker with
            # neither its retry nor its dead letter. Nack it instead: it stays in the broker's
            # dead set, counted by `evalq status` as nacked.
            logger.critical("job %s: could not settle its attempt; nacking it",
                            message.message_id, exc_info=True)  # fmt: skip
            message.fail()

    def _after(
        self, broker: Broker, message: MessageProxy, exception: BaseException | None
    ) -> None:
        attempt: Attempt | None = getattr(message, "_evalq_attempt", None)
        if attempt is None:
            return
        if exception is None:
            self.outcomes.succeed(broker, message, attempt)
            self.history.count_outcome("succeeded", None, at_ms=now_ms())
            return
        throttled = throttled_by(exception)
        if throttled is not None:
            self.outcomes.throttle(broker, message, throttled, attempt)
            return
        options: RetryOptions = getattr(message, "_evalq_retry_options", RetryOptions())
        classification, resolved, decision = self._decide(
            broker, message, exception, attempt, options
        )
        log_decision(message, attempt.n, classification, decision)
        self.history.count_outcome("failed", decision.category, at_ms=now_ms())
        event_id = None
        if self.sentry is not None and (decision.category == "unknown" or resolved.report):
            # Reported before settling, so that the event id is written with the attempt.
            event_id = self._report(self.sentry, message, exception, classification, decision,
                                    attempt)  # fmt: skip
        outcomes, args = self.outcomes, (broker, message, classification, decision)
        if decision.action == "retry":
            outcomes.retry(*args, attempt, event_id=event_id)
        elif decision.action == "drop":
            outcomes.drop(*args, attempt, event_id=event_id)
        else:
            outcomes.dead_letter(*args, exception, attempt, event_id=event_id)

    def _decide(
        self,
        broker: Broker,
        message: MessageProxy,
        exception: BaseException,
        attempt: Attempt,
        options: RetryOptions,
    ) -> tuple[Classification, ResolvedPolicy, Decision]:
        """Classify ``exception`` and decide, with the message's and actor's retry options."""
        classification = self.classifier.classify(exception, now=time.time())
        if isinstance(exception, dramatiq.Retry):
            classification = requested_retry(classification, delay_ms=exception.delay)
        elif options.thrown(exception_chain(exception)):
            classification = expected_failure(classification)
        resolved = options.apply(
            self.policy.resolve(
                classification.category,
                actor=message.actor_name,
                queue=message.queue_name,
                env=self.env,
            )
        )
        retries = spent(message.options, attempt)
        decision = decide(
            classification.category,
            resolved,
            attempt=attempt.budget_n,
            max_attempts=self._max_attempts(broker, message),
            retries=retries,
            retry_after_s=classification.retry_after_s,
            forced_action=classification.forced_action,
            rand=self.rand(),
        )
        decision, broken = second_opinion(
            options, decision, retries=sum(retries.values()), exception=exception
        )
        if broken is not None:
            logger.error("job %s: retry_when of %s raised; the policy's decision stands",
                         message.message_id, message.actor_name,
                         exc_info=(type(broken), broken, broken.__traceback__))  # fmt: skip
        return classification, resolved, decision

    def _report(
        self,
        sentry: SentryReporter,
        message: MessageProxy,
        exception: BaseException,
        classification: Classification,
        decision: Decision,
        attempt: Attempt,
    ) -> str | None:
        """Report the failure; the Sentry event id, when an event was sent."""
        return sentry.report(
            exception=exception,
            root_cause=classification.root_cause,
            job_id=message.message_id,
            actor=message.actor_name,
            queue=message.queue_name,
            category=decision.category,
            rule=classification.rule,
            attempt=attempt.n,
            decision=decision.action,
            env=self.env,
            payload=message._message.asdict(),
        )

    # --- helpers -------------------------------------------------------------------------------

    def _max_attempts(self, broker: Broker, message: MessageProxy) -> int:
        option = _option(broker, message, "max_attempts")
        if option is not None:
            return int(option)
        resolved = self.policy.resolve(
            "unknown", actor=message.actor_name, queue=message.queue_name, env=self.env
        )
        return resolved.max_attempts


class InvalidActorOptions(MiddlewareError):
    """An actor declares a retry option evalq cannot use; raised by its decorator."""


def _disarm_time_limits(broker: Broker, message: MessageProxy) -> None:
    """End the time limit of ``message``'s attempt, whose actor is done: Dramatiq's TimeLimit
    ends it only after this middleware's after hook, and an interrupt landing while the outcome
    is written (a finish waiting for Redis) would be taken for the attempt's own failure, and
    run a job that succeeded again."""
    for time_limit in _time_limits(broker):
        time_limit.after_process_message(broker, message)  # type: ignore[no-untyped-call]


def _time_limits(broker: Broker) -> list[TimeLimit]:
    """The broker's ``TimeLimit`` middleware, whose deadlines this middleware starts and ends
    where Dramatiq's order would not."""
    return [middleware for middleware in broker.middleware if isinstance(middleware, TimeLimit)]


def _option(broker: Broker, message: MessageProxy, name: str) -> Any:
    """A message option, else the actor's option of that name, else None."""
    value = message.options.get(name)
    if value is None:
        actor = broker.actors.get(message.actor_name)
        value = actor.options.get(name) if actor is not None else None
    return value
