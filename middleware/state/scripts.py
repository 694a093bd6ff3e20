"""Every Lua script evalq runs in Redis, read from ``lua/*.lua`` and registered once per client.

A script file starts with a header naming each ``KEYS[i]`` and ``ARGV[i]``, then turns each into
a named ``local`` (as Dramatiq's ``dispatch.lua`` does). Redis Lua has no ``require``, so steps
several scripts share (Dramatiq's enqueue, the settle of a held delivery, putting held
deliveries back, the dead-letter store's bookkeeping, the job index, membership in a list of job
states) live once in ``lua/shared/<name>.lua`` and a script pulls one in with a line
``-- @include <name>``, replaced by that file's text when the script is loaded. A shared file
may use the locals its header says the including script declares.

``scripts_for(client)`` is the one way to get them: the texts are composed once per process and
registered once per client (``redis.Redis.register_script``; Redis itself loads a script the
first time it is called, and again after a restart, without a second round trip in between).
"""

from __future__ import annotations

import functools
import re
import threading
import weakref
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import redis
from redis.commands.core import Script

#: Where the script files are.
LUA_DIR: Final = Path(__file__).with_name("lua")
#: Where the shared steps are.
SHARED_DIR: Final = LUA_DIR / "shared"

_INCLUDE = re.compile(r"^-- @include (?P<name>[a-z_]+)[ \t]*$", re.MULTILINE)


class ScriptFileError(RuntimeError):
    """A script file is missing, or includes a shared step that does not exist (a bug in evalq,
    never a user's doing)."""


@functools.cache
def script_text(name: str) -> str:
    """The text of script ``name`` (``lua/<name>.lua``) with its ``-- @include`` lines replaced by
    the shared steps they name."""
    path = LUA_DIR / f"{name}.lua"
    if not path.is_file():
        raise ScriptFileError(f"no Lua script {path}")
    return _INCLUDE.sub(lambda m: _shared(m.group("name"), path), path.read_text("utf-8"))


def _shared(name: str, including: Path) -> str:
    path = SHARED_DIR / f"{name}.lua"
    if not path.is_file():
        raise ScriptFileError(f"{including}: includes {name!r}, but there is no {path}")
    text = path.read_text("utf-8")
    if _INCLUDE.search(text):
        raise ScriptFileError(f"{path}: a shared step cannot include another")
    return f"-- (shared/{name}.lua)\n{text.rstrip()}\n-- (end of shared/{name}.lua)"


@dataclass(frozen=True)
class Scripts:
    """Every evalq script, registered on one client; each is called as
    ``script(keys=[...], args=[...])`` (``client=pipeline`` to queue it in a pipeline).

    The ``(keys, args)`` of each are built next to the code that owns the idea: ``submit`` in
    ``workers.deduplication``, ``send`` in ``middleware.state.broker``, ``start`` and
    ``transition`` in ``middleware.state.jobs``, ``retry`` and ``finish`` in
    ``middleware.state.settlement``, ``redeliver`` and ``reclaim`` in ``middleware.redelivery``,
    ``abort`` in ``middleware.state.aborts``, the ``dead_letter_*`` scripts in
    ``middleware.state.dead_letter_scripts``, ``job_page`` and ``job_index_trim`` in
    ``middleware.state.job_index``.
    """

    submit: Script
    send: Script
    start: Script
    transition: Script
    retry: Script
    finish: Script
    abort: Script
    dead_letter_add: Script
    dead_letter_trim: Script
    dead_letter_redrive: Script
    dead_letter_purge: Script
    dead_letter_page: Script
    job_page: Script
    job_index_trim: Script
    redeliver: Script
    reclaim: Script

    @classmethod
    def register(cls, client: redis.Redis) -> Scripts:
        """Register every script on ``client`` (no round trip: Redis loads each on first use)."""
        return cls(**{f.name: client.register_script(script_text(f.name)) for f in fields(cls)})

    def load(self, client: redis.Redis) -> None:
        """Load every script into the server now, in one round trip (needed only before
        ``EVALSHA`` is sent without redis-py's check, for instance in a pipeline)."""
        pipe = client.pipeline(transaction=False)
        for f in fields(self):
            pipe.script_load(getattr(self, f.name).script)
        pipe.execute()


_REGISTERED: weakref.WeakKeyDictionary[Any, Scripts] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def scripts_for(client: redis.Redis) -> Scripts:
    """The scripts registered on ``client``: registered on the first call for a client, the same
    object on every later one."""
    with _LOCK:
        registered = _REGISTERED.get(client)
        if registered is None:
            registered = _REGISTERED[client] = Scripts.register(client)
        return registered
