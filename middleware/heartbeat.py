"""A liveness heartbeat: a file a worker process touches only while it can still do its work.

A Kubernetes liveness probe cannot ask a Dramatiq worker whether it is healthy, and a running
process is not proof: its broker connection may be gone for good or its consumer threads may have
died, and it would sit there forever holding its pod. The ``Heartbeat`` middleware refreshes a
file every few seconds while the broker's Redis answers and every consumer and worker thread is
alive; the probe (``python -m middleware.heartbeat FILE --max-age-s N``) fails once the file is
older than ``N`` seconds. Nothing here runs on the per-job path: the middleware has no message
hooks, only a thread started before the worker boots.

The probe imports nothing but the standard library and Dramatiq's middleware base (no Redis
client, no settings, no broker), so running it every few seconds costs about 0.15 s of CPU.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dramatiq.middleware import Middleware

if TYPE_CHECKING:
    from dramatiq.broker import Broker

logger = logging.getLogger(__name__)


class _Thread(Protocol):
    def is_alive(self) -> bool: ...


class _Worker(Protocol):
    """The parts of ``dramatiq.Worker`` the heartbeat looks at."""

    consumers: dict[str, Any]
    workers: list[Any]


def threads_alive(consumers: Iterable[_Thread], workers: Iterable[_Thread]) -> bool:
    """Whether the worker has consumer threads and every consumer and worker thread is alive.

    No consumer at all counts as unhealthy: a worker that consumes nothing does no work."""
    consumers = list(consumers)
    return bool(consumers) and all(t.is_alive() for t in (*consumers, *workers))


def heartbeat_age_s(path: Path, *, now: float) -> float | None:
    """Seconds since ``path`` was last refreshed (``now`` in epoch seconds); None if it is
    missing."""
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return None


class Heartbeat(Middleware):
    """Touches ``path`` every ``interval_s`` while the worker can do its work.

    A beat happens only when the broker's Redis answers a PING within ``interval_s`` and every
    consumer and worker thread of the worker is alive; during a graceful shutdown, when Dramatiq
    stops its threads on purpose, only Redis must answer, so a draining worker is not killed by
    its liveness probe. The thread starts in ``before_worker_boot``: Dramatiq 2.2 starts consumer
    and worker threads before it emits ``after_worker_boot``, and the first beat must not wait
    for the first job.

    Parameters:
      path(Path): The heartbeat file (its directory is created).
      interval_s(float): Seconds between beats; also the PING timeout. Default 5.
    """

    def __init__(self, path: Path, *, interval_s: float = 5.0) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A restarted container keeps its emptyDir: the last container's beat is not ours.
        self.path.unlink(missing_ok=True)
        self._stop.clear()
        self._draining.clear()
        client = _ping_client(broker, self.interval_s)
        self._thread = threading.Thread(
            target=self._beat, args=(client, worker), name="evalq-heartbeat", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._draining.set()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1)

    def healthy(self, client: Any, worker: _Worker) -> bool:
        """Whether this worker may beat now: Redis answers, and (unless draining) every thread
        lives."""
        if not self._draining.is_set() and not threads_alive(
            list(worker.consumers.values()), list(worker.workers)
        ):
            return False
        try:
            return bool(client.ping())
        except Exception:  # any failure to answer is a missed beat, never a crash of the thread
            return False

    def _beat(self, client: Any, worker: _Worker) -> None:
        # The first check waits one interval: Worker.start() creates the threads after this hook.
        was_healthy = True
        while not self._stop.wait(self.interval_s):
            healthy = self.healthy(client, worker) and self._touch()
            if not healthy and was_healthy:
                logger.warning("Worker unhealthy (Redis, a thread or the file): heartbeat paused.")
            was_healthy = healthy
        client.close()

    def _touch(self) -> bool:
        try:
            self.path.touch()
        except OSError:
            logger.warning("Cannot write the heartbeat file %s.", self.path, exc_info=True)
            return False
        return True


def _ping_client(broker: Broker, timeout_s: float) -> Any:
    """A client to the broker's own Redis address whose PING gives up after ``timeout_s``.

    Built at boot, not at construction: ``evalq`` commands repoint the broker's pool after the
    broker was built. Its own pool, so a stuck broker connection cannot also stall the beat."""
    # Imported here: the liveness probe (``python -m middleware.heartbeat``) needs no Redis.
    from middleware.state.connections import sibling_pool

    client = broker.client  # type: ignore[attr-defined]
    own_pool = sibling_pool(
        client.connection_pool, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    return type(client)(connection_pool=own_pool)


def probe(path: Path, *, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """Whether the heartbeat at ``path`` is fresh, and the line saying so."""
    age = heartbeat_age_s(path, now=time.time() if now is None else now)
    if age is None:
        return False, f"{path}: no heartbeat yet"
    if age > max_age_s:
        return False, f"{path}: stale, last beat {age:.1f} s ago (allowed {max_age_s:g} s)"
    return True, f"{path}: fresh, last beat {age:.1f} s ago"


def main(argv: Sequence[str] | None = None) -> int:
    """The probe command: exit 0 when the heartbeat is fresh, 1 when it is stale or missing."""
    parser = argparse.ArgumentParser(
        prog="python -m middleware.heartbeat",
        description="Exit non-zero when an evalq worker's heartbeat file is stale or missing.",
    )
    parser.add_argument("path", type=Path, help="the worker's heartbeat file")
    parser.add_argument(
        "--max-age-s", type=float, default=30.0, help="oldest acceptable beat, in seconds"
    )
    args = parser.parse_args(argv)
    fresh, line = probe(args.path, max_age_s=args.max_age_s)
    print(line, file=sys.stdout if fresh else sys.stderr)
    return 0 if fresh else 1


if __name__ == "__main__":
    sys.exit(main())
