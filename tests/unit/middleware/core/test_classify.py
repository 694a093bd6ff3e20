from __future__ import annotations

import itertools
import json
import textwrap
from collections.abc import Callable

import httpx2
import openai
import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded
from pydantic import BaseModel, ValidationError

from config.policy import CATEGORIES, Policy, load_policy, parse_policy
from config.settings import DEFAULT_POLICY_FILE
from middleware.core.classify import (
    MAX_CHAIN,
    classify,
    classify_facts,
    exception_chain,
    name_matches,
    root_cause,
    rule_matches,
)
from middleware.core.errors import NonRetryable, QuotaExhausted, RateLimited, Retryable
from middleware.core.facts import ErrorFacts, facts_of
from workers.evaluations.llm_judge import JudgeOutputError

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(DEFAULT_POLICY_FILE)


def api_error(
    cls: type[openai.APIStatusError],
    status: int,
    message: str,
    *,
    code: str | None = None,
    type: str | None = None,
    headers: dict[str, str] | None = None,
) -> openai.APIStatusError:
    request = httpx2.Request("POST", "https://provider.invalid/v1/chat/completions")
    response = httpx2.Response(status, request=request, headers=headers or {})
    body = {"message": message, "type": type, "param": None, "code": code}
    return cls(f"Error code: {status} - {message}", response=response, body=body)


def raised(make: Callable[[], BaseException]) -> BaseException:
    """The exception ``make`` builds, raised and caught, with its traceback and chain."""
    try:
        raise make()
    except BaseException as error:
        return error


def wrapped(inner: BaseException, outer: BaseException, *, how: str = "from") -> BaseException:
    """``outer`` raised while handling ``inner``: ``from inner``, ``from None`` or implicitly."""
    try:
        try:
            raise inner
        except BaseException as error:
            if how == "from":
                raise outer from error
            if how == "from None":
                raise outer from None
            raise outer  # noqa: B904 (the implicit __context__ is what is tested)
    except BaseException as error:
        return error
    raise AssertionError("unreachable")


def capability_error() -> openai.BadRequestError:
    error = api_error(
        openai.BadRequestError,
        400,
        "tools is not supported in this model",
        type="invalid_request_error",
    )
    assert isinstance(error, openai.BadRequestError)
    return error


# ---- the incident -------------------------------------------------------------------------------


def test_a_capability_error_wrapped_as_unknown_is_still_a_capability_error(
    shipped: Policy,
) -> None:
    inner = capability_error()
    error = wrapped(inner, RuntimeError("unknown"))
    result = classify(error, shipped, now=NOW)
    assert result.category == "model_capability"
    assert result.rule == "capability_not_supported"
    assert result.matched is inner
    assert result.root_cause is inner
    assert result.chain_types == ("builtins.RuntimeError", "openai.BadRequestError")
    assert result.forced_action is None
    assert (
        shipped.resolve(
            result.category, actor="run_live_evaluation", queue="evaluations.live", env="production"
        ).action
        == "dead_letter"
    )


def test_a_wrapper_raised_from_none_does_not_hide_the_root_cause(shipped: Policy) -> None:
    inner = capability_error()
    error = wrapped(inner, RuntimeError("unknown"), how="from None")
    assert error.__suppress_context__
    result = classify(error, shipped, now=NOW)
    assert (result.category, result.root_cause) == ("model_capability", inner)


def test_an_exception_raised_while_handling_another_is_classified_by_both(
    shipped: Policy,
) -> None:
    inner = api_error(
        openai.RateLimitError, 429, "Rate limit reached", headers={"retry-after": "3"}
    )
    error = wrapped(inner, KeyError("while handling"), how="implicit")
    result = classify(error, shipped, now=NOW)
    assert (result.category, result.matched, result.retry_after_s) == ("rate_limited", inner, 3.0)


# ---- the chain ----------------------------------------------------------------------------------


def test_the_chain_is_outermost_first_cause_before_context_each_link_once() -> None:
    root = ValueError("root")
    middle = wrapped(root, KeyError("middle"))
    outer = wrapped(middle, RuntimeError("outer"))
    context = OSError("context")
    outer.__context__ = context  # a different context next to the cause
    assert exception_chain(outer) == (outer, middle, root, context)


