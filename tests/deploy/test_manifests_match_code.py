"""The manifests agree with the code: the queues the actors declare, the Redis keys Dramatiq
writes, the settings evalq reads, the time a running job may need, the shipped policy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from dramatiq import Message

import workers
from config.policy import load_policy
from config.settings import DEFAULT_POLICY_FILE, Settings
from middleware.state import keys
from tests.deploy.conftest import (
    AUTOSCALED,
    DEPLOY,
    OVERLAYS,
    Manifest,
    container,
    of_kind,
    option,
    queue_of,
    workers_of,
)

#: Seconds Kubernetes must wait beyond Dramatiq's shutdown timeout before SIGKILL.
GRACE_MARGIN_S = 15


def declared_queues() -> set[str]:
    """Every queue evalq's own actors declare (``workers.actors``; an application's actors, such
    as those of ``examples/`` other tests import, deploy with the application's manifests)."""
    return {
        actor.queue_name
        for actor in workers.broker.actors.values()
        if actor.fn.__module__ == "workers.actors"
    }


def settings_configmap(objects: list[Manifest]) -> dict[str, str]:
    (configmap,) = [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("evalq-settings")
    ]
    data: dict[str, str] = configmap["data"]
    return data


def pod_specs(objects: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
    ]


def evalq_containers(objects: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, container) for every container running the evalq image."""
    return [
        (name, c)
        for name, spec in pod_specs(objects)
        for c in spec["containers"] + spec.get("initContainers", [])
        if c["image"].split("/")[-1].split(":")[0] == "evalq"
    ]


# --- lanes ---------------------------------------------------------------------------------------


def test_the_actors_declare_the_three_lanes() -> None:
    assert declared_queues() == {"evaluations.live", "evaluations.batch", "default"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_declared_queue_has_exactly_one_worker_deployment_and_nothing_else_does(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    consumed = Counter(queue_of(d) for d in workers_of(rendered[overlay]))
    assert set(consumed) == declared_queues()
    assert set(consumed.values()) == {1}


@pytest.mark.parametrize("overlay", AUTOSCALED)
def test_every_worker_deployment_has_exactly_one_scaled_object_in_production(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    targets = Counter(s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objects, "ScaledObject"))
    assert targets == Counter(d["metadata"]["name"] for d in workers_of(objects))
    # KEDA's HPA owns the count: no replicas field for `kubectl apply` to reset.
    assert all("replicas" not in d["spec"] for d in workers_of(objects))


def test_the_dev_overlay_runs_one_worker_per_lane_without_autoscaling(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["dev"]
    assert not [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    assert [d["spec"]["replicas"] for d in workers_of(objects)] == [1, 1, 1]
    assert of_kind(objects, "StatefulSet")[0]["metadata"]["name"] == "evalq-redis"


def test_each_lane_runs_one_process_per_pod_with_its_threads(
    rendered: dict[str, list[Manifest]],
) -> None:
    for deployment in workers_of(rendered["production"]):
        command = container(deployment)["command"]
        assert command[:2] == ["dramatiq", "workers"]
        assert option(command, "--processes") == "1"
        assert int(option(command, "--threads")) >= 1


# --- KEDA keys -----------------------------------------------------------------------------------


def scaled_objects_by_queue(objects: list[Manifest]) -> dict[str, Manifest]:
    deployments = {d["metadata"]["name"]: d for d in workers_of(objects)}
    return {
        queue_of(deployments[s["spec"]["scaleTargetRef"]["name"]]): s
        for s in of_kind(objects, "ScaledObject")
    }


@pytest.mark.parametrize("overlay", AUTOSCALED)
def test_keda_watches_the_hashes_of_the_queue_and_its_delay_queue_in_the_brokers_namespace(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    assert workers.broker.namespace == keys.DRAMATIQ_NAMESPACE
    for queue, scaled in scaled_objects_by_queue(rendered[overlay]).items():
        watched = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
        assert watched == {
            f"{keys.DRAMATIQ_NAMESPACE}:{queue}.msgs",
            f"{keys.DRAMATIQ_NAMESPACE}:{keys.delay_queue_name(queue)}.msgs",
        }


def test_the_watched_keys_count_what_dramatiq_really_enqueues_and_delays(
    rendered: dict[str, list[Manifest]], redis_client: redis.Redis
) -> None:
    scaled = scaled_objects_by_queue(rendered["production"])["default"]
    watched = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    (delayed_key,) = [k for k in watched if k.endswith(".DQ.msgs")]
    (ready_key,) = watched - {delayed_key}
    message: Message[Any] = Message(
        queue_name="default", actor_name="export_results", args=("e",), kwargs={}, options={}
    )
    workers.broker.enqueue(message)
    workers.broker.enqueue(message.copy(message_id="m-delayed"), delay=60_000)
    assert redis_client.type(ready_key) == b"hash"
    assert (redis_client.hlen(ready_key), redis_client.hlen(delayed_key)) == (1, 1)


@pytest.mark.parametrize("overlay", AUTOSCALED)
def test_the_lane_target_per_pod_is_its_thread_count_and_live_stays_warm(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    deployments = {queue_of(d): d for d in workers_of(objects)}
    for queue, scaled in scaled_objects_by_queue(objects).items():
        threads = option(container(deployments[queue])["command"], "--threads")
        ready = next(
            t
            for t in scaled["spec"]["triggers"]
            if not t["metadata"]["listName"].endswith(".DQ.msgs")
        )
        assert ready["metadata"]["listLength"] == threads
        spec = scaled["spec"]
        assert 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 60
        assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])
    assert scaled_objects_by_queue(objects)["evaluations.live"]["spec"]["minReplicaCount"] >= 1


# --- shutdown timing -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_the_shutdown_timeout_which_outlasts_the_time_limit(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    time_limit_s = float(
        settings_configmap(objects).get("EVALQ_TIME_LIMIT_S", Settings().time_limit_s)
    )
    for deployment in workers_of(objects):
        shutdown_s = (
            int(option(container(deployment)["command"], "--worker-shutdown-timeout")) / 1000
        )
        grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert shutdown_s >= time_limit_s, deployment["metadata"]["name"]
        assert grace_s > shutdown_s + GRACE_MARGIN_S, deployment["metadata"]["name"]


# --- settings ------------------------------------------------------------------------------------


def setting_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        names |= set(getattr(alias, "choices", [])) if alias else {f"EVALQ_{field.upper()}"}
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_the_manifests_give_evalq_is_a_real_setting(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    given = set(settings_configmap(objects))
    for _, c in evalq_containers(objects):
        given |= {e["name"] for e in c.get("env", [])}
        assert [s for s in c.get("envFrom", []) if "configMapRef" not in s] == []
    assert given - setting_names() == set()
    Settings.model_validate(
        {k.removeprefix("EVALQ_").lower(): v for k, v in settings_configmap(objects).items()}
    )


def test_the_policy_configmap_is_the_shipped_policy_and_loads(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    assert (DEPLOY / "base" / "policies.toml").read_bytes() == DEFAULT_POLICY_FILE.read_bytes()
    (configmap,) = [
        c
        for c in of_kind(rendered["production"], "ConfigMap")
        if c["metadata"]["name"].startswith("evalq-policy")
    ]
    path = tmp_path / "policies.toml"
    path.write_text(configmap["data"]["policies.toml"])
    load_policy(path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_policy_file_setting_points_into_the_mounted_configmap(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    for name, spec in pod_specs(objects):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if "EVALQ_POLICY_FILE" not in env:
                continue
            policy = Path(env["EVALQ_POLICY_FILE"])
            mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == policy.parent)
            configmap = volumes[mount["name"]]["configMap"]["name"]
            assert configmap.startswith("evalq-policy"), name


# --- heartbeat probes ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_worker_probe_reads_the_heartbeat_file_its_worker_writes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for deployment in workers_of(rendered[overlay]):
        c = container(deployment)
        env = {e["name"]: e.get("value") for e in c["env"]}
        beat, interval_s = env["EVALQ_HEARTBEAT_FILE"], float(env["EVALQ_HEARTBEAT_INTERVAL_S"])
        # The file lives on a writable emptyDir: the root filesystem is read-only.
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert any(beat.startswith(m.rstrip("/") + "/") for m in mounts)
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = c[kind]["exec"]["command"]
            assert command[:4] == ["python", "-m", "middleware.heartbeat", beat], kind
            # Several beats may be missed (a slow PING) before the probe calls the worker stale.
            assert float(option(command, "--max-age-s")) >= 3 * interval_s, kind


# --- production placement and Sentry -------------------------------------------------------------


def sentry_ref(deployment: Manifest) -> dict[str, Any]:
    (env,) = [e for e in container(deployment)["env"] if e["name"] == "SENTRY_DSN"]
    ref: dict[str, Any] = env["valueFrom"]["secretKeyRef"]
    return ref


def test_production_requires_sentry_and_dev_runs_without_it(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert all(sentry_ref(d)["optional"] is False for d in workers_of(rendered["production"]))
    assert all(sentry_ref(d)["optional"] is True for d in workers_of(rendered["dev"]))
    assert settings_configmap(rendered["production"])["EVALQ_ENV"] == "production"
    assert settings_configmap(rendered["dev"])["EVALQ_ENV"] == "development"


def test_production_spreads_each_lane_over_nodes_and_zones(
    rendered: dict[str, list[Manifest]],
) -> None:
    for deployment in workers_of(rendered["production"]):
        spec = deployment["spec"]["template"]["spec"]
        (term,) = spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        own = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        assert own["evalq/queue"] == queue_of(deployment)
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        spread = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
        assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        assert all("evalq/queue" in c["matchLabelKeys"] for c in spread.values())
