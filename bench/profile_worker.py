"""Where a worker's per-job time goes: ``python -m bench.profile_worker [JOBS [ACTOR]]``.

Runs one ``-p 1 -t 8`` pool of each stack on no-op jobs (or on ``dead_letter``, ``fail_once`` or
``sleep_10ms`` jobs of ``bench.throughput_actors``; evalq with Sentry on a local endpoint, as in
``bench_throughput``), prints the Redis commands per job of each stack command by command
(``INFO commandstats`` deltas; ``hlen`` is the bench's own completion poll), and samples each
stack's worker process with py-spy (GIL-holding samples only, so idle threads do not count)
while it drains ``JOBS`` jobs (default 20,000). The raw stacks go to
``bench/results/profile-<stack>.txt``; the summary printed is, per stack, the share of samples
in which each marker frame (evalq's hooks, redis-py, Dramatiq's loops) appears.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from bench.bench_throughput import POLICY_OVERRIDES, SCENARIOS, _stack_env
from bench.throughput_trial import Pool, _release, _stage, _wait_until_drained, warm_up
from tests.support.policy import write_test_policy
from tests.support.sentry_endpoint import SentryEndpoint
from workers.embedded_redis import EmbeddedRedis

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Frames that name where a sample spends its time, from the outermost that matches.
MARKERS = (
    "start_attempt", "_finish", "before_process_message", "after_process_message",
    "record_attempt", "_flush", "after_enqueue", "before_consume", "GuardedConsumer",
    "redact_text", "format_exception", "execute_command", "_execute_transaction", "evalsha",
    "parse_response", "send_packed_command", "process_message", "handle_delayed_messages",
)  # fmt: skip


def commands_by_name(client: redis.Redis) -> dict[str, int]:
    """Calls of each command so far."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def _breakdown(client: redis.Redis, pool: Pool, jobs: int, actor: str) -> dict[str, float]:
    _stage(client, pool.queue, actor, jobs)
    before = commands_by_name(client)
    _release(client, pool.queue)
    _wait_until_drained(client, pool.queue, timeout=300)
    after = commands_by_name(client)
    deltas = {name: (after[name] - before.get(name, 0)) / jobs for name in after}
    return {name: per_job for name, per_job in sorted(deltas.items()) if per_job >= 0.01}


def _profile(client: redis.Redis, pool: Pool, jobs: int, actor: str) -> Path:
    pid = pool.processes_now()[1].pid  # the forked worker process, not the supervisor
    _stage(client, pool.queue, actor, jobs)
    raw = RESULTS / f"profile-{pool.stack}.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    sampler = subprocess.Popen([spy, "record", "--gil", "--format", "raw", "--rate", "250",
                                "--output", str(raw), "--pid", str(pid)])  # fmt: skip
    try:
        _release(client, pool.queue)
        _wait_until_drained(client, pool.queue, timeout=300)
    finally:
        sampler.send_signal(subprocess.signal.SIGINT)
        sampler.wait(timeout=30)
    return raw


def _summary(stack: str, raw: Path) -> None:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        frames, _, samples = line.rpartition(" ")
        total += int(samples)
        seen = {marker for marker in MARKERS if marker in frames}
        counts.update({marker: int(samples) for marker in seen})
    print(f"{stack}: {total} GIL-holding samples")
    for marker, samples in counts.most_common():
        print(f"  {samples / total:6.1%}  {marker}")


def main(jobs: int, actor: str = "noop") -> None:
    # The scenario only chooses the stacks' settings (the pool here is always -p 1 -t 8).
    scenario = next(s for s in SCENARIOS if s.actor == actor)
    with (
        tempfile.TemporaryDirectory(prefix="evalq-profile-") as tmp,
        EmbeddedRedis(data_dir=Path(tmp) / "redis") as server,
        SentryEndpoint() as sentry,
    ):
        client = redis.Redis.from_url(server.url)
        raws: dict[str, Path] = {}
        policy = write_test_policy(Path(tmp) / "policy.toml", POLICY_OVERRIDES)
        for stack in ("bare", "evalq"):
            env = _stack_env(stack, scenario, server.url, policy, sentry.dsn)
            pool = Pool(stack, 1, 8, env, Path(tmp) / "logs")
            try:
                pool.start(client)
                warm_up(client, pool)
                per_job = _breakdown(client, pool, 2_000, actor)
                print(f"{stack}: Redis commands per {actor} job", per_job)
                raws[stack] = _profile(client, pool, jobs, actor)
            finally:
                pool.stop()
    for stack, raw in raws.items():
        _summary(stack, raw)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, *sys.argv[2:3])
