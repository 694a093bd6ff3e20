from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from config.policy import (
    CATEGORIES,
    Policy,
    PolicyError,
    ResolvedPolicy,
    load_policy,
    parse_policy,
)
from config.policy_errors import key_path
from config.settings import DEFAULT_POLICY_FILE

MINIMAL = """\
version = 1
"""


def write(tmp_path: Path, text: str, *, standalone: bool = True) -> Path:
    """Write a policy file; ``standalone`` files say ``extends = "none"`` (on a first line of
    their own), to test one file's own tables without the shipped layer."""
    path = tmp_path / "policies.toml"
    text = textwrap.dedent(text)
    if standalone and "extends" not in text:
        text = 'extends = "none"\n' + text
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text, standalone=False)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    lines = str(caught.value).splitlines()
    assert list(caught.value.problems) == lines
    return lines


# ---- the shipped file ---------------------------------------------------------------------------


def test_the_shipped_policy_file_loads_and_configures_every_category() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    assert set(policy.document.categories) == set(CATEGORIES)
    for category in CATEGORIES:
        table = policy.document.categories[category]
        assert table.action is not None, category


def test_the_shipped_policy_has_the_documented_budgets() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)

    def resolved(category: str, queue: str = "default", env: str = "production") -> ResolvedPolicy:
        return policy.resolve(category, actor="some_actor", queue=queue, env=env)

    assert resolved("rate_limited").action == "retry"
    assert resolved("rate_limited").honor_retry_after
    assert resolved("rate_limited").max_retries >= 8
    assert resolved("provider_unavailable").action == "retry"
    assert resolved("timeout").max_retries <= 3
    assert 1 <= resolved("invalid_model_output").max_retries <= 2
    assert resolved("time_limit").max_retries == 1
    for permanent in (
        "model_capability",
        "context_length",
        "quota_exhausted",
        "auth",
        "invalid_request",
        "invalid_payload",
        "content_filtered",
        "aborted",
        "expired",
    ):
        assert resolved(permanent).action == "dead_letter", permanent
    assert resolved("quota_exhausted").report
    assert resolved("auth").report
    assert resolved("unknown").report
    assert resolved("unknown").action == "retry"
    assert resolved("crashed").action == "retry"
    assert resolved("rate_limited").max_attempts == 12
    assert resolved("rate_limited", queue="evaluations.live").max_attempts == 4


def test_the_shipped_rules_name_only_known_categories_and_have_unique_names() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    assert {rule.category for rule in policy.rules} <= set(CATEGORIES)
    names = [rule.name for rule in policy.rules]
    assert len(names) == len(set(names))


ARCHITECTURE_EXAMPLE = r"""
version = 1

[defaults]
max_attempts = 12          # hard cap on attempts of one job, all categories together
min_backoff_ms = 1000
max_backoff_ms = 300000
jitter = 0.25              # delay is multiplied by a factor in [1 - jitter, 1 + jitter]

[categories.rate_limited]
action = "retry"           # retry | dead_letter | drop
max_retries = 8
min_backoff_ms = 2000
honor_retry_after = true
report = false             # send a Sentry event

[categories.model_capability]
action = "dead_letter"

# Ordered rules, first match wins. All keys given in one rule must match the same exception.
[[rules]]
category = "model_capability"
message = '(?i)\b(tools?|tool_choice|function calling|response_format)\b.*\bnot supported\b'

[[rules]]
category = "quota_exhausted"
code = ["insufficient_quota"]

[[rules]]
category = "rate_limited"
status = [429]

[[rules]]
category = "provider_unavailable"
status = [500, 502, 503, 504, 529]
exception = ["openai.APIConnectionError"]   # matched against the class and its bases

# Overrides: narrowest wins: actor > queue > environment > base
[environments.development.categories.unknown]
max_retries = 0

[queues."evaluations.live".defaults]
max_attempts = 4

[actors.run_batch_evaluation.categories.provider_unavailable]
max_retries = 6
"""


