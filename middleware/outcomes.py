"""Outcomes: each attempt's outcome, written by the atomic step that settles its delivery.

A success or a drop acks the delivery and writes the job's final state, its last attempt and
the copy of its payload in one script (``lua/finish.lua``); a retry or a throttle puts the job
on its delay queue with its counters (``lua/retry.lua``); a dead letter goes into the DLQ as it
is acked (``DeadLetters.add``). Each is sent through the process's group commit, sharing round
trips with what its other threads send at that moment, and each is as durable as the ack: no
job leaves the broker without its outcome, and none is acked twice. Each is posted: the worker
thread does not wait for it, and the process's poster thread sends it within a few ms
(``GroupCommit.post``).
``ErrorPolicy`` decides; this module only writes.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import redis
from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware import SkipMessage
from dramatiq.threading import Interrupt
from redis.commands.core import Script

from middleware.core.attempts import (
    OPTION_ATTEMPTS,
    OPTION_FIRST_FAILURE,
    OPTION_RETRIES,
    OPTION_THROTTLED,
    Attempt,
    spent,
    throttle_delay_ms,
)
from middleware.core.classify import Classification
from middleware.core.decisions import Decision
from middleware.core.errors import Throttled
from middleware.core.failure_text import error_message, type_name
from middleware.state import keys
from middleware.state.dead_letter_record import dead_letter_record
from middleware.state.dead_letters import AckTarget, DeadLetters
from middleware.state.job_states import DROPPED, QUEUED, RETRYING, SUCCEEDED, attempt_record
from middleware.state.jobs import History, now_ms
from middleware.state.payload_copy import FIELD as PAYLOAD_FIELD
from middleware.state.payload_copy import payload_copy
from middleware.state.posted_calls import Landed
from middleware.state.scripts import scripts_for
from middleware.state.settlement import (
    begin_landing,
    delayed_retry,
    end_landing,
    finish_call,
    mark_settled,
    retry_call,
    settle,
)
from middleware.worker_registry import worker_id

# Logged as the error policy, whose decisions these are: the logger name operators filter on.
logger = logging.getLogger("evalq.error_policy")


class Outcomes:
    """Writes the outcome of an attempt with the settle of its delivery.

    Parameters:
      history(History): Job states and attempt timelines.
      dead_letters(DeadLetters): The dead-letter store.
      rand(Callable[[], float]): Source of jitter in [0, 1), for a throttle's delay.
    """

    def __init__(
        self,
        *,
        history: History,
        dead_letters: DeadLetters,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.history = history
        self.dead_letters = dead_letters
        self.rand = rand
        # Registered on the client the group commit sends on.
        self._scripts = scripts_for(history.client)

    def succeed(self, broker: Broker, message: MessageProxy, attempt: Attempt) -> None:
        """Ack the delivery of a job whose attempt succeeded, recording it ``succeeded``."""
        finished = now_ms()
        entry = attempt_record(attempt.n, started_at=attempt.started_at, finished_at=finished,
                               outcome="succeeded", worker=worker_id())  # fmt: skip
        self._finish(broker, message, entry, {"state": SUCCEEDED, "finished_at": finished})

    def skipped(self, broker: Broker, message: MessageProxy, attempt: Attempt) -> None:
        """End, as dropped, a job that another middleware skipped after its attempt started
        (Dramatiq would ack it without an outcome)."""
        finished = now_ms()
        reason = "skipped by a middleware before it ran"
        logger.warning("job %s: %s; it ends dropped", message.message_id, reason)
        entry = attempt_record(attempt.n, started_at=attempt.started_at, finished_at=finished,
                               outcome="dropped", error_type=type_name(SkipMessage()),
                               error_message=reason, worker=worker_id())  # fmt: skip
        self._finish(broker, message, entry, {"state": DROPPED, "finished_at": finished})

    def _finish(
        self,
        broker: Broker,
        message: MessageProxy,
        entry: dict[str, Any],
        fields: dict[str, Any],
    ) -> None:
        """Ack the delivery and write the job's final ``fields`` and last attempt ``entry`` in
        one atomic step: the outcome is as durable as the ack. The record keeps a copy of the
        payload, whose message leaves Redis with the ack."""
        limit = self.history.payload_bytes
        # Nothing to build when no copy is kept (EVALQ_HISTORY_PAYLOAD_BYTES=0).
        kept = payload_copy(message._message.asdict(), limit_bytes=limit) if limit > 0 else None
        if kept is not None:
            fields = {**fields, PAYLOAD_FIELD: kept}
        script_keys, args = finish_call(
            message, broker_id=broker.broker_id,  # type: ignore[attr-defined]
            entry=entry, fields=fields, job_ttl_s=self.history.ttl_s,
        )  # fmt: skip
        state = fields["state"]

        def finished(outcome: Any) -> None:
            if outcome == 0:
                logger.warning("job %s: no longer held by this worker and ended already; "
                               "outcome %s not recorded", message.message_id, state)  # fmt: skip
            elif outcome == 2:
                logger.warning("job %s: no longer held by this worker (redelivered meanwhile); "
                               "outcome %s recorded all the same", message.message_id,
                               state)  # fmt: skip

        self._settle(broker, message, self._scripts.finish, script_keys, args, landed=finished)

    def retry(
        self,
        broker: Broker,
        message: MessageProxy,
        classification: Classification,
        decision: Decision,
        attempt: Attempt,
        *,
        event_id: str | None = None,
    ) -> None:
        """Put the job on its delay queue for the decision's backoff, as ``retrying``, with
        its attempt and retry counters carried in its options."""
        assert decision.delay_ms is not None
        finished = now_ms()
        self._reschedule(
            broker,
            message,
            eta=finished + decision.delay_ms,
            carried={
                OPTION_ATTEMPTS: attempt.n,
                OPTION_RETRIES: decision.retries,
                OPTION_FIRST_FAILURE: message.options.get(OPTION_FIRST_FAILURE) or finished,
            },
            entry=failed_attempt(
                attempt, "retried", classification, decision, finished=finished, event_id=event_id
            ),
            state=RETRYING,
        )

    def throttle(
        self, broker: Broker, message: MessageProxy, throttled: Throttled, attempt: Attempt
    ) -> None:
        """Run the job again later without spending any budget: our own limit was full."""
        finished = now_ms()
        times = int(message.options.get(OPTION_THROTTLED, 0))
        delay_ms = throttle_delay_ms(times, throttled.retry_after_s, rand=self.rand())
        self._reschedule(
            broker,
            message,
            eta=finished + delay_ms,
            carried={
                OPTION_ATTEMPTS: attempt.n,
                # Crashes found when this attempt started must survive the re-delay.
                OPTION_RETRIES: spent(message.options, attempt),
                OPTION_THROTTLED: times + 1,
            },
            entry=attempt_record(
                attempt.n,
                started_at=attempt.started_at,
                finished_at=finished,
                outcome="throttled",
                category="throttled",
                error_type=type_name(throttled),
                error_message=str(throttled),
                worker=worker_id(),
            ),
            state=QUEUED,
        )
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        with contextlib.suppress(redis.RedisError):
            client.hincrby(keys.METRICS_KEY, f"throttled:{message.queue_name}", 1)
        logger.debug("job %s attempt %d: %s; again in %d ms", message.message_id, attempt.n,
                     throttled, delay_ms)  # fmt: skip

    def _reschedule(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        eta: int,
        carried: dict[str, Any],
        entry: dict[str, Any],
        state: str,
    ) -> None:
        """Ack this delivery and put the job on its delay queue for ``eta``, atomically, with
        ``carried`` options, the attempt ``entry`` in its timeline and ``state``."""
        redis_message_id, data = delayed_retry(message, eta=eta, carried=carried)
        script_keys, args = retry_call(
            message, broker_id=broker.broker_id,  # type: ignore[attr-defined]
            redis_message_id=redis_message_id, data=data, entry=entry, eta=eta,
            job_ttl_s=self.history.ttl_s, state=state,
        )  # fmt: skip
        def rescheduled(outcome: Any) -> None:
            if outcome == 0:
                logger.warning("job %s: no longer held by this worker; not rescheduled",
                               message.message_id)  # fmt: skip

        self._settle(broker, message, self._scripts.retry, script_keys, args, landed=rescheduled)

    def _settle(
        self,
        broker: Broker,
        message: MessageProxy,
        script: Script,
        script_keys: list[str],
        args: list[Any],
        *,
        landed: Callable[[Any], None],
    ) -> None:
        """Post a script that settles ``message``'s delivery (see ``_post``); ``landed``
        gets the script's result."""
        commits = self.history.commits

        def post(done: Landed) -> None:
            commits.post(script, keys=script_keys, args=args, done=done)

        self._post(broker, message, landed, post)

    def _post(
        self,
        broker: Broker,
        message: MessageProxy,
        landed: Callable[[Any], None],
        post: Callable[[Landed], None],
    ) -> None:
        """Note ``message``'s delivery settled, and ``post`` the call that settles it, given
        its ``done``. A late interrupt (a time limit that fired as the actor returned, a
        shutdown) landing anywhere in this must not leave the delivery marked settled with no
        call posted, held for ever: every step can run again (posting again with the same
        ``done`` posts once), the steps are repeated until they are all done, and the
        interrupt is raised after."""
        done: Landed | None = None
        interrupt: Interrupt | None = None
        while True:
            try:
                done = done or self._landing(broker, message, landed)
                post(done)
                break
            except Interrupt as error:
                interrupt = interrupt or error
        if interrupt is not None:
            raise interrupt

    def _landing(
        self, broker: Broker, message: MessageProxy, landed: Callable[[Any], None]
    ) -> Landed:
        """Note ``message``'s delivery settled by a posted call, and what that call's ``done``
        is: the poster thread sends the call within a few ms, sends it again while Redis is
        away, and no worker thread waits for it. ``landed`` gets its result.

        Until it lands, the process still holds the delivery (``held_deliveries``), so the
        redelivery pass never takes it for an orphan; if the process dies first, the delivery
        is redelivered and the attempt counts as crashed, as when it dies mid-job. A script
        error is logged, and the delivery let go of: the redelivery pass puts it back."""
        held: set[str] | None = getattr(broker, "held_deliveries", None)
        delivery = message.options["redis_message_id"]

        def done(result: Any, error: BaseException | None) -> None:
            end_landing(message)
            if held is not None:
                held.discard(delivery)
            if error is None:
                landed(result)
            else:
                logger.critical("job %s: its outcome could not be written (%s); its delivery "
                                "goes back to its queue", message.message_id, error)  # fmt: skip

        mark_settled(message)
        begin_landing(message)
        return done

    def drop(
        self,
        broker: Broker,
        message: MessageProxy,
        classification: Classification,
        decision: Decision,
        attempt: Attempt,
        *,
        event_id: str | None = None,
    ) -> None:
        """Ack the delivery of a job whose failure the policy drops, recording it ``dropped``."""
        finished = now_ms()
        entry = failed_attempt(
            attempt, "dropped", classification, decision, finished=finished, event_id=event_id
        )
        fields = {"state": DROPPED, "finished_at": finished, "category": decision.category}
        self._finish(broker, message, entry, fields)

    def dead_letter(
        self,
        broker: Broker,
        message: MessageProxy,
        classification: Classification | None,
        decision: Decision,
        exception: BaseException | None,
        attempt: Attempt,
        *,
        ran: bool = True,
        event_id: str | None = None,
    ) -> None:
        """Move the job into the DLQ with its whole timeline as its delivery is acked;
        ``ran=False`` for a job refused before it ran (its attempt is not in the timeline)."""
        finished = now_ms()
        job_id = message.message_id
        outcome = "aborted" if decision.category == "aborted" else "dead_lettered"
        if ran and attempt.n == 1:
            timeline = []  # a first attempt has nothing before it: no flush, no read
        else:
            timeline = settle(message, lambda: self._timeline(job_id, exclude=attempt.n))
        if ran:
            timeline.append(
                failed_attempt(attempt, outcome, classification, decision, finished=finished,
                               event_id=event_id)
            )  # fmt: skip
        record = dead_letter_record(
            message, classification=classification, decision=decision, exception=exception,
            timeline=timeline, dead_at=finished, sentry_event_id=event_id,
        )  # fmt: skip
        ack = AckTarget.for_delivery(
            broker_id=broker.broker_id,  # type: ignore[attr-defined]
            queue=message.queue_name,
            redis_message_id=message.options["redis_message_id"],
        )
        def written(added: Any) -> None:
            if not added:
                logger.warning("job %s: no longer held by this worker; dead letter not written",
                               job_id)  # fmt: skip
            elif ran:
                self.history.record_attempt(job_id, timeline[-1])

        dead_letters, commits = self.dead_letters, self.history.commits

        def post(done: Landed) -> None:
            dead_letters.post(record, ack=ack, commits=commits, done=done)

        self._post(broker, message, written, post)

    def _timeline(self, job_id: str, *, exclude: int) -> list[dict[str, Any]]:
        """The job's attempts so far (everything buffered written first), but attempt
        ``exclude``."""
        self.history.flush()
        return [a for a in self.history.attempts(job_id) if a["n"] != exclude]


def failed_attempt(
    attempt: Attempt,
    outcome: str,
    classification: Classification | None,
    decision: Decision,
    *,
    finished: int,
    event_id: str | None,
) -> dict[str, Any]:
    """The timeline entry of an attempt that failed with ``outcome``: its category, error (the
    root cause's, redacted), the rule that classified it, its worker and its Sentry event."""
    root = classification.root_cause if classification is not None else None
    return attempt_record(
        attempt.n, started_at=attempt.started_at, finished_at=finished, outcome=outcome,
        category=decision.category, error_type=type_name(root), error_message=error_message(root),
        rule=classification.rule if classification is not None else None, worker=worker_id(),
        sentry_event_id=event_id,
    )  # fmt: skip
