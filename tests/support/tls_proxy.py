"""A TLS front for a plain Redis on 127.0.0.1: what a managed ``rediss://`` endpoint looks like
to evalq's clients. It terminates TLS with a certificate the test made and forwards the bytes."""

from __future__ import annotations

import socket
import ssl
import threading
from types import TracebackType

from tests.support.tcp_proxy import pump


class TlsProxy:
    """Accepts TLS connections on a free port of 127.0.0.1 and forwards each to ``target``.

    Parameters:
      target: ``(host, port)`` of the plain server.
      context: The server-side TLS context (certificate chain loaded).
    """

    def __init__(self, target: tuple[str, int], context: ssl.SSLContext) -> None:
        self.target = target
        self.context = context
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()

    def __enter__(self) -> TlsProxy:
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

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            secure = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        self.connections += 1
        upstream = socket.create_connection(self.target)
        threading.Thread(target=pump, args=(upstream, secure), daemon=True).start()
        pump(secure, upstream)
