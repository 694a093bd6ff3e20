"""A worker's id names its own process: worked out once, and again in a forked child (each
`dramatiq workers` process is one)."""

from __future__ import annotations

import os
import socket

from middleware.worker_registry import worker_id


def test_a_forked_child_names_itself_not_its_parent() -> None:
    parent = worker_id()
    assert parent == f"{socket.gethostname()}:{os.getpid()}"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its id, and leave without running pytest's teardown
        os.write(write, worker_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.waitpid(pid, 0)
    assert child == f"{socket.gethostname()}:{pid}"
    assert worker_id() == parent
