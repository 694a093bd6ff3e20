"""evalq against an earlier evalq, side by side: what one change bought, measured in one run.

    python -m bench.ab REV [--actor noop] [-p 1] [-t 8] [--jobs 5000] [--trials 6]

``REV`` is checked out into a temporary git worktree ("base"); this tree is "head". Each tree's
workers wait on their own queue of one embedded ``redis-server``, with Sentry posting to an
endpoint on 127.0.0.1, as in ``bench_throughput``; the trials alternate the two (base first,
then head first, ...) and the table gives medians and the head/base ratio of the same run. The
base tree runs this tree's ``bench/throughput_actors.py``, so that both declare their actors on
a queue of their own whatever the revision.

This is how ``docs/benchmarks.md`` measures each change under "Changes since". It prints; it
writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import redis

from bench.bench_throughput import POLICY_OVERRIDES, SCENARIOS, _stack_env
from bench.throughput_trial import REPO_ROOT, Pool, TrialResult, run_trial, warm_up
from tests.support.policy import write_test_policy
from tests.support.sentry_endpoint import SentryEndpoint
from workers.embedded_redis import EmbeddedRedis

TREES = ("base", "head")
FIGURES = (
    ("jobs/s", "jobs_per_s"),
    ("worker CPU us/job", "cpu_us_per_job"),
    ("Redis commands/job", "commands_per_job"),
    ("Redis server CPU us/job", "redis_cpu_us_per_job"),
)


def _worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "--quiet",
                    str(where), rev], check=True)  # fmt: skip
    shutil.copy(REPO_ROOT / "bench" / "throughput_actors.py", where / "bench")
    return where


def _remove_worktree(where: Path) -> None:
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(where)],
                   check=False)  # fmt: skip


def compare(rev: str, *, actor: str, processes: int, threads: int, jobs: int,
            trials: int) -> dict[str, list[TrialResult]]:  # fmt: skip
    """Each tree's trials of ``jobs`` jobs of ``actor``."""
    results: dict[str, list[TrialResult]] = {tree: [] for tree in TREES}
    with tempfile.TemporaryDirectory(prefix="evalq-bench-ab-") as tmp_name:
        tmp = Path(tmp_name)
        base = _worktree(rev, tmp / "base")
        try:
            with EmbeddedRedis(data_dir=tmp / "redis") as server, SentryEndpoint() as sentry:
                client = redis.Redis.from_url(server.url)
                policy = write_test_policy(tmp / "policy.toml", POLICY_OVERRIDES)
                # evalq's settings as bench_throughput gives them (its own stack name is the
                # tree's, so that each tree has a queue of its own).
                scenario = next(s for s in SCENARIOS if s.actor == actor)
                env = {"BENCH_STACK": "evalq",
                       **_stack_env("evalq", scenario, server.url, policy, sentry.dsn)}  # fmt: skip
                pools = {tree: Pool(tree, processes, threads, env, tmp / "logs",
                                    tree=base if tree == "base" else REPO_ROOT)
                         for tree in TREES}  # fmt: skip
                try:
                    for pool in pools.values():
                        pool.start(client)
                        warm_up(client, pool)
                    for trial in range(trials):
                        for tree in TREES if trial % 2 == 0 else reversed(TREES):
                            results[tree].append(run_trial(client, pools[tree], actor, jobs))
                finally:
                    for pool in pools.values():
                        pool.stop()
                client.close()
        finally:
            _remove_worktree(base)
    return results


def report(results: dict[str, list[TrialResult]]) -> str:
    lines = [f"{'figure':<26}{'base':>12}{'head':>12}{'head/base':>11}"]
    for label, attribute in FIGURES:
        base, head = (statistics.median(getattr(r, attribute) for r in results[tree])
                      for tree in TREES)  # fmt: skip
        ratio = head / base if base else float("nan")
        lines.append(f"{label:<26}{base:>12.1f}{head:>12.1f}{ratio:>11.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the revision to compare this tree against")
    parser.add_argument("--actor", default="noop",
                        choices=["noop", "sleep_10ms", "fail_once", "dead_letter"])  # fmt: skip
    parser.add_argument("-p", "--processes", type=int, default=1)
    parser.add_argument("-t", "--threads", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    results = compare(args.rev, actor=args.actor, processes=args.processes,
                      threads=args.threads, jobs=args.jobs, trials=args.trials)  # fmt: skip
    print(f"{args.actor} p{args.processes}t{args.threads}, {args.jobs:,} jobs x {args.trials} "
          f"trials, base {args.rev} vs this tree")  # fmt: skip
    print(report(results))


if __name__ == "__main__":
    main()
