"""Every overlay renders and every object it holds is valid: Kubernetes' own schemas (strict, so
an unknown or misspelt field fails) for the oldest supported and the newest known version, and
KEDA's CRD models for the KEDA objects."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import (
    AUTOSCALED,
    OVERLAYS,
    Manifest,
    of_kind,
    validate_keda,
    workers_of,
)

KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def kubernetes_validate_file(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", version, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_the_overlay_is_valid_kubernetes_in_strict_mode(
    rendered_text: dict[str, str], overlay: str, version: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered_text[overlay])
    result = kubernetes_validate_file(path, version)
    assert result.returncode == 0, result.stdout + result.stderr
    # The only objects without a Kubernetes schema are KEDA's, validated below.
    unschemaed = [line for line in result.stdout.splitlines() if "Couldn't find schema" in line]
    assert all("keda.sh/v1alpha1" in line for line in unschemaed), unschemaed


def test_strict_validation_rejects_a_misspelt_field(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    broken = copy.deepcopy(workers_of(rendered["production"])[0])
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = kubernetes_validate_file(path, KUBERNETES_VERSIONS[0])
    assert result.returncode != 0
    assert "readOnlyRootFileSystem" in result.stdout + result.stderr


def keda_objects(objects: list[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["apiVersion"].startswith("keda.sh/")]


@pytest.mark.parametrize("overlay", AUTOSCALED)
def test_the_keda_objects_are_valid_against_kedas_crd_models(
    rendered: dict[str, list[Manifest]], keda_validator: Path, overlay: str
) -> None:
    objects = keda_objects(rendered[overlay])
    assert {o["kind"] for o in objects} == KEDA_KINDS
    reports = validate_keda(keda_validator, objects)
    assert len(reports) == len(objects)
    assert [r for r in reports if r["errors"]] == []


def test_kedas_models_reject_a_wrongly_typed_scaled_object(
    rendered: dict[str, list[Manifest]], keda_validator: Path
) -> None:
    broken = copy.deepcopy(of_kind(rendered["production"], "ScaledObject")[0])
    broken["spec"]["minReplicaCount"] = "one"
    del broken["spec"]["scaleTargetRef"]
    (report,) = validate_keda(keda_validator, [broken])
    assert any("minReplicaCount" in e or "scaleTargetRef" in e for e in report["errors"]), report


# KEDA's models type a trigger's metadata as a map of strings: what the Redis scaler reads from it
# is checked here, against the keys KEDA's Redis scaler documents.
REDIS_SCALER_KEYS = {
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "listName",
    "listLength",
    "activationListLength",
    "databaseIndex",
    "enableTLS",
    "unsafeSsl",
}
REDIS_AUTH_PARAMETERS = {
    "address",
    "host",
    "port",
    "username",
    "password",
    "tls",
    "ca",
    "cert",
    "key",
}
# The redis-sentinel scaler's: several sentinels instead of one address, and the master's name.
SENTINEL_SCALER_KEYS = (REDIS_SCALER_KEYS - {"address", "addressFromEnv", "host", "hostFromEnv",
                        "port", "portFromEnv"}) | {"addresses", "addressesFromEnv", "hosts",
                        "ports", "sentinelMaster", "sentinelMasterFromEnv",
                        "sentinelUsernameFromEnv", "sentinelPasswordFromEnv"}  # fmt: skip
SENTINEL_AUTH_PARAMETERS = (REDIS_AUTH_PARAMETERS - {"address", "host", "port"}) | {
    "addresses", "hosts", "ports", "sentinelUsername", "sentinelPassword", "sentinelMaster",
}  # fmt: skip
#: Per overlay: the trigger type, the keys its metadata may hold, its authentication parameters
#: and those of them that must be there to find Redis.
SCALERS = {
    "production": ("redis", REDIS_SCALER_KEYS, REDIS_AUTH_PARAMETERS, {"address"}),
    "production-sentinel": (
        "redis-sentinel", SENTINEL_SCALER_KEYS, SENTINEL_AUTH_PARAMETERS,
        {"addresses", "sentinelMaster"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("overlay", AUTOSCALED)
def test_every_trigger_is_a_redis_trigger_the_scaler_understands(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    kind, scaler_keys, auth_parameters, required = SCALERS[overlay]
    objects = rendered[overlay]
    auths = {a["metadata"]["name"]: a for a in of_kind(objects, "TriggerAuthentication")}
    for scaled in of_kind(objects, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            metadata: dict[str, Any] = trigger["metadata"]
            assert trigger["type"] == kind
            assert set(metadata) <= scaler_keys, set(metadata) - scaler_keys
            assert all(isinstance(v, str) for v in metadata.values()), metadata
            assert int(metadata["listLength"]) > 0
            assert int(metadata["activationListLength"]) == 0
            # The scaler finds Redis through the TriggerAuthentication, never a literal address.
            assert not {"address", "addresses", "host", "hosts", "port", "ports"} & set(metadata)
            auth = auths[trigger["authenticationRef"]["name"]]
            parameters = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
            assert required <= parameters, required - parameters
            assert parameters <= auth_parameters, parameters - auth_parameters