def test_the_example_in_the_architecture_document_is_a_valid_policy() -> None:
    policy = parse_policy(ARCHITECTURE_EXAMPLE, source="ARCHITECTURE.md")
    assert [rule.category for rule in policy.rules] == [
        "model_capability",
        "quota_exhausted",
        "rate_limited",
        "provider_unavailable",
    ]
    batch_on_live = policy.resolve(
        "provider_unavailable",
        actor="run_batch_evaluation",
        queue="evaluations.live",
        env="development",
    )
    assert (batch_on_live.max_retries, batch_on_live.max_attempts) == (6, 4)
    assert policy.resolve("unknown", actor="a", queue="q", env="development").max_retries == 0


# ---- errors a person sees: file, key, what is wrong --------------------------------------------


def test_a_missing_file_is_named_and_said_not_to_exist(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == f"{path}: does not exist"


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version = 1\n\n[defaults]\nmax_attempts 3\n", standalone=False)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 4: ")
    assert "column" in message


def test_an_unknown_top_level_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "version = 1\nrule = []\n")
    [line] = problems(tmp_path, path.read_text())
    assert line.startswith(f'{path}: rule: unknown key; did you mean "rules"?')


def test_an_unknown_key_in_a_category_is_named_with_its_full_path(tmp_path: Path) -> None:
    text = """\
        version = 1
        [categories.rate_limited]
        action = "retry"
        max_retry = 3
    """
    [line] = problems(tmp_path, text)
    path = tmp_path / "policies.toml"
    assert line.startswith(
        f'{path}: categories.rate_limited.max_retry: unknown key; did you mean "max_retries"?'
    )
    assert "expected one of: action, max_retries" in line


def test_an_unknown_category_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    [line] = problems(tmp_path, 'version = 1\n[categories.rate_limitd]\naction = "retry"\n')
    path = tmp_path / "policies.toml"
    assert line.startswith(
        f'{path}: categories.rate_limitd: unknown category; did you mean "rate_limited"?'
    )


def test_an_unknown_category_in_a_rule_is_rejected(tmp_path: Path) -> None:
    text = """\
        version = 1
        [[rules]]
        category = "timeout"
        status = [408]
        [[rules]]
        category = "rate-limited"
        status = [429]
    """
    [line] = problems(tmp_path, text)
    assert line.startswith(f"{tmp_path / 'policies.toml'}: rules[1].category: unknown category")


def test_an_unknown_category_in_an_override_is_rejected(tmp_path: Path) -> None:
    text = """\
        version = 1
        [actors.run_live_evaluation.categories.timeouts]
        max_retries = 1
    """
    [line] = problems(tmp_path, text)
    assert line.startswith(
        f"{tmp_path / 'policies.toml'}: actors.run_live_evaluation.categories.timeouts: "
        'unknown category; did you mean "timeout"?'
    )


def test_a_bad_regex_is_named_by_its_rule_index(tmp_path: Path) -> None:
    text = """\
        version = 1
        [[rules]]
        category = "timeout"
        status = [408]
        [[rules]]
        category = "unknown"
        status = [500]
        [[rules]]
        category = "auth"
        code = ["x"]
        [[rules]]
        category = "model_capability"
        message = '(tools'
    """
    [line] = problems(tmp_path, text)
    assert line.startswith(
        f"{tmp_path / 'policies.toml'}: rules[3].message: not a valid regular expression: "
    )


def test_negative_numbers_are_rejected(tmp_path: Path) -> None:
    text = """\
        version = 1
        [defaults]
        min_backoff_ms = -5
        [categories.timeout]
        max_retries = -1
    """
    lines = problems(tmp_path, text)
    path = tmp_path / "policies.toml"
    assert lines == [
        f"{path}: defaults.min_backoff_ms: input should be greater than or equal to 0 (got -5)",
        f"{path}: categories.timeout.max_retries: "
        "input should be greater than or equal to 0 (got -1)",
    ]


def test_jitter_must_lie_between_zero_and_one(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "version = 1\n[defaults]\njitter = 1.5\n")
    assert line == (
        f"{tmp_path / 'policies.toml'}: defaults.jitter: "
        "input should be less than or equal to 1 (got 1.5)"
    )


