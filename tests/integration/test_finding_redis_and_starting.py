"""How a bare ``dramatiq workers``, the client and ``evalq up`` find Redis, and how a worker
stops on a configuration problem: one line naming what is wrong, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from middleware.worker_registry import live_workers
from tests.support.cli import EVALQ, REPO_ROOT, evalq_env, run_evalq, wait_for_file
from tests.support.requests import rule_request
from tests.support.worker_start import evalq_lines, run_dramatiq_workers, worker_argv
from workers.process_group import ProcessGroup

pytestmark = pytest.mark.integration

NO_REDIS = (
    "evalq: no Redis: EVALQ_REDIS_URL is not set and no running `evalq up` was found in this "
    "directory or a parent: set EVALQ_REDIS_URL, or run `evalq up` in another terminal"
)


@pytest.fixture
def running_up(tmp_path: Path) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    """A real ``evalq up`` in ``tmp_path/project`` (no EVALQ_REDIS_URL: its embedded Redis),
    sized small; yields (project dir, its Redis URL, the process)."""
    project = tmp_path / "project"
    project.mkdir()
    sizes = {f"EVALQ_{lane}_THREADS": "1" for lane in ("LIVE", "BATCH", "DEFAULT")}
    up = subprocess.Popen([EVALQ, "up"], cwd=project, env=evalq_env(None, **sizes),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        advert = project / ".evalq" / "up.json"
        wait_for_file(advert, up)
        yield project, json.loads(advert.read_text())["redis_url"], up
    finally:
        up.terminate()
        up.wait(timeout=30)


def test_a_bare_worker_with_nothing_configured_exits_2_saying_what_to_set(tmp_path: Path) -> None:
    completed = run_dramatiq_workers({}, cwd=tmp_path)
    assert completed.returncode == 2
    lines = evalq_lines(completed)
    assert len(lines) == 1 and lines[0].startswith(NO_REDIS)


def test_a_client_with_nothing_configured_raises_no_redis(tmp_path: Path) -> None:
    script = (
        "from workers.client import Evalq\n"
        "from workers.local_redis import NoRedisError\n"
        "try:\n    Evalq.from_env()\n"
        "except NoRedisError as error:\n    print(error.describe()); raise SystemExit(2)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                               env={**evalq_env(None), "PYTHONPATH": str(REPO_ROOT)},
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert completed.returncode == 2
    assert ("evalq: " + completed.stdout.strip()).startswith(NO_REDIS)


def test_a_bare_worker_and_the_client_find_a_running_evalq_up_from_a_subdirectory(
    running_up: tuple[Path, str, subprocess.Popen[str]],
) -> None:
    project, url, _ = running_up
    below = project / "src" / "app"
    below.mkdir(parents=True)
    before = len(live_workers(redis.Redis.from_url(url)))
    env = {**evalq_env(None), "PYTHONPATH": str(REPO_ROOT), "dramatiq_worker_timeout": "200"}
    with ProcessGroup() as group:
        group.start("bare", worker_argv(), env=env, cwd=below)
        script = (
            "import json, sys\n"
            "from workers.client import Evalq, submit_evaluation\n"
            "handle = submit_evaluation(json.loads(sys.argv[1]), lane='live')\n"
            "print(handle.result(timeout=60).has_passed)\n"
            "print(Evalq.from_env().state(handle.id))\n"
        )
        completed = subprocess.run([sys.executable, "-c", script, json.dumps(rule_request())],
                                   cwd=below, env=env, capture_output=True, text=True,
                                   timeout=90)  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.split() == ["True", "succeeded"]
        client = redis.Redis.from_url(url)
        assert len(live_workers(client)) > before  # the bare worker registered on up's Redis


def test_a_second_evalq_up_on_the_same_data_dir_refuses_with_the_first_ones_pid_and_url(
    running_up: tuple[Path, str, subprocess.Popen[str]],
) -> None:
    project, url, first = running_up
    second = run_evalq("up", redis_url=None, cwd=project, timeout=60)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"evalq: evalq up is already running: pid {first.pid}, Redis at {url}, on data dir "
        ".evalq; stop it first, or give this one another EVALQ_DATA_DIR"
    ]
    assert first.poll() is None
    assert json.loads((project / ".evalq" / "up.json").read_text())["pid"] == first.pid


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            {"EVALQ_PROVIDER_TIMEOUT_S": "soon"},
            "evalq: invalid settings: EVALQ_PROVIDER_TIMEOUT_S: Input should be a valid number, "
            "unable to parse string as a number",
        ),
        (
            {"EVALQ_TIME_LIMITS": "{live: 3}"},
            "evalq: invalid settings: EVALQ_TIME_LIMITS: not valid JSON (Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1))",
        ),
        (
            {"EVALQ_TIME_LIMITS": '{"run_live_evaluaton": 30}'},
            "evalq: invalid settings: EVALQ_TIME_LIMITS: unknown actor(s) run_live_evaluaton; "
            "the actors of this process are: export_results, run_batch_evaluation, "
            "run_live_evaluation",
        ),
        (
            {"EVALQ_POLICY_FILE": "/nowhere/policies.toml"},
            "evalq: invalid policy file: /nowhere/policies.toml: does not exist",
        ),
    ],
)
def test_a_worker_with_a_configuration_problem_exits_2_with_one_line(
    redis_url: str, environment: dict[str, str], expected: str
) -> None:
    completed = run_dramatiq_workers(environment, redis_url=redis_url)
    assert completed.returncode == 2
    assert evalq_lines(completed) == [expected]
    assert "Traceback" not in completed.stderr


def test_a_worker_with_an_invalid_sentry_dsn_exits_2_without_echoing_it(redis_url: str) -> None:
    completed = run_dramatiq_workers({"SENTRY_DSN": "not-a-dsn-secret-part"}, redis_url=redis_url)
    assert completed.returncode == 2
    lines = evalq_lines(completed)
    assert len(lines) == 1 and lines[0].startswith("evalq: invalid settings: SENTRY_DSN:")
    assert "secret-part" not in completed.stderr


def test_evalq_help_works_with_a_bad_dsn_and_check_ignores_the_configured_file(
    tmp_path: Path,
) -> None:
    helped = run_evalq("--help", redis_url=None, SENTRY_DSN="not-a-dsn", cwd=tmp_path)
    assert helped.returncode == 0 and "Usage" in helped.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[categories.rate_limited]\nmax_retry = 3\n")
    good = str(REPO_ROOT / "config" / "policies.toml")
    checked = run_evalq("policy", "check", good, "--json", redis_url=None,
                        EVALQ_POLICY_FILE=str(bad), SENTRY_DSN="not-a-dsn")  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["file"] == good
    refused = run_evalq("policy", "check", str(bad), redis_url=None)
    assert refused.returncode == 2
    assert "categories.rate_limited.max_retry: unknown key" in refused.stderr
    assert os.path.basename(str(bad)) in refused.stderr
