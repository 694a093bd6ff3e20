"""Run the real ``evalq`` console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

EVALQ = str(Path(sys.executable).with_name("evalq"))
REPO_ROOT = Path(__file__).resolve().parents[2]


def evalq_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of an ``evalq`` command: this one, minus any inherited evalq settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVALQ_", "SENTRY_"))}
    if redis_url is not None:
        env["EVALQ_REDIS_URL"] = redis_url
    env.update(extra)
    return env


def run_evalq(
    *args: str, redis_url: str | None, cwd: Path = REPO_ROOT, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``evalq ARGS`` to completion and capture its output."""
    return subprocess.run(
        [EVALQ, *args],
        env=evalq_env(redis_url, **extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Wait until ``path`` exists (e.g. ``evalq up``'s advert), failing if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"evalq up exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {timeout}s")
        time.sleep(0.1)