def test_min_backoff_above_max_backoff_in_one_table_is_rejected(tmp_path: Path) -> None:
    text = """\
        version = 1
        [categories.timeout]
        min_backoff_ms = 5000
        max_backoff_ms = 100
    """
    [line] = problems(tmp_path, text)
    assert line == (
        f"{tmp_path / 'policies.toml'}: categories.timeout: "
        "min_backoff_ms (5000) is greater than max_backoff_ms (100)"
    )


def test_a_category_min_backoff_above_the_default_max_is_rejected(tmp_path: Path) -> None:
    text = """\
        version = 1
        [defaults]
        max_backoff_ms = 1000
        [categories.rate_limited]
        min_backoff_ms = 2000
    """
    [line] = problems(tmp_path, text)
    assert line.startswith(
        f"{tmp_path / 'policies.toml'}: categories.rate_limited.min_backoff_ms: "
        "the category's min_backoff_ms (2000) would be greater than its max_backoff_ms (1000)"
    )


def test_only_the_three_environments_are_accepted(tmp_path: Path) -> None:
    text = """\
        version = 1
        [environments.staging.defaults]
        max_attempts = 3
    """
    [line] = problems(tmp_path, text)
    assert line.startswith(
        f"{tmp_path / 'policies.toml'}: environments.staging: unknown environment; "
        "expected one of: development, test, production"
    )


def test_another_version_is_rejected(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "version = 2\n[defaults]\nmax_attempt = 3\n")
    assert line == (
        f"{tmp_path / 'policies.toml'}: version: unsupported version 2; this evalq reads version 1"
    )


def test_the_version_is_required(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "[defaults]\nmax_attempts = 3\n")
    assert line == f"{tmp_path / 'policies.toml'}: version: required key is missing"


def test_a_rule_without_a_matcher_is_rejected(tmp_path: Path) -> None:
    [line] = problems(tmp_path, 'version = 1\n[[rules]]\ncategory = "timeout"\n')
    assert line == (
        f"{tmp_path / 'policies.toml'}: rules[0]: "
        "a rule needs at least one of exception, message, status, code, type"
    )


def test_a_quoted_queue_name_is_quoted_in_the_key_path(tmp_path: Path) -> None:
    text = """\
        version = 1
        [queues."evaluations.live".defaults]
        max_attempts = 0
    """
    [line] = problems(tmp_path, text)
    assert line == (
        f'{tmp_path / "policies.toml"}: queues."evaluations.live".defaults.max_attempts: '
        "input should be greater than or equal to 1 (got 0)"
    )


def test_an_unknown_action_is_rejected(tmp_path: Path) -> None:
    [line] = problems(tmp_path, 'version = 1\n[categories.timeout]\naction = "retyr"\n')
    assert line == (
        f"{tmp_path / 'policies.toml'}: categories.timeout.action: "
        "input should be 'retry', 'dead_letter' or 'drop' (got \"retyr\")"
    )


def test_a_wrongly_typed_value_says_what_was_expected(tmp_path: Path) -> None:
    text = """\
        version = 1
        [categories.timeout]
        max_retries = "3"
        report = 1
        [[rules]]
        category = "rate_limited"
        status = 429
    """
    lines = problems(tmp_path, text)
    path = tmp_path / "policies.toml"
    assert lines == [
        f'{path}: categories.timeout.max_retries: input should be a valid integer (got "3")',
        f"{path}: categories.timeout.report: input should be a valid boolean (got 1)",
        f"{path}: rules[0].status: must be an array such as [429], not 429",
    ]


def test_rule_lists_are_checked_item_by_item(tmp_path: Path) -> None:
    text = """\
        version = 1
        [[rules]]
        category = "rate_limited"
        status = [429, 4290]
        [[rules]]
        category = "timeout"
        exception = ["openai.APITimeoutError", "not a name"]
    """
    lines = problems(tmp_path, text)
    path = tmp_path / "policies.toml"
    assert lines == [
        f"{path}: rules[0].status[1]: 4290 is not an HTTP status (100..599)",
        f"{path}: rules[1].exception[1]: 'not a name' is not a dotted class name such as "
        "openai.RateLimitError",
    ]


