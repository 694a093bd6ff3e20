"""Provider rate limits shared by every worker through Redis: requests in flight, requests/minute.

Each provider (the ``provider`` of an LLM config; ``default`` when it has none) gets its own caps:
``EVALQ_PROVIDER_LIMITS`` for that name, else ``EVALQ_PROVIDER_MAX_CONCURRENCY`` and
``EVALQ_PROVIDER_REQUESTS_PER_MINUTE``; 0 means no cap. ``RateLimits.slot(provider)`` is entered
around exactly one provider request. When a cap is full it raises ``Throttled``, which the error
policy turns into a delayed re-run that spends no retry budget: hitting our own cap is not a
failure.

The caps are Dramatiq's limiters on the workers' Redis. The concurrency cap is ``max_concurrency``
one-slot ``ConcurrentRateLimiter`` mutexes rather than one counter: a counter's TTL is refreshed by
every acquire and release, so a slot held by a worker that died would only come back once the
provider went quiet for a whole TTL; a mutex nobody else can write expires on its own. The TTL is
the LLM actors' time limit plus a margin, which no live holder can outlast.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import redis
from dramatiq.rate_limits import ConcurrentRateLimiter, WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from config.settings import Settings
from middleware.core.errors import Throttled
from middleware.state.keys import limit_key

#: The provider name of an LLM config that names none.
DEFAULT_PROVIDER = "default"

#: Added to the LLM actors' time limit to get how long a slot outlives a dead holder, in seconds:
#: the time limit fires up to a second late, and the release itself takes a moment.
SLOT_TTL_MARGIN_S = 10.0

#: A job turned back by a full concurrency cap runs again after a delay drawn from this range, in
#: seconds: short, because a slot frees as soon as one provider request ends.
CONCURRENCY_RETRY_S = (0.2, 0.6)

#: The requests-per-minute window, in seconds.
WINDOW_S = 60

#: A job turned back by a full requests-per-minute window comes back when the oldest request in
#: the window leaves it, plus up to this many seconds, so waiting jobs do not all return at once.
WINDOW_SPREAD_S = 5.0


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """The caps of one provider; 0 means no cap."""

    max_concurrency: int = 0
    requests_per_minute: int = 0

    @property
    def capped(self) -> bool:
        """Whether any cap applies (when not, a slot costs nothing)."""
        return self.max_concurrency > 0 or self.requests_per_minute > 0


def provider_name(provider: str | None) -> str:
    """The name limits are looked up and kept under: the config's provider, else ``default``."""
    return provider or DEFAULT_PROVIDER


def limits_for(settings: Settings, provider: str | None) -> ProviderLimits:
    """The caps of ``provider``: its ``EVALQ_PROVIDER_LIMITS`` entry, key by key, over the
    process-wide ``EVALQ_PROVIDER_MAX_CONCURRENCY`` / ``EVALQ_PROVIDER_REQUESTS_PER_MINUTE``."""
    own = settings.provider_limits.get(provider_name(provider), {})
    return ProviderLimits(
        max_concurrency=own.get("max_concurrency", settings.provider_max_concurrency),
        requests_per_minute=own.get("requests_per_minute", settings.provider_requests_per_minute),
    )


def slot_ttl_ms(settings: Settings, actors: Iterable[str]) -> int:
    """How long a concurrency slot lives unreleased, in milliseconds: the longest time limit of
    ``actors`` (those that call the provider) plus ``SLOT_TTL_MARGIN_S``."""
    limits = [settings.time_limit_for(actor) for actor in actors] or [settings.time_limit_s]
    return int((max(limits) + SLOT_TTL_MARGIN_S) * 1000)


def window_wait_s(buckets: Sequence[tuple[int, int]], *, now: float, window_s: int) -> float:
    """Seconds until the oldest request in a full window leaves it.

    ``buckets`` are ``(epoch second, requests counted in it)``; a bucket counts until
    ``second + window_s``. Capped at one window (and 0 when the window holds nothing).
    """
    seconds = [second for second, count in buckets if count > 0]
    if not seconds:
        return 0.0
    return min(max(min(seconds) + window_s - now, 0.0), float(window_s))


