"""Where evalq finds Redis: one rule for the CLI, the client and bare ``dramatiq workers``.

In order:

1. ``EVALQ_REDIS_URL``;
2. the embedded Redis of a running ``evalq up``, advertised in ``<data dir>/up.json``: the data
   dir is ``EVALQ_DATA_DIR`` when set, else the nearest ``.evalq`` in the working directory or one
   of its parents that holds a live advert;
3. else ``NoRedisError``, which says what to set. There is no silent default: a Redis on this
   machine's default port is used only when asked for (``EVALQ_REDIS_URL=redis://127.0.0.1:6379/0``).

``evalq up`` and ``evalq demo`` own their Redis (``owned_redis``): the configured one, or an
embedded one. One ``evalq up`` per data dir: ``up_lock`` holds a lock on it while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import redis

from config.errors import ConfigurationError
from config.settings import Settings
from middleware.state.connections import redis_client

ADVERT_FILE = "up.json"
LOCK_FILE = "up.lock"
DEFAULT_DATA_DIR_NAME = ".evalq"


class NoRedisError(ConfigurationError, RuntimeError):
    """No Redis to talk to: neither configured nor a running ``evalq up`` to be found."""

    kind = "no Redis"


class UpAlreadyRunning(ConfigurationError):
    """Another ``evalq up`` holds this data dir."""

    kind = "evalq up is already running"


def _missing(settings: Settings) -> NoRedisError:
    where = (
        f"EVALQ_DATA_DIR ({settings.data_dir})"
        if settings.data_dir_is_set
        else "this directory or a parent"
    )
    return NoRedisError(
        f"EVALQ_REDIS_URL is not set and no running `evalq up` was found in {where}: "
        "set EVALQ_REDIS_URL, or run `evalq up` in another terminal (a Redis on this machine's "
        "default port is used only when asked for: EVALQ_REDIS_URL=redis://127.0.0.1:6379/0)"
    )


def advertised_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis a live ``evalq up`` on ``data_dir`` runs, if it answers."""
    try:
        advert = json.loads((data_dir / ADVERT_FILE).read_text())
        os.kill(int(advert["pid"]), 0)
        url = str(advert["redis_url"])
        client = redis_client(url, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except (OSError, ValueError, KeyError, TypeError, redis.RedisError):
        return None
    return url


def candidate_data_dirs(settings: Settings, cwd: Path | None = None) -> list[Path]:
    """Where a running ``evalq up`` may be advertised: ``EVALQ_DATA_DIR``, else ``.evalq`` in
    the working directory and each of its parents, nearest first."""
    if settings.data_dir_is_set:
        return [Path(settings.data_dir)]
    here = (cwd or Path.cwd()).resolve()
    return [folder / DEFAULT_DATA_DIR_NAME for folder in (here, *here.parents)]


def find_redis_url(settings: Settings) -> str:
    """The Redis this process should use, or a ``NoRedisError`` saying what to do."""
    if settings.redis_url:
        return settings.redis_url
    for data_dir in candidate_data_dirs(settings):
        if (data_dir / ADVERT_FILE).exists():
            url = advertised_url(data_dir)
            if url is not None:
                return url
    raise _missing(settings)


def existing_url(settings: Settings) -> str:
    """Alias of ``find_redis_url`` for ``evalq`` client commands."""
    return find_redis_url(settings)


class _MissingRedisConnection(redis.Connection):
    """A connection that cannot connect: it raises the ``NoRedisError`` it was given."""

    def __init__(self, *, missing: NoRedisError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._missing = missing

    def connect(self) -> NoReturn:
        raise self._missing


def unresolved_pool(missing: NoRedisError) -> redis.ConnectionPool:
    """A pool whose every command raises ``missing`` (a broker built where no Redis is known:
    an application that sends nothing, a CLI that only validates files)."""
    return redis.ConnectionPool(connection_class=_MissingRedisConnection, missing=missing)


def missing_redis(pool: redis.ConnectionPool) -> NoRedisError | None:
    """The ``NoRedisError`` of a pool made by ``unresolved_pool``; None for a real pool."""
    if pool.connection_class is _MissingRedisConnection:
        missing: NoRedisError = pool.connection_kwargs["missing"]
        return missing
    return None


@contextlib.contextmanager
def advertise(settings: Settings, url: str) -> Iterator[None]:
    """Advertise ``url`` to other evalq processes while the block runs."""
    path = Path(settings.data_dir) / ADVERT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "redis_url": url}))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def up_lock(settings: Settings) -> Iterator[None]:
    """Hold the data dir for this ``evalq up`` (released when it exits, even killed); raise
    ``UpAlreadyRunning`` with the other one's pid and URL if it is held."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _already_running(data_dir, handle) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _already_running(data_dir: Path, handle: Any) -> UpAlreadyRunning:
    handle.seek(0)
    pid = handle.read().strip() or "?"
    url = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        url = json.loads((data_dir / ADVERT_FILE).read_text())["redis_url"]
    where = f", Redis at {url}" if url else ""
    return UpAlreadyRunning(
        f"pid {pid}{where}, on data dir {data_dir}; stop it first, or give this one another "
        "EVALQ_DATA_DIR"
    )


@contextlib.contextmanager
def owned_redis(settings: Settings, *, persist: bool = False) -> Iterator[tuple[str, bool]]:
    """Yield ``(url, embedded)``: the configured Redis, or an embedded one started for this block.

    With ``persist``, the embedded Redis keeps its data in ``<data dir>/redis`` across restarts
    (``evalq up``: queued jobs survive a restart); without it, every start is empty (the demo).
    """
    if settings.redis_url:
        yield settings.redis_url, False
        return
    # Imported here: a worker finds its Redis and never starts one.
    from workers.embedded_redis import EmbeddedRedis

    name = "redis" if persist else "redis-ephemeral"
    with EmbeddedRedis(data_dir=Path(settings.data_dir) / name, persist=persist) as server:
        yield server.url, True
