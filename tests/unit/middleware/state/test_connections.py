"""The one Redis connection factory: which pool a URL gives, with which options, and the retry of
an operation while Redis is away. Nothing here connects."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import MasterNotFoundError, SentinelConnectionPool

from config.settings import read_settings
from middleware.state import connections
from middleware.state.connections import (
    FailoverConnection,
    FailoverSSLConnection,
    NewestViewSentinel,
    redis_pool,
    sibling_pool,
    uses_sentinel,
    while_redis_away,
)


def test_a_node_url_gives_redis_pys_own_pool() -> None:
    pool = redis_pool("redis://:pw@127.0.0.1:6390/2", socket_timeout=3)
    assert type(pool) is redis.ConnectionPool and not uses_sentinel(pool)
    assert (pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (6390, 2)
    assert pool.connection_kwargs["socket_timeout"] == 3


def test_a_sentinel_url_gives_a_pool_that_asks_the_sentinels_for_the_primary() -> None:
    settings = read_settings(redis_sentinel_password="sentinel-pw")
    pool = redis_pool("redis+sentinel://:node-pw@s1:1,s2:2/evalq/4", settings)
    assert isinstance(pool, SentinelConnectionPool) and uses_sentinel(pool)
    assert pool.service_name == "evalq" and pool.is_master
    assert pool.connection_class is FailoverConnection
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (4, "node-pw")
    assert "host" not in pool.connection_kwargs  # the sentinels say where the primary is
    sentinels = pool.sentinel_manager.sentinels
    addresses = [s.connection_pool.connection_kwargs for s in sentinels]
    assert [(a["host"], a["port"]) for a in addresses] == [("s1", 1), ("s2", 2)]
    sentinel_options = sentinels[0].connection_pool.connection_kwargs
    assert sentinel_options["password"] == "sentinel-pw"
    assert sentinel_options["socket_connect_timeout"] == connections.SENTINEL_TIMEOUT_S


def test_rediss_sentinel_reaches_the_data_nodes_over_tls_and_the_sentinels_only_when_asked() -> (
    None
):
    url = "rediss+sentinel://s1:1/evalq?ssl_cert_reqs=none"
    plain = redis_pool(url, read_settings())
    assert plain.connection_class is FailoverSSLConnection
    assert plain.connection_kwargs["ssl_cert_reqs"] == "none"
    assert "ssl" not in plain.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    tls = redis_pool(url, read_settings(redis_sentinel_tls=True))
    sentinel_pool = tls.sentinel_manager.sentinels[0].connection_pool
    assert sentinel_pool.connection_class is redis.SSLConnection
    assert sentinel_pool.connection_kwargs["ssl_cert_reqs"] == "none"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6390/1", "redis+sentinel://s1:1/evalq/1"])
def test_a_sibling_pool_reaches_the_same_redis_with_its_own_options(url: str) -> None:
    pool = redis_pool(url)
    sibling = sibling_pool(pool, socket_timeout=0.5)
    assert type(sibling) is type(pool) and sibling is not pool
    assert sibling.connection_kwargs["socket_timeout"] == 0.5
    assert sibling.connection_kwargs["db"] == 1
    if isinstance(pool, SentinelConnectionPool):
        assert isinstance(sibling, SentinelConnectionPool)
        assert (sibling.service_name, sibling.sentinel_manager) == ("evalq", pool.sentinel_manager)
        assert sibling.connection_kwargs["connection_pool"] is sibling.proxy


def test_an_operation_is_run_again_while_redis_is_away_then_its_answer_returned() -> None:
    failures = [redis.ConnectionError("gone"), MasterNotFoundError("no primary"),
                redis.exceptions.ReadOnlyError("demoted")]  # fmt: skip
    calls = []

    def operation() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    assert while_redis_away(operation, patience_s=5) == "done"
    assert len(calls) == 4


def test_redis_away_longer_than_the_patience_raises_its_last_error() -> None:
    def operation() -> None:
        raise redis.ConnectionError("still gone")

    with pytest.raises(redis.ConnectionError, match="still gone"):
        while_redis_away(operation, patience_s=0.2)


def test_an_error_that_is_not_an_outage_is_raised_at_once() -> None:
    calls = []

    def operation() -> None:
        calls.append(1)
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        while_redis_away(operation, patience_s=5)
    assert calls == [1]


class _FakeSentinel:
    def __init__(self, state: dict[str, object] | None = None, down: bool = False) -> None:
        self.state, self.down = state, down

    def sentinel_masters(self) -> dict[str, object]:
        if self.down:
            raise redis.ConnectionError("sentinel down")
        return {"evalq": self.state} if self.state else {}


def _view(port: int, epoch: int, **flags: bool) -> dict[str, object]:
    return {"ip": "10.0.0.1", "port": port, "config-epoch": epoch, "is_master": True,
            "is_sdown": False, "is_odown": False, "num-other-sentinels": 2, **flags}  # fmt: skip


def test_the_sentinel_with_the_newest_configuration_names_the_primary() -> None:
    manager = NewestViewSentinel([("s1", 1), ("s2", 2), ("s3", 3)])
    # s1 has not heard of the failover yet and names the old primary, back up and empty.
    manager.sentinels = [_FakeSentinel(_view(6379, 1)), _FakeSentinel(down=True),
                         _FakeSentinel(_view(6380, 2))]  # fmt: skip
    assert manager.discover_master("evalq") == ("10.0.0.1", 6380)


def test_no_sentinel_naming_a_live_primary_is_master_not_found() -> None:
    manager = NewestViewSentinel([("s1", 1), ("s2", 2)])
    manager.sentinels = [_FakeSentinel(_view(6379, 3, is_odown=True)), _FakeSentinel(down=True)]
    with pytest.raises(MasterNotFoundError, match="sentinel down"):
        manager.discover_master("evalq")
