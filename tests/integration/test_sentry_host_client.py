"""A process whose application set up Sentry first keeps its client, and evalq's grouped events
go through it: real ``dramatiq`` worker process, real sentry-sdk, a Sentry endpoint on
127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from middleware.worker_registry import live_workers
from tests.support.cli import REPO_ROOT, evalq_env
from tests.support.failing_actors import fail_unknown
from tests.support.sentry_endpoint import SentryEndpoint
from workers.process_group import ProcessGroup

pytestmark = pytest.mark.integration

#: The release tests.support.host_app gives its own client (importing it here would init Sentry).
RELEASE = "host-app@1.2.3"


def test_importing_evalq_after_sentry_init_keeps_the_hosts_client() -> None:
    script = (
        "import sentry_sdk\n"
        "sentry_sdk.init(dsn='http://key@127.0.0.1:9/1', release='r1',\n"
        "                before_send=lambda e, h: e)\n"
        "host = sentry_sdk.get_client()\n"
        "import workers, workers.client, workers.cli, middleware.sentry\n"
        "workers.broker\n"
        "assert sentry_sdk.get_client() is host and host.options['release'] == 'r1'\n"
    )
    env = {**evalq_env("redis://127.0.0.1:1/0"), "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                               text=True, timeout=60)  # fmt: skip
    assert completed.returncode == 0, completed.stderr


def test_a_worker_in_a_host_process_sends_evalqs_grouped_events_through_the_hosts_client(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    with SentryEndpoint() as endpoint, ProcessGroup() as group:
        env = {**evalq_env(redis_url), "PYTHONPATH": str(REPO_ROOT), "EVALQ_ENV": "test",
               "HOST_SENTRY_DSN": endpoint.dsn, "dramatiq_worker_timeout": "200"}  # fmt: skip
        argv = [sys.executable, "-m", "dramatiq", "tests.support.host_app",
                "tests.support.failing_actors", "--processes", "1", "--threads", "2",
                "--queues", "default", "--worker-shutdown-timeout", "2000"]  # fmt: skip
        group.start("host", argv, env=env, cwd=REPO_ROOT, log_path=tmp_path / "host.log")
        deadline = time.monotonic() + 30
        while not live_workers(client):
            assert time.monotonic() < deadline, (tmp_path / "host.log").read_text()
            time.sleep(0.05)
        tags = [str(uuid.uuid4()) for _ in range(2)]
        for tag in tags:
            fail_unknown.send("shard", "from", tag)
        events = endpoint.wait_for(2, timeout=30)
    assert len(events) == 2
    for event in events:
        assert event["release"] == RELEASE  # the host's client sent it
        assert event["tags"]["host_before_send"] == "yes"  # through the host's before_send
        assert event["tags"]["category"] == "unknown"  # with evalq's tags
        assert event["fingerprint"][:3] == [
            "evalq", "fail_unknown", "tests.support.failing_actors.ShardLookupError",
        ]  # fmt: skip
    assert events[0]["fingerprint"] == events[1]["fingerprint"]  # one issue for one root cause
