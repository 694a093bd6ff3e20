"""Where ``evalq`` commands find Redis.

In order: ``EVALQ_REDIS_URL``; else the embedded Redis that a running ``evalq up`` advertises in
``<data dir>/up.json``; else, for commands that own their Redis (``evalq up``, ``evalq demo``), a
fresh embedded Redis that stops when the command ends.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import redis

from config.settings import Settings
from workers.embedded_redis import EmbeddedRedis


class NoRedisError(RuntimeError):
    """No Redis to talk to: neither configured nor running locally."""


def _advert_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "up.json"


def advertised_url(settings: Settings) -> str | None:
    """The URL of the embedded Redis a live ``evalq up`` runs, if there is one that answers."""
    path = _advert_path(settings)
    try:
        advert = json.loads(path.read_text())
        os.kill(int(advert["pid"]), 0)
        url = str(advert["redis_url"])
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (OSError, ValueError, KeyError, TypeError, redis.RedisError):
        return None
    return url


@contextlib.contextmanager
def advertise(settings: Settings, url: str) -> Iterator[None]:
    """Advertise ``url`` to other ``evalq`` commands while the block runs."""
    path = _advert_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "redis_url": url}))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def existing_url(settings: Settings) -> str:
    """The Redis an ``evalq`` client command should use, or a NoRedisError saying what to do."""
    if settings.redis_url:
        return settings.redis_url
    url = advertised_url(settings)
    if url is None:
        raise NoRedisError(
            "no Redis to talk to: set EVALQ_REDIS_URL, or run `evalq up` in another terminal "
            "(it starts an embedded Redis that other evalq commands find)"
        )
    return url


@contextlib.contextmanager
def owned_redis(settings: Settings, *, persist: bool = False) -> Iterator[tuple[str, bool]]:
    """Yield ``(url, embedded)``: the configured Redis, or an embedded one started for this block.

    With ``persist``, the embedded Redis keeps its data in ``<data dir>/redis`` across restarts
    (``evalq up``: queued jobs survive a restart); without it, every start is empty (the demo).
    """
    if settings.redis_url:
        yield settings.redis_url, False
        return
    name = "redis" if persist else "redis-ephemeral"
    with EmbeddedRedis(data_dir=Path(settings.data_dir) / name, persist=persist) as server:
        yield server.url, True