def test_exception_group_members_are_links() -> None:
    first = TimeoutError("slow")
    second = wrapped(ConnectionResetError("reset"), ValueError("second"))
    group = raised(lambda: BaseExceptionGroup("several", [first, second]))
    assert exception_chain(group) == (group, first, second, second.__cause__)


def test_a_cycle_is_walked_once() -> None:
    a, b = ValueError("a"), KeyError("b")
    a.__cause__, b.__cause__ = b, a
    assert exception_chain(a) == (a, b)
    assert root_cause(exception_chain(a)) is b


def test_a_long_chain_is_cut() -> None:
    error: BaseException = ValueError("0")
    for i in range(1, 200):
        outer = ValueError(str(i))
        outer.__cause__ = error
        error = outer
    chain = exception_chain(error)
    assert len(chain) == MAX_CHAIN
    assert root_cause(chain) is chain[-1]


def test_the_root_cause_is_the_deepest_link_along_the_first_path() -> None:
    deep = ConnectionRefusedError("refused")
    first_member = wrapped(deep, OSError("first"))
    group = BaseExceptionGroup("several", [first_member, TimeoutError("second")])
    outer = wrapped(group, RuntimeError("outer"))
    assert root_cause(exception_chain(outer)) is deep
    assert root_cause((ValueError("alone"),)).args == ("alone",)
    with pytest.raises(ValueError):
        root_cause(())


def test_a_group_member_is_classified(shipped: Policy) -> None:
    group = raised(lambda: ExceptionGroup("several", [ValueError("x"), TimeoutError("slow")]))
    result = classify(group, shipped, now=NOW)
    assert (result.category, result.rule) == ("timeout", "timeout_exception")
    # The root cause of a classified failure is the member the rule recognised.
    assert result.root_cause.args == ("slow",)


def test_an_sdk_error_raised_from_none_is_its_own_root_cause(shipped: Policy) -> None:
    transport = raised(lambda: ConnectionResetError("transport detail"))

    def sdk() -> None:
        try:
            raise transport
        except ConnectionResetError:
            raise api_error(
                openai.BadRequestError, 400, "tools is not supported in this model"
            ) from None

    error = raised(sdk)
    result = classify(error, shipped, now=NOW)
    assert result.category == "model_capability"
    assert type(result.root_cause).__name__ == "BadRequestError"
    assert "builtins.ConnectionResetError" in result.chain_types


# ---- explicit categories and forced actions -----------------------------------------------------


def test_an_explicit_category_beats_every_rule(shipped: Policy) -> None:
    inner = api_error(openai.RateLimitError, 429, "slow down", headers={"retry-after": "5"})
    error = wrapped(inner, QuotaExhausted("the monthly budget is spent"))
    result = classify(error, shipped, now=NOW)
    assert (result.category, result.rule, result.matched) == ("quota_exhausted", "explicit", error)
    assert result.retry_after_s == 5.0  # the explicit link has none: the first link that has one


def test_an_explicit_category_deep_in_the_chain_still_wins(shipped: Policy) -> None:
    inner = RateLimited("tenant limit", retry_after=12)
    error = wrapped(inner, api_error(openai.InternalServerError, 500, "boom"))
    result = classify(error, shipped, now=NOW)
    assert (result.category, result.rule, result.matched) == ("rate_limited", "explicit", inner)
    assert result.retry_after_s == 12.0


def test_the_outermost_explicit_category_wins() -> None:
    error = wrapped(RateLimited("inner"), NonRetryable("outer", category="invalid_payload"))
    result = classify(error, parse_policy("version = 1\n"), now=NOW)
    assert (result.category, result.forced_action) == ("invalid_payload", "dead_letter")


def test_non_retryable_and_retryable_force_their_action(shipped: Policy) -> None:
    dead = classify(raised(lambda: NonRetryable("no")), shipped, now=NOW)
    assert (dead.category, dead.forced_action) == ("invalid_request", "dead_letter")
    retry = classify(raised(lambda: Retryable("again", retry_after=1)), shipped, now=NOW)
    assert (retry.category, retry.forced_action, retry.retry_after_s) == (
        "provider_unavailable",
        "retry",
        1.0,
    )