@dataclass(frozen=True)
class _Guard:
    """The limiters of one provider."""

    name: str
    limits: ProviderLimits
    slots: tuple[ConcurrentRateLimiter, ...]
    window: WindowRateLimiter | None


class RateLimits:
    """Per-provider caps on provider requests, shared by every worker through one Redis.

    Parameters:
      settings(Settings): Where the caps are read from (once per provider name).
      client(redis.Redis): The workers' Redis.
      slot_ttl_ms(int): How long a concurrency slot outlives a holder that never released it
        (a dead worker), in milliseconds; see ``slot_ttl_ms()``.
      rand(Callable[[], float]): Source of jitter in [0, 1).
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        *,
        slot_ttl_ms: int,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.client = client
        self.slot_ttl_ms = slot_ttl_ms
        self.rand = rand
        self._backend = RedisBackend(client=client)
        self._guards: dict[str, _Guard] = {}

    def limits(self, provider: str | None) -> ProviderLimits:
        """The caps that apply to ``provider``."""
        return self._guard(provider).limits

    def slot(self, provider: str | None) -> AbstractContextManager[None]:
        """Hold one request's worth of ``provider``'s caps while the block runs.

        Raises ``Throttled`` on entry when a cap is full. Without caps it touches no Redis.
        """
        guard = self._guard(provider)
        if not guard.limits.capped:
            return contextlib.nullcontext()
        return self._held(guard)

    # --- internals -----------------------------------------------------------------------------

    def _guard(self, provider: str | None) -> _Guard:
        name = provider_name(provider)
        guard = self._guards.get(name)
        if guard is None:
            # Two threads may build the same guard at once; both are equivalent, one is kept.
            guard = self._guards.setdefault(name, self._build(name))
        return guard

    def _build(self, name: str) -> _Guard:
        limits = limits_for(self.settings, name)
        slots = tuple(
            ConcurrentRateLimiter(  # type: ignore[no-untyped-call]
                self._backend,
                limit_key(name, f"concurrency:{index}"),
                limit=1,
                ttl=self.slot_ttl_ms,
            )
            for index in range(limits.max_concurrency)
        )
        window = None
        if limits.requests_per_minute:
            window = WindowRateLimiter(  # type: ignore[no-untyped-call]
                self._backend,
                limit_key(name, "rpm"),
                limit=limits.requests_per_minute,
                window=WINDOW_S,
            )
        return _Guard(name, limits, slots, window)

    @contextlib.contextmanager
    def _held(self, guard: _Guard) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            # Concurrency first: a window request, once counted, cannot be given back.
            if guard.slots:
                self._take_slot(stack, guard)
            if guard.window is not None and not stack.enter_context(
                guard.window.acquire(raise_on_failure=False)
            ):
                raise Throttled(
                    f"{guard.name}:requests_per_minute={guard.limits.requests_per_minute}",
                    retry_after_s=self._window_retry_s(guard.window),
                )
            yield

    def _take_slot(self, stack: contextlib.ExitStack, guard: _Guard) -> None:
        """Acquire one free slot (found with one read, then tried in random order) or throttle."""
        held = self._read([limiter.key for limiter in guard.slots])
        free = [
            limiter
            for limiter, value in zip(guard.slots, held, strict=True)
            if not value or int(value) < 1
        ]
        random.shuffle(free)
        for limiter in free:
            if stack.enter_context(limiter.acquire(raise_on_failure=False)):
                return
        low, high = CONCURRENCY_RETRY_S
        raise Throttled(
            f"{guard.name}:max_concurrency={guard.limits.max_concurrency}",
            retry_after_s=low + (high - low) * self.rand(),
        )

    def _window_retry_s(self, window: WindowRateLimiter) -> float:
        # Dramatiq's own bucket keys, "<key>@<epoch second>", newest first.
        names: list[str] = window._get_keys()  # type: ignore[no-untyped-call]
        counts = self._read(names)
        buckets = [
            (int(name.rsplit("@", 1)[1]), int(count or 0))
            for name, count in zip(names, counts, strict=True)
        ]
        wait = window_wait_s(buckets, now=time.time(), window_s=window.window)
        return max(wait, 0.05) + WINDOW_SPREAD_S * self.rand()

    def _read(self, names: list[str]) -> list[bytes | None]:
        return list(self.client.mget(names))  # type: ignore[arg-type]
