"""Secure by default: every container non-root on a read-only root filesystem with no
capabilities, no API token in any pod, limits on everything, and no secret value in deploy/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, OVERLAYS, Manifest, of_kind

POD_KINDS = ("Deployment", "StatefulSet")
#: Variables that carry a secret; the manifests may only reference them from a Secret.
SECRET_VARIABLES = {
    "EVALQ_REDIS_URL",
    "EVALQ_PROVIDER_API_KEY",
    "SENTRY_DSN",
    "EVALQ_SENTRY_DSN",
    "EVALQ_DASHBOARD_TOKEN",
}


def pods(objects: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in POD_KINDS
    ]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec["containers"]) + list(spec.get("initContainers", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root_on_a_read_only_root_without_capabilities(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    checked = 0
    for name, spec in pods(rendered[overlay]):
        pod = spec.get("securityContext", {})
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in containers(spec):
            own = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert own.get("runAsUser", pod.get("runAsUser", 1)) != 0, where
            assert own.get("readOnlyRootFilesystem") is True, where
            assert own.get("allowPrivilegeEscalation") is False, where
            assert own.get("capabilities", {}).get("drop") == ["ALL"], where
            assert "add" not in own.get("capabilities", {}), where
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resource_requests_and_limits(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for name, spec in pods(rendered[overlay]):
        for c in containers(spec):
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{name}: {bound}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_of_evalq_has_a_disruption_budget(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    budgets = [
        b["spec"]["selector"]["matchLabels"] for b in of_kind(objects, "PodDisruptionBudget")
    ]
    for o in of_kind(objects, "Deployment"):
        labels = o["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b.items() <= labels.items()]
        assert len(covering) == 1, o["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_only_referenced_never_given(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    assert of_kind(objects, "Secret") == []
    for name, spec in pods(objects):
        for c in containers(spec):
            for env in c.get("env", []):
                if env["name"] not in SECRET_VARIABLES:
                    continue
                if "valueFrom" in env:
                    assert "secretKeyRef" in env["valueFrom"], f"{name}: {env['name']}"
                else:
                    # Only the dev Redis URL is literal: an address with no credentials in it.
                    assert env["name"] == "EVALQ_REDIS_URL" and "@" not in env["value"], env


#: Shapes of secret values: provider keys, a URL with credentials (a Sentry DSN, a Redis
#: password), private keys, base64 blobs under a Secret's data.
SECRET_SHAPES = [
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@]*:?[^\s/@]*@[^\s]+", re.IGNORECASE),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"^\s*(password|token|api[-_]?key|dsn)\s*[:=]\s*\S+", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\s*(data|stringData):\s*$", re.MULTILINE),
]


def deploy_files() -> list[Path]:
    return [p for p in DEPLOY.rglob("*") if p.is_file()]


def test_no_file_in_deploy_holds_a_literal_secret_value() -> None:
    files = deploy_files()
    assert len(files) >= 10
    found = [
        f"{path.relative_to(DEPLOY)}: {match.group(0).strip()}"
        for path in files
        for shape in SECRET_SHAPES
        for match in shape.finditer(path.read_text())
    ]
    assert found == []


def test_the_secret_scan_finds_a_planted_dsn_and_api_key(tmp_path: Path) -> None:
    planted = "env:\n  - name: SENTRY_DSN\n    value: https://abc123@o1.ingest.sentry.io/42\n"
    planted += "apiKey: sk-live0123456789abcdefXYZ\n"
    hits = [s for s in SECRET_SHAPES if s.search(planted)]
    assert len(hits) >= 2


def test_the_dashboard_is_reachable_only_through_its_network_policy(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["production"]
    (policy,) = [
        p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "evalq-dashboard"
    ]
    (service,) = of_kind(objects, "Service")
    (dashboard,) = [
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == "evalq-dashboard"
    ]
    labels = dashboard["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert all(rule.get("from") for rule in policy["spec"]["ingress"])
