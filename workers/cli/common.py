"""What every ``evalq`` command shares: the consoles, JSON output, errors, finding Redis."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

import workers
from workers.bootstrap import repoint
from workers.cli.text import literal
from workers.local_redis import NoRedisError, existing_url

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
    """Point this process at the Redis other evalq processes use; exit with guidance if none."""
    try:
        url = existing_url(workers.settings)
    except NoRedisError as error:
        fail(str(error))
    repoint(workers.broker, url)
    return url


def print_json(document: Any) -> None:
    """Write one JSON document on stdout."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()
