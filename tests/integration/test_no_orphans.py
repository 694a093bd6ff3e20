"""No process evalq starts outlives it: not on exit, Ctrl-C, an error, SIGTERM or SIGKILL."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from workers.process_group import ProcessGroup

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DRAMATIQ = REPO_ROOT / ".venv" / "bin" / "dramatiq"

# Mimics `dramatiq workers`: a main process that forks a worker process and, on SIGTERM, stops
# it before exiting. It writes the worker's pid to the file named by argv[1].
FORKING_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    worker = 0
    def stop(signum, frame):
        os.kill(worker, signal.SIGTERM)
        os.waitpid(worker, 0)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    worker = os.fork()
    if worker == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        time.sleep(600)
        os._exit(0)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(worker))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        time.sleep(600)
    """
)

# What an `evalq up` does, in miniature: embedded Redis, then the pools; stop in reverse order.
# It prints the pids as JSON, then waits for a command on stdin: "exit" or "raise".
OWNER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from workers.embedded_redis import EmbeddedRedis
    from workers.process_group import ProcessGroup

    work = Path(sys.argv[1])
    forking_child = sys.argv[2]
    pools = json.loads(sys.argv[3])  # extra children: name -> argv

    def wait_for_file(path):
        deadline = time.monotonic() + 10
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(path)
            time.sleep(0.02)
        return int(path.read_text())

    with EmbeddedRedis(work / ".evalq" / "redis") as server, ProcessGroup() as group:
        env = {"EVALQ_REDIS_URL": server.url}
        sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
        group.start("sleeper-1", sleep, env, log_path=work / "sleeper-1.log")
        group.start("sleeper-2", sleep, env, log_path=work / "sleeper-2.log")
        forker = [sys.executable, "-c", forking_child, str(work / "grandchild.pid")]
        group.start("forker", forker, env, log_path=work / "forker.log")
        for name, argv in pools.items():
            group.start(name, argv, env, log_path=work / f"{name}.log", cwd=os.getcwd())
        pids = {"redis": server.pid, **group.pids()}
        pids["grandchild"] = wait_for_file(work / "grandchild.pid")
        print(json.dumps(pids), flush=True)
        command = sys.stdin.readline().strip()
        if command == "raise":
            raise RuntimeError("simulated failure")
    """
)


@dataclass
class Owner:
    """The script that owns the Redis and the pools, and everything it started."""

    proc: subprocess.Popen[str]
    pids: dict[str, int]
    tree: list[psutil.Process]


StartOwner = Callable[..., Owner]


def _is_gone(proc: psutil.Process) -> bool:
    # Orphans whose new parent never reaps them stay zombies: dead all the same.
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [proc for proc in procs if not _is_gone(proc)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _describe(procs: list[psutil.Process]) -> list[str]:
    described = []
    for proc in procs:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            described.append(str(proc.pid))
    return described


@pytest.fixture
def start_owner(tmp_path: Path) -> Iterator[StartOwner]:
    started: list[Owner] = []

    def start(pools: dict[str, list[str]] | None = None, ready_timeout: float = 15) -> Owner:
        script = tmp_path / "owner.py"
        script.write_text(OWNER_SCRIPT)
        stderr = open(tmp_path / "owner.stderr", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), FORKING_CHILD, json.dumps(pools or {})],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            # Like a shell job: the owner leads its own process group, as in a terminal.
            start_new_session=True,
        )
        stderr.close()
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], ready_timeout)
        line = proc.stdout.readline() if readable else ""
        if not line:
            proc.kill()
            proc.wait()
            pytest.fail(f"owner script did not start:\n{(tmp_path / 'owner.stderr').read_text()}")
        pids = json.loads(line)
        tree = psutil.Process(proc.pid).children(recursive=True)
        owner = Owner(proc, pids, tree)
        started.append(owner)
        return owner

    yield start

    # Whatever the outcome, leave nothing behind (psutil refuses to signal a recycled pid).
    for owner in started:
        if owner.proc.poll() is None:
            owner.proc.kill()
        owner.proc.wait(timeout=5)
        for proc in owner.tree:
            if not _is_gone(proc):
                proc.kill()
        _wait_until_gone(owner.tree, timeout=5)


def _assert_everything_it_started_is_gone(owner: Owner, timeout: float = 5) -> None:
    tree_pids = {proc.pid for proc in owner.tree}
    # The snapshot of its process tree holds what the script reported, grandchild included.
    assert set(owner.pids.values()) <= tree_pids
    survivors = _wait_until_gone(owner.tree, timeout)
    assert not survivors, f"orphans left behind: {_describe(survivors)}"


def _send(owner: Owner, command: str) -> None:
    assert owner.proc.stdin is not None
    owner.proc.stdin.write(command + "\n")
    owner.proc.stdin.flush()


def test_nothing_survives_a_normal_exit(start_owner: StartOwner) -> None:
    owner = start_owner()
    _send(owner, "exit")
    assert owner.proc.wait(timeout=10) == 0
    _assert_everything_it_started_is_gone(owner)


def test_nothing_survives_ctrl_c(start_owner: StartOwner) -> None:
    owner = start_owner()
    # A terminal's Ctrl-C goes to the foreground process group: the owner's, not its children's.
    os.killpg(owner.proc.pid, signal.SIGINT)
    assert owner.proc.wait(timeout=10) != 0
    _assert_everything_it_started_is_gone(owner)


def test_nothing_survives_an_error(start_owner: StartOwner, tmp_path: Path) -> None:
    owner = start_owner()
    _send(owner, "raise")
    assert owner.proc.wait(timeout=10) == 1
    assert "simulated failure" in (tmp_path / "owner.stderr").read_text()
    _assert_everything_it_started_is_gone(owner)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_nothing_survives_the_owner_being_killed(
    start_owner: StartOwner, sig: signal.Signals
) -> None:
    owner = start_owner()
    # No finally, no atexit: only the parent-death signal stands between us and orphans.
    owner.proc.send_signal(sig)
    assert owner.proc.wait(timeout=10) == -sig
    _assert_everything_it_started_is_gone(owner)


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    with ProcessGroup() as group:
        proc = group.start(
            "stubborn", [sys.executable, "-c", stubborn], log_path=tmp_path / "s.log"
        )
        time.sleep(0.3)  # let it install its handler
        started = time.monotonic()
        group.stop(timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 5
        assert group.poll() == {"stubborn": -signal.SIGKILL}
        assert not group.alive()
        assert proc.returncode == -signal.SIGKILL


def test_what_a_child_forked_is_stopped_even_after_the_child_exited(tmp_path: Path) -> None:
    leaves_a_process_behind = textwrap.dedent(
        """
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        print(pid, flush=True)
        """
    )
    log = tmp_path / "child.log"
    with ProcessGroup() as group:
        proc = group.start("leaver", [sys.executable, "-c", leaves_a_process_behind], log_path=log)
        proc.wait(timeout=10)
        left_behind = psutil.Process(int(log.read_text()))
        assert not _is_gone(left_behind)
        group.stop(timeout=5)
    assert not _wait_until_gone([left_behind], timeout=5)


def test_children_get_the_environment_plus_what_is_passed_and_log_to_their_file(
    tmp_path: Path,
) -> None:
    show = "import os; print(os.environ['EVALQ_REDIS_URL'], os.environ['PATH'] != '')"
    with ProcessGroup() as group:
        group.start("show", [sys.executable, "-c", show], {"EVALQ_REDIS_URL": "redis://x/0"},
                    log_path=tmp_path / "logs" / "show.log")  # fmt: skip
        with pytest.raises(ValueError, match="already started"):
            group.start("show", [sys.executable, "-c", "pass"])
        deadline = time.monotonic() + 10
        while group.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert group.poll() == {"show": 0}
        assert set(group.pids()) == {"show"}
    assert (tmp_path / "logs" / "show.log").read_text() == "redis://x/0 True\n"


@pytest.mark.skipif(not DRAMATIQ.exists(), reason="dramatiq is not installed in .venv")
def test_no_dramatiq_or_redis_process_survives_the_owner_being_sigkilled(
    start_owner: StartOwner, tmp_path: Path
) -> None:
    pools = {"pool": [str(DRAMATIQ), "workers", "-p", "2", "-t", "1"]}
    owner = start_owner(pools, ready_timeout=30)
    pool_log = tmp_path / "pool.log"
    deadline = time.monotonic() + 20
    while pool_log.read_text().count("is ready for action") < 2:
        assert time.monotonic() < deadline, f"the pool did not boot:\n{pool_log.read_text()}"
        time.sleep(0.1)
    owner.tree = psutil.Process(owner.proc.pid).children(recursive=True)
    names = [" ".join(proc.cmdline()) for proc in owner.tree]
    assert sum("dramatiq workers" in name for name in names) == 3, names  # main + 2 workers
    assert sum("redis-server" in name for name in names) == 1, names

    owner.proc.kill()
    owner.proc.wait(timeout=10)

    _assert_everything_it_started_is_gone(owner, timeout=10)
