"""Every Lua script compiles in a real Redis, and one round trip loads them all."""

from __future__ import annotations

import pytest
import redis

from middleware.state.scripts import Scripts, script_text, scripts_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", sorted(Scripts.__dataclass_fields__))
def test_every_script_compiles_in_redis(redis_client: redis.Redis, name: str) -> None:
    sha = redis_client.script_load(script_text(name))
    assert sha == getattr(scripts_for(redis_client), name).sha


def test_load_puts_every_script_in_the_server(redis_client: redis.Redis) -> None:
    redis_client.script_flush()
    registered = scripts_for(redis_client)
    registered.load(redis_client)
    shas = [getattr(registered, name).sha for name in Scripts.__dataclass_fields__]
    assert redis_client.script_exists(*shas) == [True] * len(shas)


def test_a_script_the_server_forgot_is_loaded_again_on_its_next_call(
    redis_client: redis.Redis,
) -> None:
    registered = scripts_for(redis_client)
    page = ["evalq:dlq:index:all"], ["evalq:dlq:record:", "+", "-", 10]
    assert registered.dead_letter_page(*page) == [0]
    redis_client.script_flush()  # as after a restart of Redis
    assert registered.dead_letter_page(*page) == [0]