# ---- rule semantics -----------------------------------------------------------------------------

SAME_LINK = textwrap.dedent(
    """\
    version = 1
    [[rules]]
    name = "tools on a 400"
    category = "model_capability"
    status = [400]
    message = "tools"
    [[rules]]
    name = "any 400"
    category = "invalid_request"
    status = [400]
    """
)


class StatusError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status


def test_all_keys_of_a_rule_must_match_the_same_link() -> None:
    policy = parse_policy(SAME_LINK)
    # The status is on the outer link, the message on the inner one: the first rule does not match.
    error = wrapped(StatusError("tools are great"), StatusError("bad request", 400))
    result = classify(error, policy, now=NOW)
    assert (result.category, result.rule, result.matched) == ("invalid_request", "any 400", error)
    both = wrapped(ValueError("x"), StatusError("tools not here", 400))
    assert classify(both, policy, now=NOW).rule == "tools on a 400"


def test_the_first_rule_in_file_order_wins_whatever_link_it_matches() -> None:
    policy = parse_policy(SAME_LINK)
    inner = StatusError("tools", 400)
    error = wrapped(inner, StatusError("something", 400))
    result = classify(error, policy, now=NOW)
    assert (result.rule, result.matched) == ("tools on a 400", inner)


def test_nothing_matching_is_unknown() -> None:
    result = classify(raised(lambda: RuntimeError("boom")), parse_policy(SAME_LINK), now=NOW)
    assert (result.category, result.rule, result.matched) == ("unknown", None, None)
    assert result.root_cause.args == ("boom",)


def test_retry_after_comes_from_the_matched_link_first() -> None:
    policy = parse_policy(SAME_LINK)
    inner = api_error(openai.BadRequestError, 400, "x", headers={"retry-after": "9"})
    outer = api_error(openai.BadRequestError, 400, "tools", headers={"retry-after": "2"})
    assert classify(wrapped(inner, outer), policy, now=NOW).retry_after_s == 2.0
    plain = StatusError("tools", 400)
    assert classify(wrapped(inner, plain), policy, now=NOW).retry_after_s == 9.0


# ---- dotted names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_name", "dotted", "expected"),
    [
        ("openai.APIConnectionError", "openai._exceptions.APIConnectionError", True),
        ("openai.APIConnectionError", "openai.APIConnectionError", True),
        ("openai.APIConnectionError", "openaix.APIConnectionError", False),
        ("openai.APIConnectionError", "other.openai.APIConnectionError", False),
        ("openai._exceptions.APIConnectionError", "openai._exceptions.APIConnectionError", True),
        ("openai._exceptions.APIConnectionError", "openai.APIConnectionError", False),
        ("TimeoutError", "builtins.TimeoutError", True),
        ("TimeoutError", "somelib.errors.TimeoutError", True),
        ("TimeoutError", "builtins.TimeoutErrorX", False),
        ("builtins.TimeoutError", "builtins.TimeoutError", True),
        ("builtins.TimeoutError", "TimeoutError", False),
    ],
)
def test_dotted_names_match_by_module_prefix_and_class_name(
    rule_name: str, dotted: str, expected: bool
) -> None:
    prefix, _, name = rule_name.rpartition(".")
    assert name_matches(prefix, name, dotted) is expected


def test_a_rule_naming_a_base_class_matches_its_subclasses(shipped: Policy) -> None:
    request = httpx2.Request("POST", "https://provider.invalid/v1/chat/completions")
    result = classify(raised(lambda: openai.APIConnectionError(request=request)), shipped, now=NOW)
    assert (result.category, result.rule) == ("provider_unavailable", "provider_connection")
    refused = classify(raised(lambda: ConnectionRefusedError("no")), shipped, now=NOW)
    assert refused.category == "provider_unavailable"


def test_a_described_exception_is_classified_without_importing_it(shipped: Policy) -> None:
    facts = [
        ErrorFacts(types=("builtins.RuntimeError",), message="wrapper"),
        ErrorFacts(types=("somesdk.errors.QuotaError",), message="", status=429),
    ]
    assert classify_facts(facts, shipped.rules) == ("rate_limited", "rate_limited_429", 1)
    assert classify_facts([ErrorFacts(types=("x.Y",))], shipped.rules) == ("unknown", None, None)


