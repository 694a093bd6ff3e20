"""Redis addresses evalq accepts: one node (``redis://``, ``rediss://``, ``unix://``) or a Sentinel
set that names the current primary (``redis+sentinel://``, ``rediss+sentinel://``).

A Sentinel URL lists the sentinels, then the master's name, then an optional database::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db][?options]

Its credentials, database, scheme (``rediss+`` is TLS) and query options are those of the data
nodes, the primary and its replicas; the sentinels' own password is
``EVALQ_REDIS_SENTINEL_PASSWORD``, never part of a URL. ``compose_sentinel_url`` turns
``EVALQ_REDIS_SENTINELS`` and ``EVALQ_REDIS_SENTINEL_MASTER`` into this one form, so that
everything past the settings sees one string, as it does for a single node. Pure parsing: no
Redis is imported or contacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

#: Schemes of a single Redis node.
NODE_SCHEMES = ("redis://", "rediss://", "unix://")
#: Schemes of a Sentinel set; ``rediss+`` asks for TLS to the data nodes.
SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
#: Sentinel's own default port, used when a sentinel is given without one.
DEFAULT_SENTINEL_PORT = 26379

_MASTER_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class SentinelAddress:
    """A parsed Sentinel URL.

    Attributes:
      sentinels: ``(host, port)`` of each sentinel, in the order given.
      master: The name the sentinels monitor the primary under.
      db: The database number on the data nodes.
      username, password: The data nodes' credentials (None: none).
      tls: Whether the data nodes are reached over TLS.
      query: The URL's query string (data-node connection options), without the ``?``.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    query: str = ""


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a Sentinel set rather than one node."""
    return url.startswith(SENTINEL_SCHEMES)


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as ``((host, port), ...)``; a missing port is 26379. Raises
    ``ValueError`` saying which entry is wrong."""
    found = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"empty sentinel address in {text!r}; write host:port,host:port")
        host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        host = host.strip("[]")
        if not host:
            raise ValueError(f"sentinel {entry!r} has no host; write host:port")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"sentinel {entry!r}: port must be a number from 1 to 65535")
        found.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
    return tuple(found)


def parse_sentinel_url(url: str) -> SentinelAddress:
    """A ``SentinelAddress`` from ``redis+sentinel://...``; ``ValueError`` saying what is wrong
    (never quoting a password)."""
    if not is_sentinel_url(url):
        raise ValueError(f"a Sentinel URL starts with {' or '.join(SENTINEL_SCHEMES)}")
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    if not hosts:
        raise ValueError("names no sentinel: write redis+sentinel://host:port,.../master_name")
    path = [piece for piece in parts.path.split("/") if piece]
    if not path:
        raise ValueError("names no master: write redis+sentinel://host:port,.../master_name[/db]")
    if len(path) > 2 or not _MASTER_NAME.match(path[0]):
        raise ValueError("the path must be /master_name or /master_name/db")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"database {path[1]!r} is not a number")
    username, password = _credentials(credentials)
    return SentinelAddress(
        sentinels=parse_sentinels(hosts),
        master=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        tls=url.startswith("rediss+"),
        query=parts.query,
    )


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    if not colon:  # redis://secret@host: a bare word is a password, as redis-py reads it
        return None, unquote(user)
    return unquote(user) or None, unquote(password)


def compose_sentinel_url(sentinels: str, master: str, node_url: str | None = None) -> str:
    """The Sentinel URL of ``EVALQ_REDIS_SENTINELS`` and ``EVALQ_REDIS_SENTINEL_MASTER``, with the
    credentials, database, TLS and options of ``node_url`` (a ``redis://`` or ``rediss://`` URL,
    whose host is not used: the sentinels say where the primary is). Raises ``ValueError``."""
    if not _MASTER_NAME.match(master):
        raise ValueError(
            f"EVALQ_REDIS_SENTINEL_MASTER {master!r}: use letters, digits, '.', '_' or '-'"
        )
    hosts = ",".join(f"{host}:{port}" for host, port in parse_sentinels(sentinels))
    if node_url is None:
        return f"redis+sentinel://{hosts}/{master}"
    if not node_url.startswith(("redis://", "rediss://")):
        raise ValueError("with Sentinels, EVALQ_REDIS_URL must be a redis:// or rediss:// URL")
    parts = urlsplit(node_url)
    credentials, at, _ = parts.netloc.rpartition("@")
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"EVALQ_REDIS_URL: database {db!r} is not a number")
    scheme = "rediss+sentinel" if node_url.startswith("rediss://") else "redis+sentinel"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{credentials}{at}{hosts}/{master}/{db}{query}"
