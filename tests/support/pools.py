"""Real ``dramatiq workers`` subprocesses for integration tests."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from middleware.state.connections import redis_client
from middleware.worker_registry import live_workers
from workers.process_group import ProcessGroup

REPO_ROOT = Path(__file__).resolve().parents[2]


class WorkerPools:
    """Starts ``dramatiq workers`` pools against one Redis and waits until they are consuming."""

    def __init__(self, *, redis_url: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.group = ProcessGroup()
        self._count = 0

    def start(
        self,
        *queues: str,
        processes: int = 1,
        threads: int = 2,
        env: dict[str, str] | None = None,
        modules: tuple[str, ...] = (),
        wait: bool = True,
    ) -> str:
        """Start one pool consuming ``queues`` (all queues when none given); returns its name.

        ``modules`` are imported by each worker process after the broker (extra actors)."""
        self._count += 1
        name = f"pool{self._count}"
        argv = [
            sys.executable,
            "-m",
            "dramatiq",
            "workers",
            *modules,
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--worker-shutdown-timeout",
            "5000",
        ]
        if queues:
            argv += ["--queues", *queues]
        child_env = {
            "EVALQ_REDIS_URL": self.redis_url,
            "EVALQ_ENV": "test",
            # Idle consumers poll more often, so pools stop in well under a second.
            "dramatiq_worker_timeout": "200",
            **(env or {}),
        }
        before = self._worker_count()
        self.group.start(
            name, argv, env=child_env, log_path=self.log_dir / f"{name}.log", cwd=REPO_ROOT
        )
        if wait:
            self._wait_for_workers(before + processes, name)
        return name

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.group.stop(timeout=15)

    def _worker_count(self) -> int:
        client = redis_client(self.redis_url)  # a Sentinel URL too
        try:
            return len(live_workers(client))
        finally:
            client.close()

    def _wait_for_workers(self, expected: int, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._worker_count() >= expected:
                return
            code = self.group.poll().get(name)
            if code is not None:
                raise RuntimeError(f"worker pool {name} exited with {code}:\n{self.log(name)}")
            time.sleep(0.05)
        raise TimeoutError(f"worker pool {name} did not register in {timeout}s:\n{self.log(name)}")
