"""``evalq dashboard``: serve the operations dashboard until Ctrl-C."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console

import workers
from workers.cli.common import connect, fail, out


def dashboard(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: EVALQ_DASHBOARD_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: EVALQ_DASHBOARD_PORT, 8377).")
    ] = None,
) -> None:
    """Serve the dashboard: queues, running jobs, history, dead letters, actions, /metrics.

    Without EVALQ_DASHBOARD_TOKEN it listens on 127.0.0.1 only and prints a login link with a
    token made up for this run.
    """
    from dashboard.auth import BindRefused
    from dashboard.server import DashboardServer

    connect()
    try:
        server = DashboardServer(workers.settings, workers.broker.client, workers.policy,
                                 host=host, port=port)  # fmt: skip
    except BindRefused as error:
        fail(str(error))
    except OSError as error:
        settings = workers.settings
        where = f"{host or settings.dashboard_host}:{port or settings.dashboard_port}"
        fail(f"cannot listen on {where}: {error.strerror}")
    out.print(f"evalq dashboard: {server.login_url}", highlight=False, soft_wrap=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve()


@contextlib.contextmanager
def dashboard_beside(url: str, console: Console) -> Iterator[None]:
    """Serve the dashboard on a thread while ``evalq up`` / ``evalq demo`` run, on the Redis at
    ``url``; print its address. A dashboard that cannot start is reported and skipped: the worker
    pools are the command's main job."""
    from dashboard.auth import BindRefused
    from dashboard.server import DashboardServer
    from middleware.state.connections import redis_client

    client = redis_client(url, workers.settings)
    try:
        server = DashboardServer(workers.settings, client, workers.policy, fallback_port=True)
        server.start()
    except (BindRefused, OSError, RuntimeError) as error:
        console.print(f"[yellow]dashboard not started: {error}[/yellow]", highlight=False)
        yield
        client.close()
        return
    console.print(f"dashboard: {server.login_url}", highlight=False, soft_wrap=True)
    try:
        yield
    finally:
        server.stop()
        client.close()