def test_duplicate_rule_names_are_rejected(tmp_path: Path) -> None:
    text = """\
        version = 1
        [[rules]]
        name = "limits"
        category = "rate_limited"
        status = [429]
        [[rules]]
        name = "limits"
        category = "quota_exhausted"
        code = ["insufficient_quota"]
    """
    [line] = problems(tmp_path, text)
    assert line == (
        f"{tmp_path / 'policies.toml'}: rules[1].name: 'limits' is already the name of rules[0]"
    )


def test_every_problem_is_listed_one_per_line(tmp_path: Path) -> None:
    text = """\
        version = 1
        [defaults]
        max_attempts = 0
        [categories.rate_limitd]
        action = "retry"
        [[rules]]
        category = "timeout"
        message = "("
        [environments.prod.defaults]
        max_attempts = 2
    """
    lines = problems(tmp_path, text)
    keys = [line.split(": ")[1] for line in lines]
    assert keys == [
        "defaults.max_attempts",
        "categories.rate_limitd",
        "rules[0].message",
        "environments.prod",
    ]
    assert all(line.startswith(f"{tmp_path / 'policies.toml'}: ") for line in lines)


def test_key_paths_read_like_toml() -> None:
    assert key_path(("rules", 3, "message")) == "rules[3].message"
    assert (
        key_path(("queues", "evaluations.live", "defaults")) == 'queues."evaluations.live".defaults'
    )
    assert key_path(("categories", "x", "[key]")) == "categories.x"
    assert key_path(()) == "(top level)"


# ---- resolution ---------------------------------------------------------------------------------

LAYERED = """\
    version = 1
    [defaults]
    max_attempts = 10
    min_backoff_ms = 100
    max_backoff_ms = 10000
    jitter = 0.1

    [categories.timeout]
    action = "retry"
    max_retries = 1
    min_backoff_ms = 200
    honor_retry_after = false

    [environments.production.defaults]
    max_attempts = 9
    [environments.production.categories.timeout]
    max_retries = 2
    jitter = 0.2
    report = true

    [queues."evaluations.live".defaults]
    max_attempts = 8
    max_backoff_ms = 8000
    [queues."evaluations.live".categories.timeout]
    max_retries = 3
    min_backoff_ms = 300

    [actors.run_live_evaluation.categories.timeout]
    max_retries = 4
    honor_retry_after = true
"""


@pytest.fixture
def layered(tmp_path: Path) -> Policy:
    return load_policy(write(tmp_path, LAYERED))


def test_each_field_comes_from_the_narrowest_layer_that_sets_it(layered: Policy) -> None:
    resolved = layered.resolve(
        "timeout", actor="run_live_evaluation", queue="evaluations.live", env="production"
    )
    assert resolved == ResolvedPolicy(
        category="timeout",
        action="retry",  # base
        max_retries=4,  # actor
        max_attempts=8,  # queue defaults
        min_backoff_ms=300,  # queue category
        max_backoff_ms=8000,  # queue defaults (no category table sets it)
        jitter=0.2,  # environment category
        honor_retry_after=True,  # actor
        report=True,  # environment
    )


def test_actor_beats_queue_beats_environment_beats_base(layered: Policy) -> None:
    def retries(actor: str, queue: str, env: str) -> int:
        return layered.resolve("timeout", actor=actor, queue=queue, env=env).max_retries

    assert retries("run_live_evaluation", "evaluations.live", "production") == 4
    assert retries("other", "evaluations.live", "production") == 3
    assert retries("other", "default", "production") == 2
    assert retries("other", "default", "development") == 1


def test_max_attempts_comes_from_the_narrowest_defaults_table(layered: Policy) -> None:
    def attempts(queue: str, env: str) -> int:
        return layered.resolve("timeout", actor="a", queue=queue, env=env).max_attempts

    assert attempts("evaluations.live", "production") == 8
    assert attempts("default", "production") == 9
    assert attempts("default", "test") == 10


