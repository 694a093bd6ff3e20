"""A TCP front for a server on 127.0.0.1 that a test can cut off: the network between a worker
and its Redis failing, while Redis itself (and the test's own connection to it) stays up."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit


class TcpProxy:
    """Forwards connections on a free port of 127.0.0.1 to ``target``; ``cut(seconds)`` drops
    every open connection and refuses new ones for that long.

    Parameters:
      target: ``(host, port)`` of the server.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut_until = 0.0

    @classmethod
    def to_redis(cls, redis_url: str) -> TcpProxy:
        """A proxy to the Redis server of ``redis_url`` (not started: use it as a context)."""
        plain = urlsplit(redis_url)
        assert plain.hostname and plain.port, f"no host and port in {redis_url}"
        return cls((plain.hostname, plain.port))

    @property
    def url(self) -> str:
        """A Redis URL through this proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self, seconds: float) -> None:
        """Drop every connection now and refuse new ones for ``seconds``."""
        with self._lock:
            self._cut_until = time.monotonic() + seconds
            dropped, self._open = self._open, set()
        for end in dropped:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                end.close()

    def __enter__(self) -> TcpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._listener.close()
        self.cut(0)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._cut_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from ``source`` to ``sink`` until either end closes; then close both."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.close()
