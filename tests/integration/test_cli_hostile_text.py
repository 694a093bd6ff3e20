"""Every human-readable view of `evalq` shows foreign text literally, whatever it holds.

Hostile strings go through the real path: a request field, a provider's error message and a
judge's answer, via real `dramatiq workers`, the real openai SDK and the simulated provider.
Each human view must exit 0 and show exactly what its `--json` twin says was stored, in its
printable form (``workers.cli.text.visible``): no markup read, nothing cut, nothing dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

import workers
from middleware.state import keys
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.cli import run_evalq
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, target_of
from workers import client
from workers.bootstrap import repoint
from workers.cli.text import visible
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = pytest.mark.integration

CORPUS = (
    r"[/red] [bold]not bold[/bold] \[\d+\] Field required [type=missing, input={}]",
    "\x1b[31mred\x1b[0m \x1b]0;retitled\x07 \x1b[2J",
    "bell\x07 back\x08space carriage\rreturn nul\x00 del\x7f tab\there",
    "line\u2028separator\u2029paragraph\x85next\nnewline",
    "abc\u202eevil\u202c שלום עולם مرحبا e\u0301 n\u0303 \u2066iso\u2069",
)
#: Each job carries the whole corpus at once (one CLI call per view stays quick), or 100 kB.
HOSTILE = {"corpus": " | ".join(CORPUS), "long": "[/red]" + "0123456789" * 10_000}

#: A queue no lane owns, named to break a renderer.
CUSTOM_QUEUE = "custom[/red]\x1b[31m"


@dataclass
class Jobs:
    """Per hostile string: a job dead-lettered by a provider error, one judged with it."""

    failed: dict[str, str]
    judged: dict[str, str]
    redis_url: str


@pytest.fixture(scope="module")
def jobs(_redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    redis.Redis.from_url(_redis_server).flushdb()
    repoint(workers.broker, _redis_server)
    with SimulatedProvider() as provider:
        env = {"EVALQ_PROVIDER_BASE_URL": provider.base_url, "EVALQ_PROVIDER_API_KEY": "sk-x"}
        pools = WorkerPools(redis_url=_redis_server, log_dir=tmp_path_factory.mktemp("logs"))
        pools.start("evaluations.batch", threads=4, env=env)
        try:
            failed, judged = {}, {}
            for name, text in HOSTILE.items():
                request = llm_request()
                request["target"]["actual_output"] = text
                provider.script(target_of(request), [Reply.error(400, text)])
                failed[name] = client.submit_evaluation(request).id
                answered = llm_request()
                provider.script(target_of(answered), [Reply.ok(passed=True, reason=text)])
                judged[name] = client.submit_evaluation(answered).id
            final = client.wait_all([*failed.values(), *judged.values()], timeout=60)
            assert set(final.values()) == {"succeeded", "dead_lettered"}, final
            redis_client = redis.Redis.from_url(_redis_server)
            redis_client.hset(keys.queue_messages_key(CUSTOM_QUEUE), "m-1", "{}")
            redis_client.rpush(keys.queue_key(CUSTOM_QUEUE), "m-1")
            yield Jobs(failed, judged, _redis_server)
        finally:
            pools.stop()


def human(*args: str, redis_url: str) -> str:
    shown = run_evalq(*args, redis_url=redis_url)
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    return shown.stdout


@pytest.mark.parametrize("name", HOSTILE)
def test_result_shows_a_judge_answer_exactly(jobs: Jobs, name: str) -> None:
    shown = human("result", jobs.judged[name], redis_url=jobs.redis_url)
    stored = client.JobHandle(jobs.judged[name]).result(timeout=0)
    assert stored.reason == HOSTILE[name]
    assert f"reason: {visible(HOSTILE[name], multiline=True)}\n" in shown


@pytest.mark.parametrize("name", HOSTILE)
def test_jobs_show_shows_the_provider_error_of_every_attempt(jobs: Jobs, name: str) -> None:
    shown = human("jobs", "show", jobs.failed[name], redis_url=jobs.redis_url)
    stored = History(workers.broker.client).show(jobs.failed[name])
    assert stored is not None
    [attempt] = stored["attempts"]
    assert provider_said(HOSTILE[name], attempt["error_message"])
    assert f"    {visible(attempt['error_type'] + ': ' + attempt['error_message'])}\n" in shown
    assert f"error_message: {visible(stored['error_message'], multiline=True)}\n" in shown


def test_dlq_list_shows_every_error_whole_and_every_id_uncut(jobs: Jobs) -> None:
    shown = human("dlq", "list", redis_url=jobs.redis_url)
    records = dead_letters().list().records
    assert {r.job_id for r in records} == set(jobs.failed.values())
    for record in records:
        assert f"{record.id}  " in shown
        assert record.job_id in shown
        assert f"    {visible(record.error_type + ': ' + record.error_message)}\n" in shown


@pytest.mark.parametrize("name", HOSTILE)
def test_dlq_show_shows_the_error_and_the_request_field_exactly(jobs: Jobs, name: str) -> None:
    [record] = [r for r in dead_letters().list().records if r.job_id == jobs.failed[name]]
    shown = human("dlq", "show", record.id, redis_url=jobs.redis_url)
    assert provider_said(HOSTILE[name], record.error_message)
    assert f"error_message: {visible(record.error_message, multiline=True)}\n" in shown
    [args] = record.payload["args"]
    assert args["target"]["actual_output"] == HOSTILE[name]
    # The payload is shown as JSON: the field is JSON-escaped, then made printable.
    escaped = json.dumps(HOSTILE[name], ensure_ascii=False)
    assert visible(escaped, multiline=True) in shown
    assert visible(record.traceback, multiline=True) in shown


def test_status_shows_a_custom_queue_with_a_hostile_name(jobs: Jobs) -> None:
    shown = human("status", redis_url=jobs.redis_url)
    stored = json.loads(run_evalq("status", "--json", redis_url=jobs.redis_url).stdout)
    assert stored["queues"][CUSTOM_QUEUE]["ready"] == 1
    assert stored["queues"]["evaluations.batch"]["dead_lettered"] == len(HOSTILE)
    [row] = [line for line in shown.splitlines() if line.startswith("custom")]
    assert row.split()[:2] == [visible(CUSTOM_QUEUE), "1"]
    assert f"dead letters: {len(HOSTILE)} (invalid_request {len(HOSTILE)})" in shown


def dead_letters() -> DeadLetters:
    return DeadLetters(workers.broker.client)


def provider_said(text: str, message: str) -> bool:
    """Whether a stored error message holds the provider's ``text`` (after the SDK's
    "Error code: 400 - "; a stored message keeps its first 2,000 characters)."""
    return message.startswith(f"Error code: 400 - {text[:1000]}")


def test_job_failed_names_the_category_and_the_dead_letter(jobs: Jobs) -> None:
    job_id = jobs.failed["corpus"]
    [record] = [r for r in dead_letters().list().records if r.job_id == job_id]
    with pytest.raises(client.JobFailed) as raised:
        client.JobHandle(job_id).result(timeout=0)
    failure = raised.value
    assert (failure.state, failure.category, failure.dead_letter_id) == (
        "dead_lettered", "invalid_request", record.id,
    )  # fmt: skip
    assert str(failure).startswith(f"job {job_id} ended as dead_lettered (invalid_request): ")
    assert str(failure).endswith(f"; dead letter {record.id}")