def test_backoff_not_set_for_the_category_falls_back_to_the_defaults(layered: Policy) -> None:
    resolved = layered.resolve("timeout", actor="a", queue="default", env="development")
    assert (resolved.min_backoff_ms, resolved.max_backoff_ms, resolved.jitter) == (200, 10000, 0.1)


def test_a_category_own_backoff_beats_a_narrower_layers_defaults(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            version = 1
            [categories.timeout]
            min_backoff_ms = 2000
            [actors.a.defaults]
            min_backoff_ms = 50
            """,
        )
    )
    assert policy.resolve("timeout", actor="a", queue="q", env="test").min_backoff_ms == 2000
    assert policy.resolve("auth", actor="a", queue="q", env="test").min_backoff_ms == 50


def test_layers_that_combine_min_above_max_are_clamped_to_max(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """\
            version = 1
            [categories.rate_limited]
            action = "retry"
            min_backoff_ms = 2000
            [queues.fast.defaults]
            max_backoff_ms = 500
            """,
        )
    )
    resolved = policy.resolve("rate_limited", actor="a", queue="fast", env="test")
    assert (resolved.min_backoff_ms, resolved.max_backoff_ms) == (500, 500)


def test_a_category_not_configured_is_dead_lettered_at_once_and_not_reported() -> None:
    policy = parse_policy(MINIMAL)
    resolved = policy.resolve("timeout", actor="a", queue="q", env="production")
    assert resolved == ResolvedPolicy(
        category="timeout",
        action="dead_letter",
        max_retries=0,
        max_attempts=12,
        min_backoff_ms=1000,
        max_backoff_ms=300_000,
        jitter=0.25,
        honor_retry_after=False,
        report=False,
    )
    assert resolved.attempts_allowed == 1


def test_resolutions_are_cached(layered: Policy) -> None:
    first = layered.resolve("timeout", actor="a", queue="q", env="test")
    assert layered.resolve("timeout", actor="a", queue="q", env="test") is first


def test_resolving_an_unknown_category_is_a_bug(layered: Policy) -> None:
    with pytest.raises(ValueError, match="unknown category 'timeouts'"):
        layered.resolve("timeouts", actor="a", queue="q", env="test")


def test_attempts_allowed_is_retries_plus_one_within_the_job_cap() -> None:
    base = dict(
        category="timeout",
        max_attempts=5,
        min_backoff_ms=0,
        max_backoff_ms=0,
        jitter=0.0,
        honor_retry_after=False,
        report=False,
    )
    assert ResolvedPolicy(action="retry", max_retries=2, **base).attempts_allowed == 3  # type: ignore[arg-type]
    assert ResolvedPolicy(action="retry", max_retries=9, **base).attempts_allowed == 5  # type: ignore[arg-type]
    assert ResolvedPolicy(action="drop", max_retries=9, **base).attempts_allowed == 1  # type: ignore[arg-type]


# ---- compiled rules -----------------------------------------------------------------------------


def test_rules_keep_file_order_with_their_display_names_and_compiled_regexes() -> None:
    policy = parse_policy(
        textwrap.dedent(
            """\
            version = 1
            [[rules]]
            name = "no tools"
            category = "model_capability"
            message = '(?i)tools'
            [[rules]]
            category = "rate_limited"
            status = [429]
            type = ["requests"]
            [[rules]]
            category = "provider_unavailable"
            exception = ["openai.APIConnectionError", "ConnectionError"]
            """
        )
    )
    names = [rule.name for rule in policy.rules]
    assert names == ["no tools", "rules[1]", "rules[2]"]
    assert isinstance(policy.rules[0].message, re.Pattern)
    assert policy.rules[1].status == frozenset({429})
    assert policy.rules[1].error_type == frozenset({"requests"})
    assert policy.rules[2].exception_keys == (
        ("openai", "APIConnectionError"),
        ("", "ConnectionError"),
    )