# ---- the shipped rules --------------------------------------------------------------------------


class Verdict(BaseModel):
    passed: bool


def validation_error() -> ValidationError:
    try:
        Verdict.model_validate({"passed": "perhaps"})
    except ValidationError as error:
        return error
    raise AssertionError("unreachable")


def judge_error() -> BaseException:
    """What the judge raises for an ill-shaped answer: its own error, from None, over pydantic's."""
    return wrapped(validation_error(), JudgeOutputError("does not fit", raw="{}"), how="from None")


def time_limit_during_a_rate_limit() -> BaseException:
    inner = api_error(openai.RateLimitError, 429, "slow down")
    return wrapped(inner, TimeLimitExceeded(), how="implicit")


def content_filter_error() -> BaseException:
    return openai.ContentFilterFinishReasonError()


def api_timeout() -> BaseException:
    return openai.APITimeoutError(request=httpx2.Request("POST", "https://p.invalid/v1"))


SHIPPED_CASES: list[tuple[str, Callable[[], BaseException], str]] = [
    ("judge output", judge_error, "invalid_model_output"),
    ("job payload", validation_error, "invalid_payload"),
    ("json decode", lambda: json.JSONDecodeError("Expecting value", "x", 0), "unknown"),
    (
        "insufficient quota on a 429",
        lambda: api_error(
            openai.RateLimitError, 429, "You exceeded your current quota", code="insufficient_quota"
        ),
        "quota_exhausted",
    ),
    (
        "quota by type only",
        lambda: api_error(openai.RateLimitError, 429, "billing", type="insufficient_quota"),
        "quota_exhausted",
    ),
    (
        "plain 429",
        lambda: api_error(
            openai.RateLimitError, 429, "Rate limit reached", code="rate_limit_exceeded"
        ),
        "rate_limited",
    ),
    ("401", lambda: api_error(openai.AuthenticationError, 401, "Incorrect API key"), "auth"),
    ("403", lambda: api_error(openai.PermissionDeniedError, 403, "Forbidden"), "auth"),
    ("408", lambda: api_error(openai.APIStatusError, 408, "Request Timeout"), "timeout"),
    ("openai timeout", api_timeout, "timeout"),
    ("builtin timeout", lambda: TimeoutError("timed out"), "timeout"),
    ("connection reset", lambda: ConnectionResetError("reset by peer"), "provider_unavailable"),
    ("500", lambda: api_error(openai.InternalServerError, 500, "oops"), "provider_unavailable"),
    ("503", lambda: api_error(openai.InternalServerError, 503, "busy"), "provider_unavailable"),
    (
        "529 overloaded",
        lambda: api_error(openai.InternalServerError, 529, "overloaded", type="overloaded_error"),
        "provider_unavailable",
    ),
    (
        "context length code",
        lambda: api_error(openai.BadRequestError, 400, "too long", code="context_length_exceeded"),
        "context_length",
    ),
    (
        "context length message",
        lambda: api_error(
            openai.BadRequestError, 400, "This model's maximum context length is 8192 tokens."
        ),
        "context_length",
    ),
    ("tools not supported", capability_error, "model_capability"),
    (
        "does not support tools",
        lambda: api_error(openai.BadRequestError, 400, "This model does not support tools."),
        "model_capability",
    ),
    (
        "response_format not supported",
        lambda: api_error(
            openai.BadRequestError,
            400,
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported.",
        ),
        "model_capability",
    ),
    (
        "model not found code",
        lambda: api_error(openai.NotFoundError, 404, "no such thing", code="model_not_found"),
        "model_capability",
    ),
    (
        "model does not exist",
        lambda: api_error(
            openai.NotFoundError, 404, "The model `gpt-9` does not exist or you do not have access."
        ),
        "model_capability",
    ),
    (
        "other 404",
        lambda: api_error(openai.NotFoundError, 404, "Unknown URL /v1/chat"),
        "invalid_request",
    ),
    (
        "other 400",
        lambda: api_error(openai.BadRequestError, 400, "'messages' must be non-empty"),
        "invalid_request",
    ),
    (
        "422",
        lambda: api_error(openai.UnprocessableEntityError, 422, "unprocessable"),
        "invalid_request",
    ),
    ("content filter refusal", content_filter_error, "content_filtered"),
    (
        "content filter code",
        lambda: api_error(openai.BadRequestError, 400, "filtered", code="content_filter"),
        "content_filtered",
    ),
    ("time limit", lambda: TimeLimitExceeded(), "time_limit"),
    ("time limit while handling a 429", time_limit_during_a_rate_limit, "time_limit"),
    ("a bug", lambda: KeyError("result"), "unknown"),
    ("runtime error", lambda: RuntimeError("unknown"), "unknown"),
]


