"""ReplicaWait's reading of ROLE and WAIT, with a stand-in client that answers ROLE."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from middleware.state import replication
from middleware.state.replication import ReplicaWait


class RoleClient:
    """Answers ``ROLE`` with ``role`` and counts the calls; ``connection_pool`` is swappable."""

    def __init__(self, role: Any) -> None:
        self.role = role
        self.roles_asked = 0
        self.connection_pool = object()

    def execute_command(self, *command: Any) -> Any:
        assert command == ("ROLE",)
        self.roles_asked += 1
        if isinstance(self.role, Exception):
            raise self.role
        return self.role


def primary_with(replicas: int) -> list[Any]:
    return [b"master", 120, [[b"127.0.0.1", b"6380", b"120"]] * replicas]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(replication.time, "monotonic", lambda: now[0])
    return now


def test_a_primary_with_a_replica_online_is_waited_for_and_recounted_each_second(
    clock: list[float],
) -> None:
    client = RoleClient(primary_with(1))
    wait = ReplicaWait(client, 1500)  # type: ignore[arg-type]
    assert wait.tail() == [("WAIT", 1, 1500)]
    assert client.roles_asked == 1
    clock[0] += 0.5
    assert wait.tail() == [("WAIT", 1, 1500)]
    clock[0] += 0.6
    tail = wait.tail()
    assert tail == [("WAIT", 1, 1500), ("ROLE",)]
    wait.check(tail, [1, primary_with(0)])  # the replica went away
    assert wait.tail() == []
    assert client.roles_asked == 1  # the later counts rode in the writes' round trips


@pytest.mark.parametrize(
    "role",
    [primary_with(0), [b"slave", b"127.0.0.1", 6379, b"connected", 10], [b"sentinel", []]],
    ids=["primary-alone", "replica", "sentinel"],
)
def test_no_replica_of_this_node_means_no_wait(role: Any, clock: list[float]) -> None:
    assert ReplicaWait(RoleClient(role), 1000).tail() == []  # type: ignore[arg-type]


def test_a_refused_role_turns_waiting_off_and_says_why_once(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    client = RoleClient(redis.ResponseError("NOPERM this user has no permissions to run 'role'"))
    wait = ReplicaWait(client, 1000)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="evalq.replication"):
        assert wait.tail() == []
        clock[0] += 1.0
        tail = wait.tail()
        wait.check(tail, [redis.ResponseError("NOPERM again")])
    assert tail == [("ROLE",)]
    assert caplog.text.count("Redis refused ROLE") == 1
    assert "allow ROLE for evalq's user" in caplog.text


def test_an_unconfirmed_write_is_reported_and_the_replicas_counted_at_the_next(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    wait = ReplicaWait(RoleClient(primary_with(2)), 250)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="evalq.replication"):
        tail = wait.tail()
        wait.check(tail, [0])
        assert wait.tail() == [("WAIT", 1, 250), ("ROLE",)]
        wait.check([("WAIT", 1, 250)], [0])  # within ten seconds: not said again
        clock[0] += replication.WARN_EVERY_S
        wait.check([("WAIT", 1, 250)], [redis.ResponseError("NOPERM wait")])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "(none within 250 ms)" in lines[0]
    assert "(NOPERM wait)" in lines[1]


def test_a_failed_round_trip_or_a_new_pool_has_the_replicas_counted_again(
    clock: list[float],
) -> None:
    client = RoleClient(primary_with(1))
    wait = ReplicaWait(client, 1000)  # type: ignore[arg-type]
    wait.tail()
    wait.forget()
    client.role = primary_with(0)  # the new primary, right after a failover
    assert wait.tail() == []
    client.connection_pool = object()  # repointed at another Redis
    client.role = primary_with(1)
    assert wait.tail() == [("WAIT", 1, 1000)]
    assert client.roles_asked == 3


def test_a_timeout_of_zero_never_asks_or_waits(clock: list[float]) -> None:
    client = RoleClient(primary_with(1))
    assert ReplicaWait(client, 0).tail() == []  # type: ignore[arg-type]
    assert client.roles_asked == 0


def test_the_wait_ends_well_within_the_connections_read_timeout(clock: list[float]) -> None:
    client = RoleClient(primary_with(1))
    client.connection_pool = type("Pool", (), {"connection_kwargs": {"socket_timeout": 0.5}})()
    assert ReplicaWait(client, 1000).tail() == [("WAIT", 1, 400)]  # type: ignore[arg-type]
    client.connection_pool = type("Pool", (), {"connection_kwargs": {"socket_timeout": None}})()
    assert ReplicaWait(client, 1000).tail() == [("WAIT", 1, 1000)]  # type: ignore[arg-type]
