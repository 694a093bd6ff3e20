"""A job-creating write returns once a replica has it, so that a failover cannot lose the job:
against a real primary and replica behind three sentinels, with the replica frozen (SIGSTOP) so
that it acknowledges nothing. And a primary without replicas is never waited for."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import workers
from config.settings import read_settings
from middleware.state import keys
from tests.support.dramatiq_option_actors import flaky_with_one_retry
from tests.support.requests import rule_request
from tests.support.sentinel import SentinelSet, sentinel_set
from workers.bootstrap import repoint
from workers.client import Evalq

pytestmark = pytest.mark.integration

REPLICA = "node-b"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path / "sentinel-set") as nodes:
        yield nodes


class Call:
    """``operation`` run in a thread; what it returned, and when."""

    def __init__(self, operation: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.returned_at: float | None = None
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(operation,), daemon=True)
        self._thread.start()

    def _run(self, operation: Callable[[], Any]) -> None:
        try:
            self.result = operation()
        except BaseException as error:  # reported by the test
            self.error = error
        self.returned_at = time.monotonic()

    def join(self, timeout: float) -> float:
        """Seconds the call took; fails the test when it is still running after ``timeout``."""
        self._thread.join(timeout)
        assert self.returned_at is not None, "the call never returned"
        assert self.error is None, repr(self.error)
        return self.returned_at - self.started_at


def replica_has(sentinels: SentinelSet, job_id: str) -> bool:
    node = redis.Redis(host="127.0.0.1", port=sentinels.nodes[REPLICA].port, socket_timeout=2)
    try:
        return node.hget(keys.job_key(job_id), "state") is not None
    finally:
        node.close()


def test_a_submission_returns_only_once_the_replica_has_the_job(sentinels: SentinelSet) -> None:
    client = Evalq(read_settings(redis_url=sentinels.url, redis_replica_wait_ms=20_000))
    client.submit_evaluation(rule_request(), lane="batch")  # the replica is counted
    sentinels.pause(REPLICA)
    call = Call(lambda: client.submit_evaluation(rule_request(), lane="batch"))
    time.sleep(1.0)
    assert call.returned_at is None, "the submission returned before the replica had it"
    sentinels.resume(REPLICA)
    took = call.join(timeout=15)
    assert 1.0 <= took < 15
    assert replica_has(sentinels, call.result.id)
    client.close()


def test_a_replica_silent_past_the_timeout_delays_a_submission_by_the_timeout_and_says_so(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    client = Evalq(read_settings(redis_url=sentinels.url, redis_replica_wait_ms=400))
    client.submit_many([rule_request()], lane="batch")
    sentinels.pause(REPLICA)
    with caplog.at_level(logging.WARNING, logger="evalq.replication"):
        call = Call(lambda: client.submit_many([rule_request(), rule_request()], lane="batch"))
        took = call.join(timeout=10)
    assert 0.4 <= took < 5
    assert "not confirmed by a replica (none within 400 ms)" in caplog.text
    # On the primary all along; on the replica once it reads again.
    assert [client.state(handle.id) for handle in call.result] == ["queued", "queued"]
    sentinels.resume(REPLICA)
    deadline = time.monotonic() + 10
    while not all(replica_has(sentinels, handle.id) for handle in call.result):
        assert time.monotonic() < deadline, "the replica never caught up"
        time.sleep(0.1)
    client.close()


@pytest.mark.parametrize("forgotten", [False, True], ids=["scripts-known", "scripts-flushed"])
def test_an_actors_send_returns_only_once_the_replica_has_the_job(
    sentinels: SentinelSet, redis_url: str, forgotten: bool
) -> None:
    try:
        repoint(workers.broker, sentinels.url)
        flaky_with_one_retry.send("the replica is counted")
        if forgotten:  # the send is refused (NOSCRIPT), then sent again with its script
            primary = redis.Redis(host="127.0.0.1", port=sentinels.primary_port() or 0)
            primary.script_flush()
            primary.close()
            time.sleep(1.2)  # the replica has acknowledged everything before it is frozen
        sentinels.pause(REPLICA)
        call = Call(lambda: flaky_with_one_retry.send("sent while the replica is frozen"))
        time.sleep(0.5)  # the broker's wait: EVALQ_REDIS_REPLICA_WAIT_MS, 1000 ms by default
        assert call.returned_at is None, "the send returned before the replica had it"
        sentinels.resume(REPLICA)
        call.join(timeout=15)
        assert replica_has(sentinels, call.result.message_id)
    finally:
        repoint(workers.broker, redis_url)


def test_a_primary_without_replicas_is_never_waited_for(
    redis_url: str, redis_client: redis.Redis
) -> None:
    client = Evalq(read_settings(redis_url=redis_url, redis_replica_wait_ms=60_000))
    redis_client.config_resetstat()
    began = time.monotonic()
    for _ in range(50):
        client.submit_evaluation(rule_request(), lane="batch")
        flaky_with_one_retry.send("no replica to wait for")
    elapsed = time.monotonic() - began
    stats = redis_client.info("commandstats")
    assert "cmdstat_wait" not in stats
    # Counted once by each of the two writers, then again at most once a second.
    roles = stats.get("cmdstat_role", {"calls": 0})["calls"]
    assert roles <= 2 * (2 + elapsed), roles
    assert redis_client.llen(keys.queue_key("evaluations.batch")) == 50
    client.close()


def test_a_user_refused_role_still_submits_and_is_told_why(
    redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client.acl_setuser("evalq-no-role", enabled=True, passwords=["+not-a-secret"],
                             keys=["*"], channels=["*"], commands=["+@all", "-role"])  # fmt: skip
    url = redis_url.replace("redis://", "redis://evalq-no-role:not-a-secret@", 1)
    client = Evalq(read_settings(redis_url=url))
    try:
        with caplog.at_level(logging.WARNING, logger="evalq.replication"):
            handle = client.submit_evaluation(rule_request(), lane="batch")
        assert client.state(handle.id) == "queued"
        assert "Redis refused ROLE" in caplog.text
        assert "not-a-secret" not in caplog.text
    finally:
        client.close()
        redis_client.acl_deluser("evalq-no-role")
