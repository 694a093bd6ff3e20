"""What the image runs is what a wheel install gives (deploy/Dockerfile does exactly this): the
built wheel and the locked requirements in a fresh venv, started away from the source tree, boot
`dramatiq workers`, find the shipped policy by package path and run a job."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from middleware.worker_registry import live_workers
from tests.deploy.conftest import REPO_ROOT
from tests.support.requests import rule_request
from workers import client
from workers.process_group import ProcessGroup

pytestmark = pytest.mark.integration


def uv() -> str:
    found = REPO_ROOT / ".tools" / "bin" / "uv"
    return str(found) if found.exists() else str(shutil.which("uv"))


def run(*argv: str, cwd: Path = REPO_ROOT) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the built wheel, a fresh venv holding it and the locked runtime requirements)."""
    root = tmp_path_factory.mktemp("wheel")
    run(uv(), "build", "--wheel", "--out-dir", str(root / "dist"), "--quiet")
    (wheel,) = (root / "dist").glob("evalq-*.whl")
    requirements = root / "requirements.txt"
    run(
        uv(),
        "export",
        "--locked",
        "--no-dev",
        "--no-emit-project",
        "--format",
        "requirements-txt",
        "--quiet",
        "-o",
        str(requirements),
    )
    venv = root / "venv"
    run(uv(), "venv", "--quiet", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    # Same pins, same hashes as `make sync`. Offline first (the cache `make sync` filled); a
    # cache without the index's metadata for them (uv keeps that only for what it resolved
    # itself) needs the package index, as the image build does.
    install = [uv(), "pip", "install", "--quiet", "--python", python, "--require-hashes",
               "--no-deps", "-r", str(requirements)]  # fmt: skip
    try:
        run(*install, "--offline")
    except AssertionError as offline:
        if "not found in the cache" not in str(offline):
            raise
        run(*install)
    run(uv(), "pip", "install", "--quiet", "--offline", "--python", python, "--no-deps", str(wheel))
    yield wheel, venv


#: No source tree on the path: an empty working directory, nothing from PYTHONPATH or CWD.
def isolated_env(**extra: str) -> dict[str, str]:
    return {"PYTHONPATH": "", "PYTHONSAFEPATH": "1", **extra}


def test_the_wheel_ships_every_package_and_the_policy_file(wheel_venv: tuple[Path, Path]) -> None:
    wheel, _ = wheel_venv
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "config/policies.toml" in names
    assert {"middleware/heartbeat.py", "workers/__init__.py", "dashboard/__init__.py"} <= names


def test_the_installed_wheel_finds_its_shipped_policy_by_package_path(
    wheel_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = wheel_venv
    code = (
        "from config.settings import Settings; import workers.lanes as l; "
        "print(Settings().policy_file); print(l.__file__)"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=isolated_env(PATH="/usr/bin:/bin"),
    )
    assert result.returncode == 0, result.stderr
    policy, module = (Path(line) for line in result.stdout.splitlines())
    assert policy.is_file() and policy.is_relative_to(venv), policy
    assert module.is_relative_to(venv), module


def test_the_installed_wheel_boots_dramatiq_workers_and_runs_a_job(
    wheel_venv: tuple[Path, Path], redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    _, venv = wheel_venv
    workdir = tmp_path / "empty"
    workdir.mkdir()
    beat = tmp_path / "heartbeat"
    argv = [
        str(venv / "bin" / "dramatiq"),
        "workers",
        "--processes",
        "1",
        "--threads",
        "1",
        "--queues",
        "evaluations.live",
        "--worker-shutdown-timeout",
        "5000",
    ]
    env = isolated_env(
        EVALQ_REDIS_URL=redis_url,
        EVALQ_ENV="test",
        EVALQ_HEARTBEAT_FILE=str(beat),
        EVALQ_HEARTBEAT_INTERVAL_S="0.5",
        dramatiq_worker_timeout="200",
    )
    group = ProcessGroup()
    log = tmp_path / "worker.log"
    try:
        group.start("wheel", argv, env=env, log_path=log, cwd=workdir)
        deadline = time.monotonic() + 30
        while not live_workers(redis_client):
            assert group.poll()["wheel"] is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        (worker,) = live_workers(redis_client)
        assert worker["queues"] == ["evaluations.live"]

        request = rule_request(pattern="hel+o", output="hello")
        result = client.submit_evaluation(request, lane="live").result(timeout=30)
        assert (result.target_uuid, result.has_passed) == (request["target"]["uuid"], True)
        # The image's liveness probe passes on the installed code too.
        deadline = time.monotonic() + 10
        while not beat.exists():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        probe = [str(venv / "bin" / "python"), "-m", "middleware.heartbeat", str(beat)]
        assert subprocess.run(probe, cwd=workdir, env=env, timeout=30).returncode == 0
    finally:
        group.stop(timeout=15)
