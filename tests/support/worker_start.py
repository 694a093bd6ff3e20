"""Start a bare ``dramatiq workers`` process the way a user does, to see how it starts or stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.cli import REPO_ROOT, evalq_env


def worker_argv(*modules: str) -> list[str]:
    """``dramatiq workers [MODULES]`` with one process and thread, as this interpreter runs it."""
    return [sys.executable, "-m", "dramatiq", "workers", *modules, "--processes", "1",
            "--threads", "1", "--worker-shutdown-timeout", "2000"]  # fmt: skip


def run_dramatiq_workers(
    extra: dict[str, str], *, cwd: Path = REPO_ROOT, redis_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``dramatiq workers`` expecting it to stop by itself (a start-up error)."""
    env = evalq_env(redis_url, **extra)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        worker_argv(), env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def evalq_lines(completed: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines evalq itself printed on stderr (Dramatiq adds its own log lines)."""
    return [line for line in completed.stderr.splitlines() if line.startswith("evalq:")]
