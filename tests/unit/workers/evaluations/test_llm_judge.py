"""The LLM judge's prompt, verdict parsing and result shaping, without a network."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import openai
import pytest
from openai.types.chat import ChatCompletion

from config.settings import Settings
from middleware.core.errors import Throttled
from workers.evaluations.llm_judge import (
    RAW_LIMIT,
    TARGET_HEADER,
    VERDICT_TOOL,
    JudgeOutputError,
    build_messages,
    judge,
    make_client,
    parse_verdict,
    target_key,
    verdict_schema,
)
from workers.evaluations.models import EvaluationRequest

USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


def make_request(
    metric: str = "binary",
    *,
    output_mode: str = "json",
    target: dict[str, Any] | None = None,
    **config: Any,
) -> EvaluationRequest:
    return EvaluationRequest.model_validate(
        {
            "evaluation": {
                "uuid": str(uuid4()),
                "name": "politeness",
                "type": "llm",
                "metric": metric,
                "config": {
                    "model": "judge-model",
                    "criteria": "The answer is polite.",
                    "output_mode": output_mode,
                    **config,
                },
            },
            "target": {"uuid": str(uuid4()), "actual_output": "Hello there!", **(target or {})},
        }
    )


def completion(
    *,
    content: str | None = None,
    arguments: str | None = None,
    tool_name: str = VERDICT_TOOL,
    finish_reason: str = "stop",
    refusal: str | None = None,
    usage: dict[str, int] | None = USAGE,
) -> ChatCompletion:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if arguments is not None:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": tool_name, "arguments": arguments},
            }
        ]
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "judge-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": usage,
        }
    )


class FakeClient:
    """Stands in for openai.OpenAI: records the create() arguments, returns a fixed completion."""

    def __init__(self, response: ChatCompletion) -> None:
        self.calls: list[dict[str, Any]] = []
        self.base_url = SimpleNamespace(host="judge.example")
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))
        self._response = response

    def _create(self, **kwargs: Any) -> ChatCompletion:
        self.calls.append(kwargs)
        return self._response


def run(request: EvaluationRequest, response: ChatCompletion) -> Any:
    return judge(request, FakeClient(response))  # type: ignore[arg-type]


# --- results ---------------------------------------------------------------------------------


def test_a_passing_binary_verdict_scores_one_and_keeps_the_judges_reason() -> None:
    request = make_request()
    result = run(request, completion(content='{"passed": true, "reason": "Polite."}'))

    assert result.evaluation_uuid == str(request.evaluation.uuid)
    assert result.target_uuid == str(request.target.uuid)
    assert (result.score, result.normalized_score, result.has_passed) == (1.0, 100.0, True)
    assert result.reason == "Polite."


def test_a_failing_binary_verdict_scores_zero() -> None:
    result = run(make_request(), completion(content='{"passed": false, "reason": "Rude."}'))

    assert (result.score, result.normalized_score, result.has_passed) == (0.0, 0.0, False)


def test_a_rating_is_scaled_linearly_over_its_scale() -> None:
    request = make_request("rating", min_rating=1, max_rating=5)
    result = run(request, completion(content='{"rating": 4, "reason": "Mostly polite."}'))

    assert result.score == 4.0
    assert result.normalized_score == 75.0
    assert result.has_passed is True


@pytest.mark.parametrize(("rating", "passed"), [(1, False), (2, False), (3, True), (5, True)])
def test_a_rating_passes_from_the_upper_half_of_the_scale_by_default(
    rating: int, passed: bool
) -> None:
    request = make_request("rating", min_rating=1, max_rating=5)
    answer = json.dumps({"rating": rating, "reason": "r"})

    assert run(request, completion(content=answer)).has_passed is passed


def test_a_rating_passes_at_the_configured_pass_rating() -> None:
    request = make_request("rating", min_rating=0, max_rating=10, pass_rating=8)

    low = run(request, completion(content='{"rating": 7, "reason": "r"}'))
    high = run(request, completion(content='{"rating": 8, "reason": "r"}'))

    assert (low.has_passed, low.normalized_score) == (False, 70.0)
    assert (high.has_passed, high.normalized_score) == (True, 80.0)


def test_the_metadata_names_the_judge_and_counts_tokens_and_time() -> None:
    request = make_request(output_mode="tools", provider="acme")
    result = run(request, completion(arguments='{"passed": true, "reason": "ok"}'))

    assert result.metadata == {
        "metric": "binary",
        "model": "judge-model",
        "output_mode": "tools",
        "provider": "acme",
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "duration_ms": result.metadata["duration_ms"],
    }
    assert isinstance(result.metadata["duration_ms"], int)


def test_without_a_configured_provider_the_metadata_names_the_providers_host() -> None:
    result = run(make_request(), completion(content='{"passed": true, "reason": "ok"}'))

    assert result.metadata["provider"] == "judge.example"


def test_a_response_without_usage_leaves_the_token_counts_empty() -> None:
    response = completion(content='{"passed": true, "reason": "ok"}', usage=None)
    result = run(make_request(), response)

    assert result.metadata["prompt_tokens"] is None
    assert result.metadata["total_tokens"] is None


# --- the request sent ------------------------------------------------------------------------


def test_json_mode_asks_for_a_json_object_with_the_configured_temperature_and_target() -> None:
    request = make_request(temperature=0.3)
    client = FakeClient(completion(content='{"passed": true, "reason": "ok"}'))
    judge(request, client)  # type: ignore[arg-type]

    (call,) = client.calls
    assert call["model"] == "judge-model"
    assert call["temperature"] == 0.3
    assert call["response_format"] == {"type": "json_object"}
    assert "tools" not in call
    expected_target = f"{request.evaluation.uuid}/{request.target.uuid}"
    assert call["extra_headers"] == {TARGET_HEADER: expected_target}
    assert target_key(request) == expected_target


def test_tools_mode_offers_one_verdict_tool_and_forces_it() -> None:
    request = make_request("rating", output_mode="tools", min_rating=1, max_rating=10)
    client = FakeClient(completion(arguments='{"rating": 7, "reason": "ok"}'))
    judge(request, client)  # type: ignore[arg-type]

    (call,) = client.calls
    (tool,) = call["tools"]
    assert tool["function"]["name"] == VERDICT_TOOL
    assert tool["function"]["parameters"]["properties"]["rating"]["maximum"] == 10
    assert call["tool_choice"] == {"type": "function", "function": {"name": VERDICT_TOOL}}
    assert "response_format" not in call


def test_the_system_message_states_the_criteria_and_the_exact_answer_shape() -> None:
    system, _ = build_messages(make_request(), make_request().evaluation.parsed_config())
    assert "The answer is polite." in system["content"]
    assert '{"passed": <true or false>' in system["content"]
    assert "JSON" in system["content"]  # json_object mode requires the word in the prompt

    request = make_request("rating", min_rating=0, max_rating=4)
    system, _ = build_messages(request, request.evaluation.parsed_config())
    assert '"rating": <integer from 0 to 4>' in system["content"]


def test_the_user_message_holds_input_actual_and_expected_output_when_given() -> None:
    full = make_request(target={"input": "Greet me.", "expected_output": "Hi!"})
    _, user = build_messages(full, full.evaluation.parsed_config())
    assert user["content"] == (
        "<input>\nGreet me.\n</input>\n\n"
        "<actual_output>\nHello there!\n</actual_output>\n\n"
        "<expected_output>\nHi!\n</expected_output>"
    )

    bare = make_request()
    _, user = build_messages(bare, bare.evaluation.parsed_config())
    assert user["content"] == "<actual_output>\nHello there!\n</actual_output>"


def test_the_rating_schema_bounds_the_rating_and_requires_both_fields() -> None:
    config = make_request("rating", min_rating=2, max_rating=9).evaluation.parsed_config()
    schema = verdict_schema(config)

    assert schema["properties"]["rating"] | {"description": ""} == {
        "type": "integer",
        "minimum": 2,
        "maximum": 9,
        "description": "",
    }
    assert schema["required"] == ["rating", "reason"]


# --- answers that do not fit ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("not json", "not valid JSON"),
        ("[true]", "JSON list, not an object"),
        ('{"passed": "true", "reason": "x"}', "passed: Input should be a valid boolean"),
        ('{"passed": 1, "reason": "x"}', "passed: Input should be a valid boolean"),
        ('{"passed": true}', "reason: Field required"),
        ('{"passed": true, "reason": 5}', "reason: Input should be a valid string"),
    ],
)
def test_a_binary_answer_that_does_not_fit_is_a_judge_output_error(
    answer: str, problem: str
) -> None:
    with pytest.raises(JudgeOutputError, match=problem) as raised:
        run(make_request(), completion(content=answer))
    assert raised.value.raw == answer


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ('{"rating": 6, "reason": "x"}', r"rating 6 is outside the scale 1\.\.5"),
        ('{"rating": 0, "reason": "x"}', r"rating 0 is outside the scale 1\.\.5"),
        ('{"rating": 4.0, "reason": "x"}', "rating: Input should be a valid integer"),
        ('{"rating": "4", "reason": "x"}', "rating: Input should be a valid integer"),
        ('{"rating": true, "reason": "x"}', "rating: Input should be a valid integer"),
    ],
)
def test_a_rating_answer_that_does_not_fit_is_a_judge_output_error(
    answer: str, problem: str
) -> None:
    with pytest.raises(JudgeOutputError, match=problem):
        run(make_request("rating"), completion(content=answer))


def test_an_empty_answer_is_a_judge_output_error() -> None:
    with pytest.raises(JudgeOutputError, match="empty"):
        run(make_request(), completion(content="   "))


def test_an_answer_cut_off_at_the_token_limit_says_so() -> None:
    response = completion(content='{"passed": tr', finish_reason="length")
    with pytest.raises(JudgeOutputError, match="cut off at the token limit"):
        run(make_request(), response)


def test_tools_mode_without_the_verdict_tool_call_is_a_judge_output_error() -> None:
    request = make_request(output_mode="tools")
    with pytest.raises(JudgeOutputError, match=f"did not call {VERDICT_TOOL}") as raised:
        run(request, completion(content="I think it passes."))
    assert raised.value.raw == "I think it passes."

    other_tool = completion(arguments='{"passed": true, "reason": "x"}', tool_name="other")
    with pytest.raises(JudgeOutputError, match=f"did not call {VERDICT_TOOL}"):
        run(request, other_tool)


def test_invalid_tool_arguments_are_a_judge_output_error() -> None:
    request = make_request(output_mode="tools")
    with pytest.raises(JudgeOutputError, match="not valid JSON"):
        run(request, completion(arguments='{"passed": true,'))


def test_a_judge_output_error_keeps_only_the_start_of_a_long_answer() -> None:
    answer = "x" * 5000
    with pytest.raises(JudgeOutputError) as raised:
        run(make_request(), completion(content=answer))

    assert raised.value.raw.startswith("x" * RAW_LIMIT)
    assert len(raised.value.raw) <= RAW_LIMIT + 1
    assert isinstance(raised.value, ValueError)


def test_a_refusal_is_a_content_filter_error_not_an_output_error() -> None:
    refused = completion(content=None, refusal="I can't help with that.")
    with pytest.raises(openai.ContentFilterFinishReasonError):
        run(make_request(), refused)

    filtered = completion(content="", finish_reason="content_filter")
    with pytest.raises(openai.ContentFilterFinishReasonError):
        parse_verdict(filtered, make_request().evaluation.parsed_config())


# --- the client ------------------------------------------------------------------------------


def test_the_client_never_retries_and_uses_the_configured_provider() -> None:
    settings = Settings(
        provider_base_url="http://127.0.0.1:9/v1",
        provider_api_key="sk-test-secret",
        provider_timeout_s=2.5,
    )
    client = make_client(settings)

    assert client.max_retries == 0
    assert client.timeout == 2.5
    assert str(client.base_url) == "http://127.0.0.1:9/v1/"
    assert client.api_key == "sk-test-secret"


def test_the_client_is_built_without_a_key_so_the_provider_can_answer_401() -> None:
    client = make_client(Settings(provider_base_url="http://127.0.0.1:9/v1", provider_api_key=""))

    assert client.api_key == "unset"


# --- rate-limit slot -------------------------------------------------------------------------


def test_the_slot_is_held_around_the_provider_request_and_named_after_the_configs_provider() -> (
    None
):
    request = make_request(provider="judge-prov")
    held: list[str] = []
    seen: list[str | None] = []

    @contextlib.contextmanager
    def slot(provider: str | None) -> Iterator[None]:
        seen.append(provider)
        held.append("enter")
        yield
        held.append("exit")

    client = FakeClient(completion(content='{"passed": true, "reason": "ok"}'))
    create = client.chat.completions.create
    client.chat.completions.create = lambda **kw: (held.append("request"), create(**kw))[1]

    result = judge(request, client, slot=slot)  # type: ignore[arg-type]

    assert seen == ["judge-prov"]
    assert held == ["enter", "request", "exit"]
    assert result.has_passed is True


def test_a_throttled_slot_sends_no_request_and_propagates_unchanged() -> None:
    def full(provider: str | None) -> contextlib.AbstractContextManager[None]:
        raise Throttled("default:max_concurrency=1", retry_after_s=0.3)

    client = FakeClient(completion(content='{"passed": true, "reason": "ok"}'))
    with pytest.raises(Throttled) as caught:
        judge(make_request(), client, slot=full)  # type: ignore[arg-type]
    assert caught.value.retry_after_s == 0.3
    assert client.calls == []
