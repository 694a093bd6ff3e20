"""The error policy, end to end: real `dramatiq workers`, the real openai SDK, a provider on
127.0.0.1 that counts requests per target. Every figure is counted at the provider."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import redis

import workers
from config.policy import Policy, load_policy
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, target_of
from workers import actors, client
from workers.bootstrap import repoint
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = pytest.mark.integration

# The shipped rules, with budgets and backoffs small enough for a test.
TEST_OVERRIDES = """
[environments.test.defaults]
max_attempts = 6
min_backoff_ms = 50
max_backoff_ms = 2000

[environments.test.categories.rate_limited]
max_retries = 2
[environments.test.categories.provider_unavailable]
max_retries = 3
min_backoff_ms = 50     # the shipped 1-60 s would hold the module's jobs for 31 s
max_backoff_ms = 400
[environments.test.categories.timeout]
max_retries = 1
[environments.test.categories.invalid_model_output]
max_retries = 1
[environments.test.categories.unknown]
max_retries = 1
[environments.test.categories.crashed]
max_retries = 2
"""


@dataclass
class Case:
    name: str
    replies: list[Reply]
    request: dict[str, Any]
    job_id: str = ""


CASES = {
    "capability": [Reply.tools_not_supported()],
    "rate_limited": [Reply.rate_limited(retry_after_s=1)],
    "quota": [Reply.insufficient_quota()],
    "unauthorized": [Reply.unauthorized()],
    "flaky": [Reply.server_error(), Reply.server_error(), Reply.ok()],
    "down": [Reply.server_error()],
    "hang": [Reply.hang(30)],
    "garbage": [Reply.content("this is not JSON {")],
    "teapot": [Reply.error(418, "I'm a teapot")],
}


@dataclass
class Scenario:
    provider: SimulatedProvider
    redis: redis.Redis
    cases: dict[str, Case]
    dead_letters: DeadLetters
    history: History
    pools: WorkerPools
    env: dict[str, str]
    policy: Policy

    def allowed(self, category: str) -> int:
        """Attempts the test policy allows a batch evaluation failing with ``category``."""
        return self.policy.resolve(
            category, actor="run_batch_evaluation", queue="evaluations.batch", env="test"
        ).attempts_allowed

    def record_for(self, case: str) -> Any:
        job_id = self.cases[case].job_id
        records = [r for r in self.dead_letters.list(limit=100).records if r.job_id == job_id]
        assert len(records) <= 1
        return records[0] if records else None

    def requests(self, case: str) -> list[Any]:
        return self.provider.requests_for(target_of(self.cases[case].request))


@pytest.fixture(scope="module")
def scenario(_redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    client_ = redis.Redis.from_url(_redis_server)
    client_.flushdb()
    repoint(workers.broker, _redis_server)
    tmp = tmp_path_factory.mktemp("error-policy")
    policy_file = write_test_policy(tmp / "policy.toml", TEST_OVERRIDES)
    policy = load_policy(policy_file)  # a broken test policy should fail here, loudly
    with SimulatedProvider() as provider:
        env = {
            "EVALQ_POLICY_FILE": str(policy_file),
            "EVALQ_PROVIDER_BASE_URL": provider.base_url,
            "EVALQ_PROVIDER_API_KEY": "sk-test-key-never-stored",
            "EVALQ_PROVIDER_TIMEOUT_S": "1",
            "EVALQ_HEARTBEAT_TIMEOUT_MS": "2000",
            "EVALQ_MAINTENANCE_CHANCE": "1000000",
        }
        pools = WorkerPools(redis_url=_redis_server, log_dir=tmp / "logs")
        pools.start("evaluations.batch", threads=len(CASES) + 2, env=env)
        cases = {name: Case(name, replies, llm_request()) for name, replies in CASES.items()}
        for case in cases.values():
            provider.script(target_of(case.request), case.replies)
            case.job_id = client.submit_evaluation(case.request).id
        client.wait_all([c.job_id for c in cases.values()], timeout=60)
        try:
            yield Scenario(
                provider=provider,
                redis=client_,
                cases=cases,
                dead_letters=DeadLetters(client_),
                history=History(client_),
                pools=pools,
                env=env,
                policy=policy,
            )
        finally:
            pools.stop()


def outcome(scenario: Scenario, case: str) -> tuple[int, str | None]:
    job = client.JobHandle(scenario.cases[case].job_id)
    return len(scenario.requests(case)), job.state()


def test_a_capability_error_runs_once_and_lands_in_the_dlq_with_its_rule(
    scenario: Scenario,
) -> None:
    assert scenario.allowed("model_capability") == 1
    assert outcome(scenario, "capability") == (1, "dead_lettered")
    record = scenario.record_for("capability")
    assert record.category == "model_capability"
    assert record.rule is not None
    assert record.error_type == "openai.BadRequestError"
    assert "tools is not supported in this model" in record.error_message


def test_a_rate_limit_retries_its_own_budget_and_honours_retry_after(scenario: Scenario) -> None:
    assert scenario.allowed("rate_limited") == 3  # max_retries 2, plus the first attempt
    assert outcome(scenario, "rate_limited") == (3, "dead_lettered")
    assert scenario.record_for("rate_limited").category == "rate_limited"
    requests = scenario.requests("rate_limited")
    gaps = [later.started_at - earlier.ended_at for earlier, later in itertools.pairwise(requests)]
    assert all(gap >= 1.0 for gap in gaps), gaps


def test_insufficient_quota_is_not_retried(scenario: Scenario) -> None:
    assert outcome(scenario, "quota") == (1, "dead_lettered")
    assert scenario.record_for("quota").category == "quota_exhausted"


def test_an_authentication_failure_is_not_retried(scenario: Scenario) -> None:
    assert outcome(scenario, "unauthorized") == (1, "dead_lettered")
    assert scenario.record_for("unauthorized").category == "auth"


def test_a_transient_server_error_is_retried_until_it_succeeds(scenario: Scenario) -> None:
    assert outcome(scenario, "flaky") == (3, "succeeded")
    assert scenario.record_for("flaky") is None
    timeline = scenario.history.show(scenario.cases["flaky"].job_id)
    assert timeline is not None
    assert [a["outcome"] for a in timeline["attempts"]] == ["retried", "retried", "succeeded"]
    assert {a["category"] for a in timeline["attempts"][:2]} == {"provider_unavailable"}


def test_a_provider_that_stays_down_is_attempted_max_retries_plus_one_times(
    scenario: Scenario,
) -> None:
    # The shipped policy gives run_batch_evaluation 6 retries of provider_unavailable (actor
    # beats environment); the test environment's max_attempts = 6 caps the job at 6.
    assert scenario.allowed("provider_unavailable") == 6
    assert outcome(scenario, "down") == (6, "dead_lettered")
    record = scenario.record_for("down")
    assert record.category == "provider_unavailable"
    assert [a["n"] for a in record.attempts] == [1, 2, 3, 4, 5, 6]
    assert "max_attempts reached (6 of 6)" in record.reason


def test_a_request_hanging_past_the_client_timeout_is_a_timeout(scenario: Scenario) -> None:
    assert scenario.allowed("timeout") == 2
    assert outcome(scenario, "hang") == (2, "dead_lettered")
    assert scenario.record_for("hang").category == "timeout"


def test_a_judge_answer_that_is_not_json_is_invalid_model_output(scenario: Scenario) -> None:
    assert scenario.allowed("invalid_model_output") == 2
    assert outcome(scenario, "garbage") == (2, "dead_lettered")
    assert scenario.record_for("garbage").category == "invalid_model_output"


def test_an_unclassified_error_is_unknown_and_retried_its_small_budget(scenario: Scenario) -> None:
    assert scenario.allowed("unknown") == 2
    assert outcome(scenario, "teapot") == (2, "dead_lettered")
    record = scenario.record_for("teapot")
    assert record.category == "unknown"
    assert record.rule is None


def test_dead_letter_records_never_hold_the_provider_api_key(scenario: Scenario) -> None:
    dumped = json.dumps(
        [r.model_dump(mode="json") for r in scenario.dead_letters.list(limit=100).records]
    )
    assert "sk-test-key-never-stored" not in dumped


def test_a_bad_payload_goes_to_the_dlq_as_invalid_payload_and_the_worker_lives(
    scenario: Scenario,
) -> None:
    bad = actors.run_batch_evaluation.send({"evaluation": {"uuid": "nope"}})
    assert client.wait_all([bad.message_id], timeout=20)[bad.message_id] == "dead_lettered"
    records = [
        r for r in scenario.dead_letters.list(limit=100).records if r.job_id == bad.message_id
    ]
    assert [r.category for r in records] == ["invalid_payload"]
    assert all(code is None for code in scenario.pools.group.poll().values())


def test_a_redriven_record_runs_again_and_disappears(scenario: Scenario) -> None:
    record = scenario.record_for("capability")
    scenario.provider.script(target_of(scenario.cases["capability"].request), [Reply.ok()])
    before = len(scenario.requests("capability"))
    outcomes = scenario.dead_letters.redrive([record.id], now_ms=int(time.time() * 1000))
    assert [o.redriven for o in outcomes] == [True]
    job_id = scenario.cases["capability"].job_id
    assert client.JobHandle(job_id).result(timeout=20).has_passed in (True, False)
    assert len(scenario.requests("capability")) == before + 1
    assert scenario.dead_letters.get(record.id) is None


def test_a_worker_killed_mid_job_spends_an_attempt_and_the_job_is_not_lost(
    scenario: Scenario,
) -> None:
    request = llm_request()
    scenario.provider.script(target_of(request), [Reply.hang(60), Reply.ok()])
    # A pool whose client timeout is long, so the job is still running when its worker dies.
    env = {**scenario.env, "EVALQ_PROVIDER_TIMEOUT_S": "50"}
    name = scenario.pools.start("evaluations.live", threads=1, env=env)
    handle = client.submit_evaluation(request, lane="live")
    deadline = time.monotonic() + 20
    while len(scenario.provider.requests_for(target_of(request))) < 1:
        assert time.monotonic() < deadline, "the job never reached the provider"
        time.sleep(0.05)
    assert handle.state() == "running"
    pool_pid = scenario.pools.group.pids()[name]
    for child in psutil.Process(pool_pid).children(recursive=True):
        os.kill(child.pid, signal.SIGKILL)
    # A fresh pool picks the job up once the dead worker's heartbeat has timed out.
    scenario.pools.start("evaluations.live", threads=1, env=scenario.env)
    result = handle.result(timeout=40)
    assert result is not None
    assert len(scenario.provider.requests_for(target_of(request))) == 2
    timeline = scenario.history.show(handle.id)
    assert timeline is not None
    assert [a["outcome"] for a in timeline["attempts"]] == ["crashed", "succeeded"]
