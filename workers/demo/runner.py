"""``evalq demo``: the main job end to end on one machine.

Redis (embedded unless EVALQ_REDIS_URL is set), one ``dramatiq workers`` pool per lane as
subprocesses, a simulated OpenAI-compatible provider on 127.0.0.1 that injects a realistic mix of
failures, the bundled dataset, a progress bar, and a summary of what happened.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import workers
from config.settings import Settings
from middleware.job_states import TERMINAL_STATES, job_key
from workers import client
from workers.actors import export_results
from workers.bootstrap import repoint
from workers.demo.dataset import build_dataset
from workers.demo.provider import SimulatedProvider
from workers.lanes import LANES
from workers.local_redis import owned_redis
from workers.process_group import ProcessGroup

#: Every fifth request goes to the interactive lane, the rest to the bulk lane.
LIVE_EVERY = 5
#: The demo gives up waiting after this many seconds.
DEADLINE_S = 50.0
#: A key the simulated provider accepts; not a secret.
DEMO_API_KEY = "sk-demo-not-a-real-key"


def run_demo(settings: Settings, *, console: Console, quiet: bool = False) -> dict[str, Any]:
    """Run the demo and return its summary (also printed unless ``quiet``)."""
    started = time.monotonic()
    data_dir = Path(settings.data_dir)
    with (
        owned_redis(settings) as (url, embedded),
        SimulatedProvider(behaviour="demo") as provider,
        ProcessGroup() as group,
    ):
        repoint(workers.broker, url)
        env = {
            "EVALQ_REDIS_URL": url,
            "EVALQ_PROVIDER_BASE_URL": provider.base_url,
            "EVALQ_PROVIDER_API_KEY": DEMO_API_KEY,
            "EVALQ_PROVIDER_TIMEOUT_S": "5",
            "EVALQ_EXPORT_DIR": str((data_dir / "demo-exports").resolve()),
        }
        for lane in LANES:
            group.start(
                lane.name,
                lane.worker_argv(),
                env=env,
                log_path=data_dir / "logs" / f"demo-{lane.name}.log",
            )
        if not quiet:
            console.print(
                f"[bold]evalq demo[/bold]: {'embedded ' if embedded else ''}Redis at "
                f"{url}, simulated provider at {provider.base_url}, worker logs in "
                f"{data_dir / 'logs'}"
            )
        requests = build_dataset()
        live = requests[::LIVE_EVERY]
        batch = [r for i, r in enumerate(requests) if i % LIVE_EVERY]
        handles = client.submit_many(live, lane="live") + client.submit_many(batch, lane="batch")
        job_ids = [h.id for h in handles]
        final = _follow(job_ids, console=console, quiet=quiet, group=group)

        evaluations = sorted({r["evaluation"]["uuid"] for r in requests})
        exports = [export_results.send(uuid).message_id for uuid in evaluations]
        export_states = client.wait_all(exports, timeout=10)

        summary = _summarise(
            job_ids, final, provider, started, export_states, data_dir / "demo-exports"
        )
    if not quiet:
        _print_summary(summary, console)
    return summary


def _follow(
    job_ids: list[str], *, console: Console, quiet: bool, group: ProcessGroup
) -> dict[str, str | None]:
    columns = (
        TextColumn("evaluations"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        task = progress.add_task("run", total=len(job_ids), detail="")

        def update(states: dict[str, str | None]) -> None:
            counts = Counter(states.values())
            done = sum(n for state, n in counts.items() if state in TERMINAL_STATES)
            detail = (
                f"running {counts['running']}  succeeded {counts['succeeded']}  "
                f"dead-lettered {counts['dead_lettered']}"
            )
            progress.update(task, completed=done, detail=detail)
            dead = {name: code for name, code in group.poll().items() if code is not None}
            if dead:
                raise RuntimeError(f"worker pool(s) exited during the demo: {dead}")

        return client.wait_all(job_ids, timeout=DEADLINE_S, on_update=update)


def _summarise(
    job_ids: list[str],
    final: dict[str, str | None],
    provider: SimulatedProvider,
    started: float,
    export_states: dict[str, str | None],
    export_dir: Path,
) -> dict[str, Any]:
    pipe = workers.broker.client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(job_key(job_id), "queue", "error_type")
    by_outcome: Counter[str] = Counter()
    by_lane: Counter[str] = Counter()
    for job_id, (queue, error_type) in zip(job_ids, pipe.execute(), strict=True):
        state = final[job_id] or "unknown"
        by_lane[(queue or b"?").decode()] += 1
        if state == "dead_lettered":
            by_outcome[f"dead_lettered: {(error_type or b'?').decode()}"] += 1
        else:
            by_outcome[state] += 1
    wall = time.monotonic() - started
    done = sum(1 for s in final.values() if s in TERMINAL_STATES)
    return {
        "jobs": len(job_ids),
        "succeeded": sum(1 for s in final.values() if s == "succeeded"),
        "dead_lettered": sum(1 for s in final.values() if s == "dead_lettered"),
        "pending": len(job_ids) - done,
        "outcomes": dict(sorted(by_outcome.items())),
        "lanes": dict(sorted(by_lane.items())),
        "provider_requests": provider.count(),
        "exports": {
            "written": sum(1 for s in export_states.values() if s == "succeeded"),
            "directory": str(export_dir),
        },
        "wall_time_s": round(wall, 2),
        "jobs_per_s": round(done / wall, 1) if wall else 0.0,
    }


def _print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table("outcome", "jobs", title="evalq demo: outcomes")
    for outcome, count in summary["outcomes"].items():
        table.add_row(outcome, str(count))
    console.print(table)
    figures = Table("figure", "value", title="figures")
    figures.add_row("jobs", str(summary["jobs"]))
    for lane, count in summary["lanes"].items():
        figures.add_row(f"  on {lane}", str(count))
    figures.add_row("requests at the provider", str(summary["provider_requests"]))
    figures.add_row(
        "exports written", f"{summary['exports']['written']} (in {summary['exports']['directory']})"
    )
    figures.add_row("wall time", f"{summary['wall_time_s']} s")
    figures.add_row("throughput", f"{summary['jobs_per_s']} jobs/s")
    console.print(figures)
    if summary["pending"]:
        console.print(f"[red]{summary['pending']} job(s) had not finished by the deadline[/red]")
