"""Which deliveries a worker holds in Redis but not in memory are put back, and when."""

from __future__ import annotations

from dataclasses import dataclass, field

from middleware.redelivery import ORPHAN_AGE_S, Orphans


@dataclass
class Held:
    """What ``Orphans`` asks of the broker: the deliveries in memory, and the fetched batches."""

    held_deliveries: set[str] = field(default_factory=set)
    fetched: set[str] = field(default_factory=set)

    def fetched_not_taken(self, delivery: str) -> bool:
        return delivery in self.fetched


def test_a_delivery_missing_from_memory_is_confirmed_once_it_has_been_missing_long_enough() -> None:
    orphans = Orphans(Held())  # type: ignore[arg-type]
    own = [("default", "d-1")]
    assert orphans.confirmed(own, 100.0) == []
    assert orphans.confirmed(own, 100.0 + ORPHAN_AGE_S - 0.1) == []
    assert orphans.confirmed(own, 100.0 + ORPHAN_AGE_S) == own


def test_a_delivery_in_memory_or_in_a_fetched_batch_is_never_an_orphan() -> None:
    broker = Held(held_deliveries={"in-memory"}, fetched={"fetched"})
    orphans = Orphans(broker)  # type: ignore[arg-type]
    own = [("default", "in-memory"), ("default.DQ", "fetched")]
    assert orphans.confirmed(own, 0.0) == []
    assert orphans.confirmed(own, ORPHAN_AGE_S * 10) == []


def test_the_clock_starts_again_when_a_delivery_was_taken_into_memory_meanwhile() -> None:
    broker = Held()
    orphans = Orphans(broker)  # type: ignore[arg-type]
    own = [("default", "d-1")]
    orphans.confirmed(own, 0.0)
    broker.held_deliveries.add("d-1")  # the consumer took it: the fetch's reply was late
    orphans.confirmed(own, 1.0)
    broker.held_deliveries.discard("d-1")  # acked in memory, the ack not seen in Redis yet
    assert orphans.confirmed(own, ORPHAN_AGE_S + 0.5) == []
    assert orphans.confirmed(own, 2 * ORPHAN_AGE_S + 0.4) == []
    assert orphans.confirmed(own, 2 * ORPHAN_AGE_S + 0.5) == own


def test_a_delivery_gone_from_redis_is_forgotten() -> None:
    orphans = Orphans(Held())  # type: ignore[arg-type]
    orphans.confirmed([("default", "d-1")], 0.0)
    orphans.confirmed([], 1.0)  # acked meanwhile
    assert orphans.confirmed([("default", "d-1")], ORPHAN_AGE_S + 0.5) == []
