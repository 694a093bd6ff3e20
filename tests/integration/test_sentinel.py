"""evalq's parts through a Sentinel failover, in process, against a real primary, replica and
three sentinels: the broker repointed at a Sentinel URL, a settlement that waits out the
promotion, the abort watcher listening again on the new primary; and a submission sent again
after its reply was lost, which stays one job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

import workers
from config.settings import read_settings
from middleware.abort import AbortWatcher, JobInterrupted
from middleware.state import keys
from middleware.state.aborts import request_abort
from middleware.state.connections import redis_client, while_redis_away
from middleware.state.settlement import settle
from tests.support.dramatiq_option_actors import flaky_with_one_retry
from tests.support.requests import rule_request
from tests.support.sentinel import SentinelSet, sentinel_set
from workers.bootstrap import repoint
from workers.client import Evalq

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path / "sentinel-set") as nodes:
        yield nodes


def fail_over(sentinels: SentinelSet) -> float:
    """SIGKILL the primary; returns when it was killed (``time.monotonic``)."""
    port = sentinels.primary_port()
    assert port is not None
    sentinels.kill(sentinels.node_on(port))
    return time.monotonic()


def test_a_broker_repointed_at_a_sentinel_url_moves_every_part_sharing_its_client(
    sentinels: SentinelSet, redis_url: str
) -> None:
    try:
        repoint(workers.broker, sentinels.url)
        assert isinstance(workers.broker.client.connection_pool, SentinelConnectionPool)
        workers.broker.client.set("where", "sentinel")
        # The broker's sends, over the connection it keeps for them, follow the client too.
        message = flaky_with_one_retry.send("sent after the repoint")
        primary = redis.Redis(host="127.0.0.1", port=sentinels.primary_port() or 0)
        assert primary.get("where") == b"sentinel"
        assert primary.hget(keys.job_key(message.message_id), "state") == b"queued"
        primary.close()
    finally:
        repoint(workers.broker, redis_url)
    assert type(workers.broker.client.connection_pool) is redis.ConnectionPool


class _Message:
    message_id = "job-settled-across-a-failover"


def test_a_settlement_waits_out_the_promotion_and_lands_on_the_new_primary(
    sentinels: SentinelSet,
) -> None:
    client = redis_client(sentinels.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    client.set("before", 1)
    killed_at = fail_over(sentinels)
    settle(_Message(), lambda: client.set("settled", 1))  # type: ignore[arg-type]
    waited = time.monotonic() - killed_at
    new_primary = redis.Redis(host="127.0.0.1", port=sentinels.primary_port() or 0)
    assert new_primary.get("settled") == b"1"
    assert new_primary.info("replication")["role"] == "master"
    assert 0.5 < waited < 20
    client.close()
    new_primary.close()


def test_the_abort_watcher_listens_again_on_the_new_primary(sentinels: SentinelSet) -> None:
    client = redis_client(sentinels.url, socket_timeout=1, socket_connect_timeout=0.5)
    # Polling only every 60 s: an abort caught within seconds was heard on the channel.
    watcher = AbortWatcher(client, poll_interval_s=60)
    watcher.start()
    caught: list[BaseException] = []
    running = threading.Event()

    def job() -> None:
        watcher.running.started(threading.get_ident(), "j1")
        running.set()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except JobInterrupted as error:
            caught.append(error)
        finally:
            watcher.running.finished(threading.get_ident())

    thread = threading.Thread(target=job, daemon=True)
    try:
        thread.start()
        assert running.wait(5)
        fail_over(sentinels)
        new_primary = _wait_for_subscriber(sentinels)
        client.hset(keys.job_key("j1"), mapping={"state": "running", "queue": "q", "actor": "a"})
        asked = time.monotonic()
        assert request_abort(client, "j1", ttl_s=600).notified >= 1
        thread.join(5)
        assert caught and time.monotonic() - asked < 2
        new_primary.close()
    finally:
        watcher.stop()
        client.close()


def _wait_for_subscriber(sentinels: SentinelSet) -> redis.Redis:
    """The new primary, once someone listens on the abort channel there."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        port = sentinels.primary_port()
        if port is not None and sentinels.role(sentinels.node_on(port)) == "master":
            node = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
            try:
                if dict(node.pubsub_numsub(keys.ABORT_CHANNEL)).get(keys.ABORT_CHANNEL.encode(), 0):
                    return node
            except redis.RedisError:
                pass
            node.close()
        time.sleep(0.1)
    raise AssertionError(f"no one listens for aborts on the new primary:\n{sentinels.logs()}")


