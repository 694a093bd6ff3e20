"""Sentinel addresses: the URL form, the settings form, and the errors a person reads."""

from __future__ import annotations

import pytest

from config.redis_url import (
    SentinelAddress,
    compose_sentinel_url,
    is_sentinel_url,
    parse_sentinel_url,
    parse_sentinels,
)
from config.settings import SettingsError, read_settings


def test_a_sentinel_url_names_its_sentinels_master_database_and_the_data_nodes_password() -> None:
    address = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,sentinel-b/evalq/3")
    assert address == SentinelAddress(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26379)),
        master="evalq",
        db=3,
        password="s@cret",
    )


def test_rediss_sentinel_asks_for_tls_and_keeps_its_options() -> None:
    address = parse_sentinel_url("rediss+sentinel://app:pw@h:5000/primary?ssl_cert_reqs=none")
    assert (address.tls, address.username, address.db) == (True, "app", 0)
    assert address.query == "ssl_cert_reqs=none"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h:1/", "names no master"),
        ("redis+sentinel:///evalq", "names no sentinel"),
        ("redis+sentinel://h:port/evalq", "port must be a number"),
        ("redis+sentinel://h:1,,k:2/evalq", "empty sentinel address"),
        ("redis+sentinel://h:1/evalq/zero", "is not a number"),
        ("redis+sentinel://h:1/evalq/0/more", "/master_name or /master_name/db"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_sentinel_url(url)


def test_sentinels_without_a_port_use_26379() -> None:
    assert parse_sentinels("a, b:1, [::1]:2") == (("a", 26379), ("b", 1), ("::1", 2))


def test_the_settings_form_becomes_one_sentinel_url_with_the_data_nodes_options() -> None:
    url = compose_sentinel_url("a:1,b:2", "evalq", "rediss://:pw@ignored:6380/2?ssl_cert_reqs=none")
    assert url == "rediss+sentinel://:pw@a:1,b:2/evalq/2?ssl_cert_reqs=none"
    assert is_sentinel_url(url) and parse_sentinel_url(url).password == "pw"
    assert compose_sentinel_url("a", "evalq") == "redis+sentinel://a:26379/evalq"


def test_settings_accept_either_form_and_give_everything_past_them_one_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVALQ_REDIS_SENTINELS", "s1:26379,s2:26379")
    monkeypatch.setenv("EVALQ_REDIS_SENTINEL_MASTER", "evalq")
    monkeypatch.setenv("EVALQ_REDIS_SENTINEL_PASSWORD", "sentinel-secret")
    settings = read_settings()
    assert settings.redis_url == "redis+sentinel://s1:26379,s2:26379/evalq"
    # A child process handed that URL back (evalq up, evalq demo) reads the same settings.
    assert read_settings(redis_url=settings.redis_url).redis_url == settings.redis_url
    assert "sentinel-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"EVALQ_REDIS_SENTINELS": "s1:1"}, "EVALQ_REDIS_SENTINELS and EVALQ_REDIS_SENTINEL_"),
        ({"EVALQ_REDIS_SENTINEL_MASTER": "evalq"}, "go together: set both"),
        ({"EVALQ_REDIS_SENTINELS": "s1:x", "EVALQ_REDIS_SENTINEL_MASTER": "m"},
         "EVALQ_REDIS_SENTINELS: .*port must be a number"),
        ({"EVALQ_REDIS_SENTINELS": "s1:1", "EVALQ_REDIS_SENTINEL_MASTER": "m m"},
         "EVALQ_REDIS_SENTINEL_MASTER 'm m'"),
        ({"EVALQ_REDIS_SENTINELS": "s1:1", "EVALQ_REDIS_SENTINEL_MASTER": "m",
          "EVALQ_REDIS_URL": "unix:///tmp/redis.sock"}, "must be a redis:// or rediss:// URL"),
        ({"EVALQ_REDIS_SENTINELS": "s1:1", "EVALQ_REDIS_SENTINEL_MASTER": "m",
          "EVALQ_REDIS_URL": "redis+sentinel://other:1/m"}, "names other sentinels"),
        ({"EVALQ_REDIS_URL": "redis+sentinel://:hunter2@h:1/"}, "EVALQ_REDIS_URL: .*no master"),
        ({"EVALQ_REDIS_URL": "sentinel://h:1/m"}, "EVALQ_REDIS_URL: .*redis\\+sentinel://"),
    ],
)  # fmt: skip
def test_bad_sentinel_settings_name_the_variable_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=says) as raised:
        read_settings()
    assert "hunter2" not in str(raised.value)
