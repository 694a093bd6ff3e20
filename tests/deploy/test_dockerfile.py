"""deploy/Dockerfile, read as a reviewer would (no Docker daemon here to build it): multi-stage,
the lock file, a slim non-root runtime, `dramatiq workers` in exec form, the manifests' paths."""

from __future__ import annotations

import json
import re
import shlex

from tests.deploy.conftest import DEPLOY, REPO_ROOT, Manifest, container, workers_of

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_the_image_is_built_in_stages_from_the_lock_file() -> None:
    build, runtime = stages()
    build_text = " ".join(args for _, args in build)
    assert "uv.lock" in build_text and "--locked" in build_text
    assert "--require-hashes" in build_text
    make_uv = re.search(r"^UV_VERSION := (\S+)", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert make_uv and f"astral-sh/uv:{make_uv.group(1)} " in build_text
    # The runtime stage takes the venv and the policy from the build stage, nothing else.
    copies = [args for op, args in runtime if op == "COPY"]
    assert copies and all(args.startswith("--from=build ") for args in copies)


def test_the_runtime_stage_is_slim_and_has_no_compilers_or_uv() -> None:
    _, runtime = stages()
    assert runtime[0][0] == "FROM"
    text = " ".join(args for _, args in runtime)
    assert "PYTHON_IMAGE" in runtime[0][1]
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.1[1-9]-slim", DOCKERFILE.read_text())
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|uv)\b", text.replace("/opt/evalq", ""))


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    _, runtime = stages()
    (user,) = [args for op, args in runtime if op == "USER"]
    uid, _, gid = user.partition(":")
    assert int(uid) >= 1000 and int(gid or uid) >= 1000


def test_dramatiq_workers_is_pid_one_in_exec_form() -> None:
    (cmd,) = [args for op, args in instructions() if op == "CMD"]
    argv = json.loads(cmd)
    assert argv[:2] == ["dramatiq", "workers"]
    assert not [args for op, args in instructions() if op == "ENTRYPOINT"]


def test_the_image_reads_its_policy_where_the_manifests_mount_the_configmap(
    rendered: dict[str, list[Manifest]],
) -> None:
    env = {
        key: value
        for op, args in instructions()
        if op == "ENV"
        for key, value in (word.split("=", 1) for word in shlex.split(args))
    }
    for deployment in workers_of(rendered["production"]):
        variables = {e["name"]: e.get("value") for e in container(deployment)["env"]}
        assert variables["EVALQ_POLICY_FILE"] == env["EVALQ_POLICY_FILE"]
    # The probes run `python -m middleware.heartbeat`: the venv's python comes first on PATH.
    assert env["PATH"].startswith("/opt/evalq/bin:")


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    allowed = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
    build, _ = stages()
    copied = {
        word.rstrip("/")
        for op, args in build
        if op == "COPY" and not args.startswith("--from")
        for word in args.split()[:-1]
    }
    assert copied <= allowed, copied - allowed
    packages = re.search(r"packages = \[([^\]]*)\]", (REPO_ROOT / "pyproject.toml").read_text())
    assert packages and set(re.findall(r'"([^"]+)"', packages.group(1))) <= copied
