"""/metrics: queue depths, attempt outcomes by category, dead letters and workers, in Prometheus
text format. Each scrape reads a fresh snapshot from Redis (a custom collector on a registry of
its own: the dashboard process's own metrics are not what an operator scrapes here)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dashboard.services import Services
from middleware.state import keys
from workers.status import collect_status


class _Snapshot:
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        status: dict[str, Any] = collect_status(
            self.services.client, self.services.dead_letters, queues=self.services.queues
        )
        depth = GaugeMetricFamily(
            "evalq_queue_messages", "Messages per queue and kind.", labels=["queue", "kind"]
        )
        for queue, counts in status["queues"].items():
            for kind in ("ready", "delayed", "running", "dead_lettered", "nacked"):
                depth.add_metric([queue, kind], counts[kind])
        yield depth
        throttled = CounterMetricFamily(
            "evalq_throttled_attempts", "Attempts re-delayed by evalq's own provider rate limits.",
            labels=["queue"],
        )  # fmt: skip
        for queue, counts in status["queues"].items():
            throttled.add_metric([queue], counts["throttled"])
        yield throttled
        yield self._outcomes()
        dlq = status["dlq"]
        size = GaugeMetricFamily("evalq_dlq_records", "Dead letters kept, by category.",
                                 labels=["category"])  # fmt: skip
        for category, count in dlq["by_category"].items():
            size.add_metric([category], count)
        yield size
        evicted = CounterMetricFamily("evalq_dlq_evicted", "Dead letters evicted by retention.",
                                      labels=["reason"])  # fmt: skip
        evicted.add_metric(["overflow"], dlq["overflow"])
        evicted.add_metric(["expired"], dlq["expired"])
        yield evicted
        yield GaugeMetricFamily(
            "evalq_workers_alive", "Worker processes with a recent heartbeat.",
            value=len(status["workers"]),
        )  # fmt: skip

    def _outcomes(self) -> Metric:
        family = CounterMetricFamily(
            "evalq_attempts", "Finished attempts by outcome and category.",
            labels=["outcome", "category"],
        )  # fmt: skip
        raw = self.services.client.hgetall(keys.OUTCOMES_TOTAL_KEY)
        for field, count in sorted(raw.items()):  # type: ignore[union-attr]
            outcome, _, category = keys.text(field).partition(":")
            family.add_metric([outcome, category], int(count))
        return family


def render_metrics(services: Services) -> bytes:
    """The exposition text of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(services))
    return generate_latest(registry)
