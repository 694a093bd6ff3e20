"""``evalq demo``: the main job end to end on one machine.

Redis (embedded unless EVALQ_REDIS_URL is set), one ``dramatiq workers`` pool per lane as
subprocesses, a simulated OpenAI-compatible provider on 127.0.0.1 that injects a realistic mix of
failures, the bundled dataset, a progress bar, and a summary of what happened.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import workers
from config.settings import Settings
from middleware.core.redaction import redact_text
from middleware.state.job_states import TERMINAL_STATES
from middleware.state.jobs import History
from workers import client
from workers.actors import export_results
from workers.bootstrap import repoint
from workers.demo.dataset import build_dataset
from workers.demo.provider import SimulatedProvider
from workers.lanes import lanes
from workers.local_redis import owned_redis
from workers.process_group import ProcessGroup

#: Every fifth request goes to the interactive lane, the rest to the bulk lane.
LIVE_EVERY = 5
#: The demo gives up waiting after this many seconds.
DEADLINE_S = 50.0
#: A key the simulated provider accepts; not a secret.
DEMO_API_KEY = "sk-demo-not-a-real-key"


def run_demo(
    settings: Settings,
    *,
    console: Console,
    quiet: bool = False,
    beside: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> dict[str, Any]:
    """Run the demo and return its summary (also printed unless ``quiet``). ``beside(url)`` is
    entered once Redis is up and left at the end (``evalq demo`` serves the dashboard there)."""
    started = time.monotonic()
    data_dir = Path(settings.data_dir)
    with (
        owned_redis(settings) as (url, embedded),
        SimulatedProvider(behaviour="demo") as provider,
        ProcessGroup() as group,
        beside(url) if beside is not None else nullcontext(),
    ):
        repoint(workers.broker, url)
        env = {
            "EVALQ_REDIS_URL": url,
            "EVALQ_PROVIDER_BASE_URL": provider.base_url,
            "EVALQ_PROVIDER_API_KEY": DEMO_API_KEY,
            "EVALQ_PROVIDER_TIMEOUT_S": "5",
            "EVALQ_EXPORT_DIR": str((data_dir / "demo-exports").resolve()),
        }
        for lane in lanes(workers.settings):
            group.start(
                lane.name,
                lane.worker_argv(),
                env=env,
                log_path=data_dir / "logs" / f"demo-{lane.name}.log",
            )
        if not quiet:
            console.print(
                f"[bold]evalq demo[/bold]: {'embedded ' if embedded else ''}Redis at "
                f"{redact_text(url)}, simulated provider at {provider.base_url}, worker logs in "
                f"{data_dir / 'logs'}"
            )
        requests = build_dataset()
        live = requests[::LIVE_EVERY]
        batch = [r for i, r in enumerate(requests) if i % LIVE_EVERY]
        handles = client.submit_many(live, lane="live") + client.submit_many(batch, lane="batch")
        job_ids = [h.id for h in handles]
        requests_in_order = live + batch
        rule_jobs = {
            h.id for h, r in zip(handles, requests_in_order, strict=True)
            if r["evaluation"]["type"] == "rule"
        }  # fmt: skip
        final = _follow(job_ids, console=console, quiet=quiet, group=group)

        evaluations = sorted({r["evaluation"]["uuid"] for r in requests})
        exports = [export_results.send(uuid).message_id for uuid in evaluations]
        export_states = client.wait_all(exports, timeout=10)

        summary = _summarise(
            job_ids, final, provider, started, export_states, data_dir / "demo-exports"
        )
        summary["rule_attempts"] = _attempt_count(rule_jobs)
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
    documents = History(workers.broker.client).show_many(job_ids)
    rows: dict[tuple[str, str | None], dict[str, Any]] = {}
    by_lane: Counter[str] = Counter()
    attempts_total = 0
    for job_id, document in zip(job_ids, documents, strict=True):
        document = document or {"state": final[job_id], "attempts": [], "queue": "?"}
        by_lane[document["queue"] or "?"] += 1
        attempts = document["attempts"]
        attempts_total += len(attempts)
        failures = [a["category"] for a in attempts if a["outcome"] != "succeeded"]
        state = document["state"] or "unknown"
        if state == "succeeded":
            outcome, category = ("succeeded", None) if not failures else ("retried", failures[0])
        else:
            outcome, category = state, document.get("category") or (failures or [None])[-1]
        row = rows.setdefault(
            (outcome, category),
            {"outcome": outcome, "category": category, "jobs": 0, "max_attempts_seen": 0,
             "attempts_allowed": _allowed(category, document)},
        )  # fmt: skip
        row["jobs"] += 1
        row["max_attempts_seen"] = max(row["max_attempts_seen"], len(attempts))
    wall = time.monotonic() - started
    done = sum(1 for s in final.values() if s in TERMINAL_STATES)
    ordered = sorted(rows.values(), key=lambda r: (_OUTCOME_ORDER.get(r["outcome"], 9),
                                                   r["category"] or ""))  # fmt: skip
    return {
        "jobs": len(job_ids),
        "succeeded": sum(1 for s in final.values() if s == "succeeded"),
        "retried": sum(r["jobs"] for r in ordered if r["outcome"] == "retried"),
        "dead_lettered": sum(1 for s in final.values() if s == "dead_lettered"),
        "pending": len(job_ids) - done,
        "by_category": ordered,
        "lanes": dict(sorted(by_lane.items())),
        "attempts": attempts_total,
        "provider_requests": provider.count(),
        "exports": {
            "written": sum(1 for s in export_states.values() if s == "succeeded"),
            "directory": str(export_dir),
        },
        "wall_time_s": round(wall, 2),
        "jobs_per_s": round(done / wall, 1) if wall else 0.0,
    }


def _attempt_count(job_ids: set[str]) -> int:
    documents = History(workers.broker.client).show_many(sorted(job_ids))
    return sum(len(d["attempts"]) for d in documents if d)


_OUTCOME_ORDER = {"succeeded": 0, "retried": 1, "dead_lettered": 2}


def _allowed(category: str | None, document: dict[str, Any]) -> int | None:
    """How many attempts the policy allows a job that keeps failing with ``category``."""
    if category is None:
        return None
    resolved = workers.policy.resolve(
        category,
        actor=document.get("actor") or "",
        queue=document.get("queue") or "",
        env=workers.settings.env,
    )
    if resolved.action != "retry":
        return 1
    return min(resolved.max_retries + 1, resolved.max_attempts)


def _print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(
        "outcome", "category", "jobs", "attempts (max seen)", "attempts policy allows",
        title="evalq demo: outcomes by category",
    )  # fmt: skip
    for row in summary["by_category"]:
        allowed = row["attempts_allowed"]
        table.add_row(
            row["outcome"].replace("_", "-"),
            row["category"] or "",
            str(row["jobs"]),
            str(row["max_attempts_seen"]),
            "" if allowed is None else str(allowed),
        )
    console.print(table)
    figures = Table("figure", "value", title="figures")
    figures.add_row("jobs", str(summary["jobs"]))
    for lane, count in summary["lanes"].items():
        figures.add_row(f"  on {lane}", str(count))
    figures.add_row("succeeded / retried then succeeded / dead-lettered",
                    f"{summary['succeeded'] - summary['retried']} / {summary['retried']} / "
                    f"{summary['dead_lettered']}")  # fmt: skip
    figures.add_row("attempts", str(summary["attempts"]))
    figures.add_row("requests at the provider", str(summary["provider_requests"]))
    figures.add_row(
        "exports written",
        f"{summary['exports']['written']} (in {summary['exports']['directory']})",
    )
    figures.add_row("wall time", f"{summary['wall_time_s']} s")
    figures.add_row("throughput", f"{summary['jobs_per_s']} jobs/s")
    console.print(figures)
    if summary["pending"]:
        console.print(f"[red]{summary['pending']} job(s) had not finished by the deadline[/red]")
