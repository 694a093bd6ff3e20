"""Deduplication of submissions against real Redis and real workers, counted at the provider."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import now_ms
from tests.support.cli import run_evalq
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, rule_request, target_of
from workers import client
from workers.deduplication import idempotency_key
from workers.demo.provider import Reply, SimulatedProvider
from workers.evaluations.models import EvaluationRequest

pytestmark = pytest.mark.integration

SUBMITTERS = 20


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as server:
        yield server


def provider_env(provider: SimulatedProvider) -> dict[str, str]:
    return {
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-test-not-logged",
        "EVALQ_PROVIDER_TIMEOUT_S": "3",
    }


def wait_for_state(handle: client.JobHandle, *states: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = handle.state()
        if state in states:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"job {handle.id} is {state}, not {states}, after {timeout}s")
        time.sleep(0.02)


def default_key(request: dict[str, Any]) -> str:
    return EvaluationRequest.model_validate(request).default_idempotency_key()


def assert_one_job_and_one_provider_request(
    results: list[tuple[str, bool]], provider: SimulatedProvider, request: dict[str, Any]
) -> None:
    assert len(results) == SUBMITTERS
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(deduplicated for _, deduplicated in results) == [False] + [True] * (
        SUBMITTERS - 1
    )
    client.JobHandle(results[0][0]).result(timeout=30)
    time.sleep(0.5)  # a second job, had there been one, would have reached the provider by now
    assert provider.count(target_of(request)) == 1


def test_twenty_threads_submitting_one_request_at_once_get_one_job_and_one_provider_request(
    worker_pools: WorkerPools, provider: SimulatedProvider
) -> None:
    worker_pools.start("evaluations.live", env=provider_env(provider))
    request = llm_request()
    provider.script(target_of(request), [Reply.slow(0.5)])
    start = threading.Barrier(SUBMITTERS)
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def submit() -> None:
        start.wait()
        handle = client.submit_evaluation(request, lane="live")
        with lock:
            results.append((handle.id, handle.deduplicated))

    threads = [threading.Thread(target=submit) for _ in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert_one_job_and_one_provider_request(results, provider, request)


def _submit_in_a_process(
    start: Any, out: Any, request: dict[str, Any]
) -> None:  # pragma: no cover - runs in a forked child
    start.wait()
    handle = client.submit_evaluation(request, lane="live")
    out.put((handle.id, handle.deduplicated))


def test_twenty_processes_submitting_one_request_at_once_get_one_job_and_one_provider_request(
    worker_pools: WorkerPools, provider: SimulatedProvider
) -> None:
    worker_pools.start("evaluations.live", env=provider_env(provider))
    request = llm_request()
    provider.script(target_of(request), [Reply.slow(0.5)])
    # Forked children share nothing with this process but the Redis address: each one opens
    # its own connections, and they all submit the moment the last one is ready.
    context = multiprocessing.get_context("fork")
    start = context.Barrier(SUBMITTERS)
    out = context.Queue()
    children = [
        context.Process(target=_submit_in_a_process, args=(start, out, request))
        for _ in range(SUBMITTERS)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=10)
        assert child.exitcode == 0
    assert_one_job_and_one_provider_request(results, provider, request)


def test_until_finished_returns_the_job_while_it_is_queued_or_running_and_a_new_one_after(
    worker_pools: WorkerPools, provider: SimulatedProvider
) -> None:
    request = llm_request()
    provider.script(target_of(request), [Reply.slow(1.5), Reply.ok()])
    first = client.submit_evaluation(request, lane="live")
    queued = client.submit_evaluation(request, lane="live")
    assert (queued.id, queued.deduplicated) == (first.id, True)

    worker_pools.start("evaluations.live", env=provider_env(provider))
    wait_for_state(first, "running")
    running = client.submit_evaluation(request, lane="live", dedup="until_finished")
    assert (running.id, running.deduplicated) == (first.id, True)

    first.result(timeout=20)
    again = client.submit_evaluation(request, lane="live")
    assert again.id != first.id and not again.deduplicated
    again.result(timeout=20)
    assert provider.count(target_of(request)) == 2


def test_until_started_returns_the_job_only_while_it_is_queued(
    worker_pools: WorkerPools, provider: SimulatedProvider
) -> None:
    request = llm_request()
    provider.script(target_of(request), [Reply.slow(1.5), Reply.ok()])
    first = client.submit_evaluation(request, lane="live", dedup="until_started")
    queued = client.submit_evaluation(request, lane="live", dedup="until_started")
    assert (queued.id, queued.deduplicated) == (first.id, True)

    worker_pools.start("evaluations.live", env=provider_env(provider))
    wait_for_state(first, "running")
    while_running = client.submit_evaluation(request, lane="live", dedup="until_started")
    assert while_running.id != first.id and not while_running.deduplicated

    first.result(timeout=20)
    while_running.result(timeout=20)
    after = client.submit_evaluation(request, lane="live", dedup="until_started")
    assert after.id not in (first.id, while_running.id) and not after.deduplicated
    after.result(timeout=20)
    assert provider.count(target_of(request)) == 3


@pytest.mark.parametrize("mode", ["until_finished", "until_started"])
def test_a_dead_lettered_job_does_not_hold_its_key_outside_window_mode(
    worker_pools: WorkerPools, provider: SimulatedProvider, mode: str
) -> None:
    worker_pools.start("evaluations.live", env=provider_env(provider))
    request = llm_request()
    provider.script(target_of(request), [Reply.tools_not_supported(), Reply.ok()])
    dead = client.submit_evaluation(request, lane="live", dedup=mode)  # type: ignore[arg-type]
    wait_for_state(dead, "dead_lettered")
    again = client.submit_evaluation(request, lane="live", dedup=mode)  # type: ignore[arg-type]
    assert again.id != dead.id and not again.deduplicated
    assert again.result(timeout=20).metadata["model"] == "judge-small"
    assert provider.count(target_of(request)) == 2


def test_window_returns_the_first_job_within_the_window_whatever_its_state(
    worker_pools: WorkerPools, provider: SimulatedProvider
) -> None:
    window_s = 8.0  # long enough for both jobs to end first, even on a loaded machine
    worker_pools.start("evaluations.live", env=provider_env(provider))
    succeeding, failing = llm_request(), llm_request()
    provider.script(target_of(failing), [Reply.tools_not_supported(), Reply.ok()])
    submitted_at = time.monotonic()
    jobs = [
        client.submit_evaluation(r, lane="live", dedup="window", dedup_window_s=window_s)
        for r in (succeeding, failing)
    ]
    assert client.wait_all([job.id for job in jobs], timeout=20) == {
        jobs[0].id: "succeeded",
        jobs[1].id: "dead_lettered",
    }
    assert time.monotonic() - submitted_at < window_s - 0.5, "the jobs took too long to end"

    within = [
        client.submit_evaluation(r, lane="live", dedup="window", dedup_window_s=window_s)
        for r in (succeeding, failing)
    ]
    assert [(h.id, h.deduplicated) for h in within] == [(job.id, True) for job in jobs]

    time.sleep(max(0.0, submitted_at + window_s + 0.1 - time.monotonic()))
    after = [
        client.submit_evaluation(r, lane="live", dedup="window", dedup_window_s=window_s)
        for r in (succeeding, failing)
    ]
    assert [h.deduplicated for h in after] == [False, False]
    assert {h.id for h in after}.isdisjoint(job.id for job in jobs)
    assert client.wait_all([h.id for h in after], timeout=20) == {h.id: "succeeded" for h in after}
    assert provider.count(target_of(succeeding)) == 2
    assert provider.count(target_of(failing)) == 2


@pytest.mark.parametrize(
    ("mode", "window_s"), [("window", 3600.0), ("until_finished", None)], ids=["window", "default"]
)
def test_a_redriven_dead_job_runs_although_its_old_key_is_still_set(
    worker_pools: WorkerPools,
    provider: SimulatedProvider,
    redis_client: redis.Redis,
    mode: str,
    window_s: float | None,
) -> None:
    worker_pools.start("evaluations.live", env=provider_env(provider))
    request = llm_request()
    provider.script(target_of(request), [Reply.tools_not_supported(), Reply.ok()])
    dead = client.submit_evaluation(
        request,
        lane="live",
        dedup=mode,  # type: ignore[arg-type]
        dedup_window_s=window_s,
    )
    wait_for_state(dead, "dead_lettered")
    assert redis_client.get(idempotency_key(default_key(request))) == dead.id.encode()

    outcomes = DeadLetters(redis_client).redrive([dead.info()["dead_letter_id"]], now_ms=now_ms())
    assert [(o.job_id, o.redriven) for o in outcomes] == [(dead.id, True)]
    assert dead.result(timeout=20).metadata["model"] == "judge-small"
    assert provider.count(target_of(request)) == 2
    assert redis_client.get(idempotency_key(default_key(request))) == dead.id.encode()


def test_an_explicit_idempotency_key_is_a_different_key_from_the_default_one(
    redis_client: redis.Redis,
) -> None:
    request = rule_request()
    by_default = client.submit_evaluation(request)
    explicit = client.submit_evaluation(request, idempotency_key="order-42")
    assert explicit.id != by_default.id and not explicit.deduplicated
    again = client.submit_evaluation(request, idempotency_key="order-42")
    in_request = client.submit_evaluation({**request, "idempotency_key": "order-42"})
    assert [(h.id, h.deduplicated) for h in (again, in_request)] == [(explicit.id, True)] * 2
    assert client.submit_evaluation(request).id == by_default.id
    assert redis_client.get(idempotency_key("order-42")) == explicit.id.encode()
    assert redis_client.get(idempotency_key(default_key(request))) == by_default.id.encode()
    assert redis_client.llen("dramatiq:evaluations.batch") == 2


def test_submit_many_dedups_within_one_call_and_across_its_round_trips(
    redis_client: redis.Redis,
) -> None:
    requests = [rule_request() for _ in range(1_100)]
    # 1,400 submissions over three round trips of 500: the repeats fall in other round trips
    # than their originals, and in the same one.
    repeats = requests[:200] + requests[1_000:1_100]
    handles = client.submit_many(requests + repeats)
    assert [h.deduplicated for h in handles] == [False] * 1_100 + [True] * 300
    assert [h.id for h in handles[1_100:]] == [h.id for h in handles[:200] + handles[1_000:1_100]]
    assert redis_client.llen("dramatiq:evaluations.batch") == 1_100
    assert {client.JobHandle(h.id).state() for h in handles} == {"queued"}


def write_jsonl(path: Path, *requests: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    return path


def test_evalq_submit_takes_a_dedup_mode_and_reports_each_duplicate(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", rule_request(), rule_request())

    def submit(*options: str) -> list[dict[str, Any]]:
        completed = run_evalq("submit", str(path), "--json", *options, redis_url=redis_url)
        assert completed.returncode == 0, completed.stderr
        return [json.loads(line) for line in completed.stdout.splitlines()]

    first = submit("--dedup", "until_started")
    assert [row["deduplicated"] for row in first] == [False, False]
    again = submit("--dedup", "window", "--dedup-window", "60")
    assert again == [{**row, "deduplicated": True} for row in first]
    assert redis_client.llen("dramatiq:evaluations.batch") == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dedup", "window"], "dedup mode window needs a window in seconds"),
        (["--dedup", "until_finished", "--dedup-window", "5"], "only applies to dedup mode"),
        (["--dedup", "forever"], "dedup mode must be one of until_finished, until_started"),
        (["--dedup", "window", "--dedup-window", "-1"], "positive number of seconds"),
    ],
)
def test_evalq_submit_refuses_dedup_options_that_do_not_fit_and_enqueues_nothing(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, options: list[str], message: str
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", rule_request())
    completed = run_evalq("submit", str(path), "--json", *options, redis_url=redis_url)
    assert completed.returncode == 2
    assert message in " ".join(completed.stderr.split())
    assert "Traceback" not in completed.stderr
    assert list(redis_client.scan_iter("evalq:*")) == []


def test_a_job_left_running_past_its_time_limit_no_longer_holds_its_key(
    redis_client: redis.Redis,
) -> None:
    request = rule_request()
    first = client.submit_evaluation(request)
    # What a worker killed right after finishing leaves behind: "running", its deadline passed.
    redis_client.hset(f"evalq:job:{first.id}",
                      mapping={"state": "running", "running_until": now_ms() - 1})  # fmt: skip
    second = client.submit_evaluation(request)
    assert (second.deduplicated, second.id != first.id) == (False, True)
    # Within its deadline, a running job still holds the key.
    redis_client.hset(f"evalq:job:{second.id}",
                      mapping={"state": "running", "running_until": now_ms() + 60_000})  # fmt: skip
    assert client.submit_evaluation(request).id == second.id