@pytest.mark.parametrize(
    ("make", "category"),
    [(make, category) for _, make, category in SHIPPED_CASES],
    ids=[name for name, _, _ in SHIPPED_CASES],
)
def test_the_shipped_rules_classify_common_errors(
    shipped: Policy, make: Callable[[], BaseException], category: str
) -> None:
    error = raised(make)
    assert classify(error, shipped, now=NOW).category == category
    assert classify(wrapped(error, RuntimeError("unknown")), shipped, now=NOW).category == category


def test_every_category_a_rule_names_is_a_known_one(shipped: Policy) -> None:
    assert {rule.category for rule in shipped.rules} <= set(CATEGORIES)


# ---- the fast path agrees with the plain statement ----------------------------------------------


def test_classify_facts_agrees_with_trying_every_rule_on_every_link(shipped: Policy) -> None:
    types = [
        ("builtins.RuntimeError", "builtins.Exception"),
        ("openai.APITimeoutError", "openai.APIConnectionError", "openai.APIError"),
        ("pydantic_core._pydantic_core.ValidationError", "builtins.ValueError"),
        ("workers.evaluations.llm_judge.JudgeOutputError", "builtins.ValueError"),
        ("builtins.ConnectionResetError", "builtins.ConnectionError", "builtins.OSError"),
    ]
    messages = ["", "tools is not supported", "maximum context length", "The model x not found"]
    statuses = [None, 400, 404, 429, 503]
    codes = [None, "insufficient_quota", "content_filter", "model_not_found"]
    error_types = [None, "insufficient_quota"]
    facts = [
        ErrorFacts(types=t, message=m, status=s, code=c, error_type=e)
        for t, m, s, c, e in itertools.product(types, messages, statuses, codes, error_types)
    ]

    def plainly(chain: list[ErrorFacts]) -> tuple[str, str | None, int | None]:
        for rule in shipped.rules:
            for index, fact in enumerate(chain):
                if rule_matches(rule, fact):
                    return rule.category, rule.name, index
        return "unknown", None, None

    for first, second in zip(facts, reversed(facts), strict=True):
        for chain in ([first], [first, second]):
            assert classify_facts(chain, shipped.rules) == plainly(chain)
            assert classify_facts(chain, list(shipped.rules)) == plainly(chain)


def test_facts_of_every_link_are_what_classify_matches_on(shipped: Policy) -> None:
    error = wrapped(capability_error(), RuntimeError("unknown"))
    chain = exception_chain(error)
    facts = [facts_of(link, now=NOW) for link in chain]
    assert classify_facts(facts, shipped.rules) == (
        "model_capability",
        "capability_not_supported",
        1,
    )


@pytest.mark.parametrize(
    "error",
    [
        "redis.exceptions.ConnectionError",  # the primary died under an open connection
        "redis.sentinel.MasterNotFoundError",  # the sentinels have not agreed on a new one yet
        "redis.exceptions.ReadOnlyError",  # a demoted primary, through a plain connection
        "redis.exceptions.TimeoutError",
    ],
)
def test_what_redis_py_raises_during_a_sentinel_failover_is_store_unavailable(
    shipped: Policy, error: str
) -> None:
    import importlib

    module, _, name = error.rpartition(".")
    raised = getattr(importlib.import_module(module), name)("failover")
    wrapped = RuntimeError("could not write the result")
    wrapped.__cause__ = raised
    assert classify(wrapped, shipped, now=NOW).category == "store_unavailable"
