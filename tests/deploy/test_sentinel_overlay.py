"""The Sentinel variant of production is production with one change: where Redis is found. The
workers, dashboard and KEDA ask the sentinels for the primary; every other field is the same."""

from __future__ import annotations

import copy
from typing import Any

from tests.deploy.conftest import Manifest, of_kind

SENTINEL_PASSWORD_ENV = {
    "name": "EVALQ_REDIS_SENTINEL_PASSWORD",
    "valueFrom": {
        "secretKeyRef": {"name": "evalq-redis", "key": "sentinel-password", "optional": True}
    },
}


def by_identity(objects: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def as_sentinel(production: Manifest) -> Manifest:
    """What the Sentinel overlay should make of a production object."""
    expected: dict[str, Any] = copy.deepcopy(production)
    if expected["kind"] == "Deployment":
        expected["spec"]["template"]["spec"]["containers"][0]["env"].append(SENTINEL_PASSWORD_ENV)
    if expected["kind"] == "ScaledObject":
        for trigger in expected["spec"]["triggers"]:
            trigger["type"] = "redis-sentinel"
    return expected


def test_the_sentinel_overlay_changes_only_how_redis_is_found(
    rendered: dict[str, list[Manifest]],
) -> None:
    production = by_identity(rendered["production"])
    sentinel = by_identity(rendered["production-sentinel"])
    assert set(sentinel) == set(production)
    for identity, original in production.items():
        if identity == ("TriggerAuthentication", "evalq-redis"):
            continue
        assert sentinel[identity] == as_sentinel(original), identity


def test_keda_asks_the_sentinels_named_in_the_redis_secret_for_the_primary(
    rendered: dict[str, list[Manifest]],
) -> None:
    (auth,) = of_kind(rendered["production-sentinel"], "TriggerAuthentication")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "addresses": ("evalq-redis", "sentinel-addresses"),
        "sentinelMaster": ("evalq-redis", "sentinel-master"),
        "password": ("evalq-redis", "password"),
        "sentinelPassword": ("evalq-redis", "sentinel-password"),
    }
