"""The LLM judge through the real openai SDK against the simulated provider, counted there.

Every failure must cost exactly one provider request: the SDK runs with max_retries=0 and
evalq's error-policy middleware is the only retry owner.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import openai
import pytest

from config.settings import Settings
from tests.support.requests import llm_request
from workers.demo.provider import Reply, SimulatedProvider, demo_fault
from workers.evaluations.llm_judge import JudgeOutputError, judge, make_client, target_key
from workers.evaluations.models import EvaluationRequest, EvaluationResult

API_KEY = "sk-test-secret"


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as provider:
        yield provider


@pytest.fixture
def client(provider: SimulatedProvider) -> openai.OpenAI:
    return client_for(provider, timeout_s=1.0)


def client_for(provider: SimulatedProvider, *, timeout_s: float) -> openai.OpenAI:
    settings = Settings(
        provider_base_url=provider.base_url,
        provider_api_key=API_KEY,
        provider_timeout_s=timeout_s,
    )
    return make_client(settings)


def make_request(
    metric: str = "binary", *, output_mode: str = "json", model: str = "sim-judge", **config: Any
) -> EvaluationRequest:
    return EvaluationRequest.model_validate(
        llm_request(metric, output_mode=output_mode, model=model, **config)
    )


def scripted(provider: SimulatedProvider, replies: list[Reply], **kwargs: Any) -> EvaluationRequest:
    request = make_request(**kwargs)
    provider.script(target_key(request), replies)
    return request


# --- successful judgements --------------------------------------------------------------------


def test_a_binary_judgement_in_json_mode_makes_one_request_and_returns_the_verdict(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(provider, [Reply.ok(passed=True, reason="Clear and correct.")])

    result = judge(request, client)

    assert (result.has_passed, result.score, result.reason) == (True, 1.0, "Clear and correct.")
    (record,) = provider.requests_for(target_key(request))
    assert (record.status, record.model, record.tools_offered) == (200, "sim-judge", False)
    assert provider.count() == 1
    assert result.metadata["total_tokens"] > 0


def test_a_binary_judgement_in_tools_mode_makes_one_request_and_returns_the_verdict(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(
        provider, [Reply.ok(passed=False, reason="Unsafe advice.")], output_mode="tools"
    )

    result = judge(request, client)

    assert (result.has_passed, result.score, result.reason) == (False, 0.0, "Unsafe advice.")
    (record,) = provider.requests_for(target_key(request))
    assert record.tools_offered is True
    assert result.metadata["output_mode"] == "tools"


@pytest.mark.parametrize("output_mode", ["json", "tools"])
def test_a_rating_judgement_scales_the_normalized_score(
    provider: SimulatedProvider, client: openai.OpenAI, output_mode: str
) -> None:
    request = scripted(
        provider,
        [Reply.ok(rating=7)],
        output_mode=output_mode,
        metric="rating",
        min_rating=0,
        max_rating=10,
    )

    result = judge(request, client)

    assert (result.score, result.normalized_score, result.has_passed) == (7.0, 70.0, True)
    assert provider.count(target_key(request)) == 1


@pytest.mark.parametrize("output_mode", ["json", "tools"])
def test_an_unscripted_rating_stays_inside_the_scale_the_judge_asks_for(
    provider: SimulatedProvider, client: openai.OpenAI, output_mode: str
) -> None:
    results: list[EvaluationResult] = []
    for _ in range(20):
        request = make_request("rating", output_mode=output_mode, min_rating=10, max_rating=13)
        results.append(judge(request, client))

    assert all(10 <= r.score <= 13 for r in results)
    assert provider.count() == 20


# --- provider failures: each costs exactly one request ------------------------------------


def test_a_server_error_raises_internal_server_error_after_exactly_one_request(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(provider, [Reply.server_error()])

    with pytest.raises(openai.InternalServerError) as raised:
        judge(request, client)

    assert raised.value.status_code == 500
    assert provider.count(target_key(request)) == 1


def test_a_rate_limit_raises_rate_limit_error_with_a_readable_retry_after_after_one_request(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(provider, [Reply.rate_limited(retry_after_s=1)])

    with pytest.raises(openai.RateLimitError) as raised:
        judge(request, client)

    assert raised.value.response.headers["Retry-After"] == "1"
    assert raised.value.response.headers["retry-after-ms"] == "1000"
    assert raised.value.code == "rate_limit_exceeded"
    assert provider.count(target_key(request)) == 1


def test_a_request_hanging_beyond_the_client_timeout_raises_api_timeout_error_once(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(provider, [Reply.hang(10)])

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        judge(request, client)

    assert time.monotonic() - started < 3
    assert provider.count(target_key(request)) == 1


def test_invalid_json_content_raises_judge_output_error(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(provider, [Reply.content("The output is fine, I think.")])

    with pytest.raises(JudgeOutputError, match="not valid JSON") as raised:
        judge(request, client)

    assert raised.value.raw == "The output is fine, I think."
    assert provider.count(target_key(request)) == 1


def test_an_invalid_tool_call_raises_judge_output_error(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(
        provider, [Reply.tool_call('{"passed": "yes", "reason": "x"}')], output_mode="tools"
    )

    with pytest.raises(JudgeOutputError, match="passed: Input should be a valid boolean"):
        judge(request, client)


def test_tools_not_supported_raises_bad_request_error_with_the_providers_message(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(provider, [Reply.tools_not_supported()], output_mode="tools")

    with pytest.raises(openai.BadRequestError) as raised:
        judge(request, client)

    assert "tools is not supported in this model" in str(raised.value)
    assert provider.count(target_key(request)) == 1


@pytest.mark.parametrize(
    ("reply", "error", "status", "code"),
    [
        (Reply.insufficient_quota(), openai.RateLimitError, 429, "insufficient_quota"),
        (Reply.unauthorized(), openai.AuthenticationError, 401, "invalid_api_key"),
        (Reply.overloaded(), openai.InternalServerError, 529, None),
        (Reply.overloaded(status=503), openai.InternalServerError, 503, None),
    ],
)
def test_each_common_provider_failure_maps_to_its_openai_exception(
    provider: SimulatedProvider,
    client: openai.OpenAI,
    reply: Reply,
    error: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    request = scripted(provider, [reply])

    with pytest.raises(error) as raised:
        judge(request, client)

    assert (raised.value.status_code, raised.value.code) == (status, code)
    assert provider.count(target_key(request)) == 1


# --- the provider itself ------------------------------------------------------------------


def test_the_authorization_header_arrives_but_the_key_is_never_recorded(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    judge(make_request(), client)

    (record,) = provider.requests_for()
    assert record.authorized is True
    assert API_KEY not in repr(provider.requests_for())
    assert "test-secret" not in json.dumps(vars(record), default=str)


def test_stop_returns_promptly_while_a_request_hangs() -> None:
    provider = SimulatedProvider().start()
    request = scripted(provider, [Reply.hang(60)])
    client = client_for(provider, timeout_s=60)
    outcome: list[Exception] = []

    def call() -> None:
        try:
            judge(request, client)
        except Exception as error:  # the outcome is asserted below
            outcome.append(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 5
    while provider.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    provider.stop()
    assert time.monotonic() - started < 2

    caller.join(timeout=5)
    assert not caller.is_alive()
    assert isinstance(outcome[0], openai.APIConnectionError)
    (record,) = provider.requests_for()
    assert record.status is None  # cut short, never answered


def test_a_script_answers_in_order_and_repeats_its_last_reply(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    request = scripted(provider, [Reply.server_error(), Reply.ok(passed=True)])

    with pytest.raises(openai.InternalServerError):
        judge(request, client)
    assert judge(request, client).has_passed is True
    assert judge(request, client).has_passed is True

    statuses = [r.status for r in provider.requests_for(target_key(request))]
    assert statuses == [500, 200, 200]


def test_the_provider_reports_the_peak_of_concurrent_requests(
    provider: SimulatedProvider, client: openai.OpenAI
) -> None:
    requests = [scripted(provider, [Reply.slow(0.3)]) for _ in range(3)]
    callers = [threading.Thread(target=judge, args=(r, client)) for r in requests]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()

    assert provider.max_in_flight == 3
    assert all(
        r.ended_at is not None and r.ended_at - r.started_at >= 0.25
        for r in provider.requests_for()
    )

    provider.reset()
    assert (provider.count(), provider.max_in_flight) == (0, 0)


def test_unknown_paths_get_a_404_in_openai_error_shape(provider: SimulatedProvider) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(provider.base_url + "/audio/speech", data=b"{}", timeout=2)

    assert raised.value.code == 404
    body = json.loads(raised.value.read())
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_the_provider_lists_its_models(provider: SimulatedProvider, client: openai.OpenAI) -> None:
    assert {model.id for model in client.models.list()} >= {"sim-judge", "legacy-judge"}


# --- the demo behaviour ---------------------------------------------------------------------


def demo_targets(count: int) -> list[str]:
    """Stable (evaluation, target) keys, the same on every run."""
    evaluation = uuid5(NAMESPACE_URL, "evalq-demo")
    return [f"{evaluation}/{uuid5(NAMESPACE_URL, f'target-{i}')}" for i in range(count)]


def test_the_demo_mix_is_deterministic_and_close_to_its_documented_shares() -> None:
    targets = demo_targets(4000)
    mix = Counter(demo_fault(t) for t in targets)

    assert [demo_fault(t) for t in targets[:50]] == [demo_fault(t) for t in targets[:50]]
    assert mix["rate_limited_once"] / 4000 == pytest.approx(0.08, abs=0.015)
    assert mix["server_error_twice"] / 4000 == pytest.approx(0.05, abs=0.015)
    assert mix["slow"] / 4000 == pytest.approx(0.05, abs=0.015)


def test_the_demo_legacy_judge_refuses_tools_but_answers_json() -> None:
    with SimulatedProvider(behaviour="demo") as provider:
        client = client_for(provider, timeout_s=5)
        tools = make_request(output_mode="tools", model="legacy-judge")
        with pytest.raises(openai.BadRequestError, match="tools is not supported"):
            judge(tools, client)
        assert provider.count(target_key(tools)) == 1

        json_mode = make_request(model="legacy-judge")
        while demo_fault(target_key(json_mode)) != "ok":
            json_mode = make_request(model="legacy-judge")
        assert judge(json_mode, client).reason
        assert provider.count(target_key(json_mode)) == 1


def test_a_demo_target_that_is_rate_limited_once_succeeds_on_its_second_request() -> None:
    with SimulatedProvider(behaviour="demo") as provider:
        client = client_for(provider, timeout_s=5)
        request = make_request()
        while demo_fault(target_key(request)) != "rate_limited_once":
            request = make_request()

        with pytest.raises(openai.RateLimitError) as raised:
            judge(request, client)
        assert raised.value.response.headers["Retry-After"] == "1"
        assert judge(request, client).reason
        assert provider.count(target_key(request)) == 2