@pytest.mark.parametrize("finished_first", [False, True], ids=["still-queued", "finished"])
def test_a_submission_sent_again_after_its_reply_was_lost_is_the_same_one_job(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, finished_first: bool
) -> None:
    client = Evalq(read_settings(redis_url=redis_url, dedup_mode="until_started"))
    real = client._run_submits
    sent: list[Any] = []

    def reply_lost(calls: list[Any]) -> list[Any]:
        replies = real(calls)
        sent.append(replies)
        if len(sent) == 1:
            if finished_first:  # a worker ran and finished it before the reply was resent
                client.redis.hset(keys.job_key(keys.text(replies[0][0])), "state", "succeeded")
            raise redis.ConnectionError("the primary died before its reply arrived")
        return replies

    monkeypatch.setattr(client, "_run_submits", reply_lost)
    handle = client.submit_evaluation(rule_request(), lane="batch")
    assert len(sent) == 2
    assert handle.deduplicated is False
    assert client.redis.hlen(keys.queue_messages_key("evaluations.batch")) == 1
    assert client.redis.llen(keys.queue_key("evaluations.batch")) == 1
    client.close()


def test_a_planned_failover_moves_a_pooled_client_and_its_scripts_to_the_new_primary(
    sentinels: SentinelSet,
) -> None:
    client = redis_client(sentinels.url, socket_timeout=1, socket_connect_timeout=0.5)
    write = client.register_script("redis.call('SET', KEYS[1], ARGV[1]) return 1")
    assert write(keys=["before"], args=["1"]) == 1  # a pooled connection to this primary
    old = sentinels.node_on(sentinels.primary_port() or 0)
    # A failover without a crash: the old primary lives on, demoted, and keeps its clients.
    sentinel = redis.Redis(host="127.0.0.1", port=sentinels.sentinels[0].port)
    sentinel.execute_command("SENTINEL FAILOVER", "evalq")
    deadline = time.monotonic() + 30
    while sentinels.role(old) != "slave":
        assert time.monotonic() < deadline, sentinels.logs()
        time.sleep(0.05)
    assert while_redis_away(lambda: write(keys=["after"], args=["2"]), patience_s=20) == 1
    new_primary = redis.Redis(host="127.0.0.1", port=sentinels.primary_port() or 0)
    assert new_primary.get("after") == b"2"
    assert new_primary.info("replication")["role"] == "master"
    for connection in (client, sentinel, new_primary):
        connection.close()


def test_a_script_write_sent_to_a_replica_by_a_stale_sentinel_answer_lands_on_the_primary(
    sentinels: SentinelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis_client(sentinels.url, socket_timeout=1, socket_connect_timeout=0.5)
    source = "redis.call('SET', KEYS[1], ARGV[1]) return 1"
    write = client.register_script(source)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    replica = ("127.0.0.1", sentinels.nodes["node-b"].port)
    direct = redis.Redis(host=replica[0], port=replica[1])
    direct.script_load(source)  # as the primary's SCRIPT LOAD would have reached it
    direct.close()
    real = pool.proxy.get_master_address
    answers = iter([replica])  # the first answer names the replica, as a lagging sentinel would
    monkeypatch.setattr(pool.proxy, "get_master_address", lambda: next(answers, None) or real())
    # Redis 6 refuses a script's write on a replica inside a script error, not as READONLY;
    # the connection reports it as the outage it is, so the write is sent again, to the primary.
    assert while_redis_away(lambda: write(keys=["k"], args=["v"]), patience_s=10) == 1
    primary = redis.Redis(host="127.0.0.1", port=sentinels.nodes["node-a"].port)
    assert primary.get("k") == b"v"
    primary.close()
    client.close()


def test_a_workers_group_commit_follows_a_failover_even_when_the_old_primary_returns(
    sentinels: SentinelSet,
) -> None:
    from middleware.state.group_commit import GroupCommit

    client = redis_client(sentinels.url, socket_timeout=1, socket_connect_timeout=0.5)
    write = client.register_script("redis.call('SET', KEYS[1], ARGV[1]) return 1")
    group = GroupCommit(client)  # keeps one connection, to this primary
    assert group(write, keys=["before"], args=["1"]) == 1
    old = sentinels.node_on(sentinels.primary_port() or 0)
    fail_over(sentinels)
    deadline = time.monotonic() + 30
    while sentinels.primary_port() in (None, sentinels.nodes[old].port):
        assert time.monotonic() < deadline, sentinels.logs()
        time.sleep(0.05)
    # Back on its port, empty and still calling itself a primary until the sentinels demote
    # it: a connection that reconnected to the address it had would write there and lose it.
    sentinels.restart(old)
    while sentinels.role(old) != "master":
        assert time.monotonic() < deadline, sentinels.logs()
        time.sleep(0.01)
    # Another connection of the pool meets the new primary, as the worker's others would.
    while_redis_away(lambda: client.set("noticed", 1), patience_s=20)
    assert while_redis_away(lambda: group(write, keys=["after"], args=["2"]), patience_s=20) == 1
    new_primary = redis.Redis(host="127.0.0.1", port=sentinels.primary_port() or 0)
    assert new_primary.get("after") == b"2"
    new_primary.close()
    client.close()
