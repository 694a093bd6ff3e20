"""Which caps apply to a provider, how long a slot outlives a dead holder, how long a full
window makes a job wait: resolved from Settings, without Redis."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import Settings
from workers.rate_limits import (
    DEFAULT_PROVIDER,
    SLOT_TTL_MARGIN_S,
    ProviderLimits,
    RateLimits,
    limits_for,
    provider_name,
    slot_ttl_ms,
    window_wait_s,
)


@pytest.fixture(autouse=True)
def _no_inherited_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "EVALQ_PROVIDER_MAX_CONCURRENCY",
        "EVALQ_PROVIDER_REQUESTS_PER_MINUTE",
        "EVALQ_PROVIDER_LIMITS",
        "EVALQ_TIME_LIMIT_S",
        "EVALQ_TIME_LIMITS",
    ):
        monkeypatch.delenv(name, raising=False)


class NoRedis:
    """A Redis client that fails the test if anything touches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Redis was called ({name}) although no cap is configured")


def test_by_default_no_provider_is_capped() -> None:
    limits = limits_for(Settings(), None)
    assert limits == ProviderLimits(max_concurrency=0, requests_per_minute=0)
    assert not limits.capped


def test_a_config_without_a_provider_uses_the_default_provider_name() -> None:
    assert provider_name(None) == DEFAULT_PROVIDER == "default"
    assert provider_name("") == "default"
    assert provider_name("openai") == "openai"


def test_the_process_wide_caps_apply_to_every_provider_without_an_entry_of_its_own() -> None:
    s = Settings(provider_max_concurrency=4, provider_requests_per_minute=600)
    for provider in (None, "openai", "anthropic"):
        assert limits_for(s, provider) == ProviderLimits(4, 600)


def test_a_providers_own_entry_overrides_the_process_wide_caps_key_by_key() -> None:
    s = Settings(
        provider_max_concurrency=4,
        provider_requests_per_minute=600,
        provider_limits={"judge-prov": {"max_concurrency": 1}, "cheap": {"requests_per_minute": 0}},
    )
    assert limits_for(s, "judge-prov") == ProviderLimits(1, 600)
    assert limits_for(s, "cheap") == ProviderLimits(4, 0)
    assert limits_for(s, "other") == ProviderLimits(4, 600)


def test_an_entry_named_default_caps_configs_that_name_no_provider() -> None:
    s = Settings(provider_limits={"default": {"max_concurrency": 2, "requests_per_minute": 30}})
    assert limits_for(s, None) == ProviderLimits(2, 30)
    assert not limits_for(s, "openai").capped


def test_provider_limits_are_read_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVALQ_PROVIDER_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("EVALQ_PROVIDER_LIMITS", '{"judge-prov": {"max_concurrency": 1}}')
    s = Settings()
    assert limits_for(s, "judge-prov").max_concurrency == 1
    assert limits_for(s, None).max_concurrency == 3


def test_a_slot_outlives_a_dead_holder_by_the_longest_llm_actor_time_limit_plus_a_margin() -> None:
    s = Settings(time_limit_s=300, time_limits={"run_live_evaluation": 60, "export_results": 900})
    ttl = slot_ttl_ms(s, ("run_live_evaluation", "run_batch_evaluation"))
    assert ttl == int((300 + SLOT_TTL_MARGIN_S) * 1000)
    ttl = slot_ttl_ms(s, ("run_live_evaluation",))
    assert ttl == int((60 + SLOT_TTL_MARGIN_S) * 1000)


def test_without_caps_a_slot_makes_no_redis_call() -> None:
    limits = RateLimits(Settings(), NoRedis(), slot_ttl_ms=1000)  # type: ignore[arg-type]
    for _ in range(3):
        with limits.slot(None), limits.slot("openai"):
            pass


def test_a_capped_provider_does_not_make_the_uncapped_ones_touch_redis() -> None:
    s = Settings(provider_limits={"judge-prov": {"max_concurrency": 1}})
    limits = RateLimits(s, NoRedis(), slot_ttl_ms=1000)  # type: ignore[arg-type]
    with limits.slot("other"):
        pass
    assert limits.limits("judge-prov") == ProviderLimits(1, 0)


def test_a_full_window_frees_up_when_its_oldest_request_leaves_it() -> None:
    # Requests counted at seconds 100 (1) and 130 (2) of a 60 s window; now is 140.5.
    buckets = [(140, 0), (130, 2), (100, 1), (99, 0)]
    assert window_wait_s(buckets, now=140.5, window_s=60) == pytest.approx(19.5)


def test_the_window_wait_is_never_negative_nor_longer_than_one_window() -> None:
    assert window_wait_s([(100, 1)], now=170.0, window_s=60) == 0.0
    assert window_wait_s([(200, 1)], now=100.0, window_s=60) == 60.0
    assert window_wait_s([], now=100.0, window_s=60) == 0.0
    assert window_wait_s([(100, 0)], now=100.0, window_s=60) == 0.0
