"""Where a worker's per-job time goes: ``python -m bench.profile_worker [JOBS [ACTOR]]``.

Runs one ``-p 1 -t 8`` pool of each stack on no-op jobs (or on ``dead_letter``, ``fail_once`` or
``sleep_10ms`` jobs of ``bench.throughput_actors``; evalq with Sentry on a local endpoint, as in
``bench_throughput``), prints the Redis commands per job of each stack command by command
(``INFO commandstats`` deltas; ``hlen`` is the bench's own completion poll), and samples each
stack's worker process with py-spy (GIL-holding samples only, so idle threads do not count)
while it drains ``JOBS`` jobs (default 20,000). The raw stacks go to
``bench/results/profile-<stack>.txt``; the summary printed is, per stack, the share of samples
in which each marker frame (evalq's hooks, redis-py, Dramatiq's loops) appears.

``--wall`` samples every thread, idle or not (py-spy ``--idle``, without pausing the worker),
and prints where a worker thread's wall-clock time goes per job: in the actor, waiting for its
group commit's round trip, taking the next message, and the rest. This is where a job that
waits (``sleep_10ms``) loses time to a stack, which GIL-holding samples do not show.
``--threads`` sets the pool's threads (default 8).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
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


def _profile(client: redis.Redis, pool: Pool, jobs: int, actor: str, *, wall: bool) -> Path:
    """Sample the pool's worker process while it drains ``jobs`` jobs; the raw stacks' path.
    ``wall``: every thread's samples, idle or not, with the drain's jobs/s on the first line."""
    pid = pool.processes_now()[1].pid  # the forked worker process, not the supervisor
    _stage(client, pool.queue, actor, jobs)
    raw = RESULTS / f"profile-{pool.stack}{'-wall' if wall else ''}.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    how = ["--idle", "--threads", "--nonblocking", "--rate", "200"] if wall else [
        "--gil", "--rate", "250"]  # fmt: skip
    sampler = subprocess.Popen([spy, "record", *how, "--format", "raw",
                                "--output", str(raw), "--pid", str(pid)])  # fmt: skip
    try:
        started = time.perf_counter()
        _release(client, pool.queue)
        _wait_until_drained(client, pool.queue, timeout=300)
        jobs_per_s = jobs / (time.perf_counter() - started)
    finally:
        sampler.send_signal(subprocess.signal.SIGINT)
        sampler.wait(timeout=30)
    if wall:
        raw.write_text(f"# {jobs_per_s:.1f} jobs/s\n" + raw.read_text())
    return raw


#: Where a worker thread's wall-clock sample is, tested in this order on its whole stack.
WALL_PLACES = (
    ("in the actor", ("throughput_actors.py",)),
    ("waiting for its group commit (start, finish)", ("GroupCommit.__call__ (",)),
    ("taking the next message", ("Queue.get (",)),
)  # fmt: skip


def _wall_place(frames: list[str]) -> str:
    for place, markers in WALL_PLACES:
        if any(marker in frame for frame in frames for marker in markers):
            if place.startswith("waiting") and "GroupCommit.__call__ (" not in frames[-1]:
                return "sending a group commit's round trip (pack, send, read, hand on)"
            if place.startswith("taking") and any("process_message" in f for f in frames):
                continue
            return place
    return "the rest (hooks, Dramatiq, redis-py, waiting for the GIL)"


def _wall_summary(stack: str, raw: Path, threads: int) -> None:
    lines = raw.read_text().splitlines()
    jobs_per_s = float(lines[0].split()[1])
    places: collections.Counter[str] = collections.Counter()
    for line in lines[1:]:
        stack_text, _, samples = line.rpartition(" ")
        if "WorkerThread.run" in stack_text:
            places[_wall_place(stack_text.split(";"))] += int(samples)
    total = sum(places.values())
    cycle_ms = threads / jobs_per_s * 1000  # one worker thread's time per job
    print(f"{stack}: {jobs_per_s:.0f} jobs/s; a worker thread's {cycle_ms:.2f} ms per job:")
    for place, samples in places.most_common():
        print(f"  {samples / total * cycle_ms:6.2f} ms  {samples / total:6.1%}  {place}")


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


def main(jobs: int, actor: str = "noop", *, wall: bool = False, threads: int = 8) -> None:
    # The scenario only chooses the stacks' settings (the pool here is always -p 1).
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
            pool = Pool(stack, 1, threads, env, Path(tmp) / "logs")
            try:
                pool.start(client)
                warm_up(client, pool)
                per_job = _breakdown(client, pool, 2_000, actor)
                print(f"{stack}: Redis commands per {actor} job", per_job)
                raws[stack] = _profile(client, pool, jobs, actor, wall=wall)
            finally:
                pool.stop()
    for stack, raw in raws.items():
        if wall:
            _wall_summary(stack, raw, threads)
        else:
            _summary(stack, raw)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker")
    parser.add_argument("jobs", type=int, nargs="?", default=20_000)
    parser.add_argument("actor", nargs="?", default="noop",
                        choices=[scenario.actor for scenario in SCENARIOS])  # fmt: skip
    parser.add_argument("--wall", action="store_true", help="every thread's wall-clock time")
    parser.add_argument("--threads", type=int, default=8)
    options = parser.parse_args()
    main(options.jobs, options.actor, wall=options.wall, threads=options.threads)
