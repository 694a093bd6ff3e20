"""What every ``evalq`` command shares: the consoles, JSON output, errors, finding Redis."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

import workers
from config.errors import EXIT_CODE, ConfigurationError
from workers.bootstrap import repoint
from workers.cli.text import literal
from workers.instants import instant_ms as instant  # noqa: F401  (re-exported for commands)
from workers.local_redis import find_redis_url

out = Console()
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as the command's error and exit with ``code``."""
    # The message may hold what a user typed or a job holds: shown literally, never as markup.
    line = Text.assemble(("evalq:", "red"), " ", literal(message, multiline=True))
    err.print(line, soft_wrap=True)
    raise typer.Exit(code)


def connect() -> str:
    """Point this process at the Redis other evalq processes use (``EVALQ_REDIS_URL``, else a
    running ``evalq up`` found from here); ``NoRedisError`` (exit 2 with guidance) if none."""
    url = find_redis_url(workers.settings)
    repoint(workers.broker, url)
    return url


def run(app: typer.Typer) -> None:
    """Run the CLI: a configuration problem (bad settings, bad policy file, no Redis, ...) is
    one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except ConfigurationError as error:
        err.print(f"evalq: {error.describe()}", highlight=False, markup=False)
        raise SystemExit(EXIT_CODE) from None


def print_json(document: Any) -> None:
    """Write one JSON document on stdout."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def clock_time(ms: int | None) -> str:
    """``ms`` since the epoch as ``2026-11-26 12:00:00`` (UTC); "" for None or 0."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
