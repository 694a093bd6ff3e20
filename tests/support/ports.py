"""Ports for servers a test starts as child processes.

A port picked by binding to port 0 comes from the kernel's ephemeral range, the same range the
outgoing connections of every other process draw from. Between closing the probe and the child's
own bind, a replica's connection to its primary (or any client) may take it, and the child fails
with "Address already in use". Ports below that range are handed out only to explicit binds.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
_LOWEST = 10_000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL_LOW = 32_768


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def listen_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1, outside the ephemeral range when it leaves
    room below it (else ephemeral ones, which the race above may take)."""
    high = _ephemeral_low()
    if high - _LOWEST < 1_000:
        return _ephemeral_ports(count)
    ports: list[int] = []
    candidates = random.sample(range(_LOWEST, high), min(high - _LOWEST, 200 + count))
    for port in candidates:
        if _bindable(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"no {count} free ports between {_LOWEST} and {high} on {HOST}")


def listen_port() -> int:
    """One port free on 127.0.0.1 (see ``listen_ports``)."""
    return listen_ports(1)[0]


def _ephemeral_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
