"""`evalq up` and `evalq demo`, run as a user runs them: no EVALQ_REDIS_URL, embedded Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.support.cli import EVALQ, evalq_env, run_evalq, wait_for_file
from tests.support.requests import rule_request
from workers.demo.dataset import build_dataset

pytestmark = pytest.mark.integration


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_gone(processes: list[psutil.Process], timeout: float = 20.0) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def test_up_serves_other_evalq_commands_and_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [EVALQ, "up"],
        cwd=tmp_path,
        env=evalq_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_file(tmp_path / ".evalq" / "up.json", up)
        children = descendants(up.pid)
        names = sorted(p.name() for p in children)
        assert any("redis-server" in n for n in names), names

        requests = tmp_path / "in.jsonl"
        requests.write_text(json.dumps(rule_request()) + "\n")
        submitted = run_evalq(
            "submit",
            str(requests),
            "--lane",
            "live",
            "--wait",
            "--timeout",
            "60",
            "--json",
            redis_url=None,
            cwd=tmp_path,
        )
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["job_id"]
        shown = run_evalq("result", job_id, "--json", redis_url=None, cwd=tmp_path)
        assert json.loads(shown.stdout)["has_passed"] is True

        status = json.loads(run_evalq("status", "--json", redis_url=None, cwd=tmp_path).stdout)
        assert sorted(q for w in status["workers"] for q in w["queues"]) == [
            "default",
            "evaluations.batch",
            "evaluations.live",
        ]
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert wait_gone(children) == []
    assert not (tmp_path / ".evalq" / "up.json").exists()


def test_up_killed_outright_leaves_no_orphans(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [EVALQ, "up"],
        cwd=tmp_path,
        env=evalq_env(None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_file(tmp_path / ".evalq" / "up.json", up)  # type: ignore[arg-type]
        time.sleep(1.0)  # let the pools fork their worker processes
        children = descendants(up.pid)
        assert len(children) >= 4
    finally:
        up.kill()
        up.wait(timeout=10)
    assert wait_gone(children) == []


def test_demo_runs_the_bundled_dataset_and_ends_with_its_summary(tmp_path: Path) -> None:
    started = time.monotonic()
    completed = run_evalq("demo", "--json", redis_url=None, cwd=tmp_path, timeout=90)
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["jobs"] >= 200
    assert summary["pending"] == 0
    assert summary["succeeded"] + summary["dead_lettered"] == summary["jobs"]
    assert summary["lanes"]["evaluations.live"] > 0 and summary["lanes"]["evaluations.batch"] > 0
    rows = {(row["outcome"], row["category"]): row for row in summary["by_category"]}
    # The legacy model cannot do tool calls: those jobs run once each, straight to the DLQ.
    capability = rows[("dead_lettered", "model_capability")]
    assert (capability["jobs"], capability["max_attempts_seen"]) == (6, 1)
    # The simulated provider's 429s and 500s are retried and then succeed.
    assert rows[("retried", "rate_limited")]["jobs"] > 0
    assert rows[("retried", "provider_unavailable")]["jobs"] > 0
    # No job ever ran more often than its policy allows.
    for row in summary["by_category"]:
        if row["attempts_allowed"] is not None:
            assert row["max_attempts_seen"] <= row["attempts_allowed"], row
    assert summary["attempts"] == summary["provider_requests"] + summary["rule_attempts"]
    assert summary["exports"]["written"] == len({r["evaluation"]["uuid"] for r in build_dataset()})
    assert elapsed < 60
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_up_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [EVALQ, "up"],
        cwd=tmp_path,
        env=evalq_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for_file(tmp_path / ".evalq" / "up.json", up)
    time.sleep(1.0)  # let the pools fork their worker processes
    children = descendants(up.pid)
    up.send_signal(signal.SIGTERM)
    output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "evalq up: stopping worker pools, then Redis" in output
    assert "Traceback" not in output
    assert wait_gone(children) == []
    assert not (tmp_path / ".evalq" / "up.json").exists()


def test_up_started_in_the_background_of_a_script_stops_on_sigint(tmp_path: Path) -> None:
    # A shell without job control starts `cmd &` with SIGINT ignored; Python keeps it ignored
    # unless told otherwise, and Ctrl-C (or `kill -INT`) would do nothing.
    log = tmp_path / "up.log"
    script = subprocess.Popen(
        ["sh", "-c", '"$0" up >"$1" 2>&1 & echo $!; wait', EVALQ, str(log)],
        cwd=tmp_path,
        env=evalq_env(None),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert script.stdout is not None
    pid = int(script.stdout.readline())
    try:
        wait_for_file(tmp_path / ".evalq" / "up.json", script)
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        time.sleep(1.0)
        children = descendants(pid)
        os.kill(pid, signal.SIGINT)
        script.wait(timeout=60)
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
    output = log.read_text()
    assert "evalq up: stopping worker pools, then Redis" in output
    assert "Traceback" not in output
    assert wait_gone(children) == []
    assert not (tmp_path / ".evalq" / "up.json").exists()
