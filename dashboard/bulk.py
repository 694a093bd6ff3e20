"""Bulk dead-letter actions: redrive or purge everything a filter matches, with progress and a
record of who did it, when, with which filter and how many records it touched.

A bulk action covers the records dead before it started (later ones are not what the operator
confirmed), walks them a page at a time newest first, and writes its progress to its record in
Redis after each page, so any dashboard process (and the API) can show it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Literal, cast

from dashboard.filters import DeadLetterFilter
from dashboard.services import Services
from middleware.state import keys

logger = logging.getLogger("evalq.dashboard")

BulkKind = Literal["redrive", "purge"]
BULK_KINDS: tuple[BulkKind, ...] = ("redrive", "purge")
#: Records acted on per step (and per progress update).
STEP = 200
#: Bulk action records kept.
KEPT_RECORDS = 200
#: How long a bulk action's record is kept, in seconds.
RECORD_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True)
class BulkActions:
    """Previews, starts and reports bulk dead-letter actions.

    Parameters:
      services: The dashboard's stores.
    """

    services: Services

    def matching(self, selection: DeadLetterFilter, *, until_ms: int | None = None) -> int:
        """How many records ``selection`` matches now: one ZLEXCOUNT, or a walk when it filters by
        rule (which no index covers)."""
        bounded = _bounded(selection, until_ms)
        if selection.rule is None:
            return self.services.dead_letters.count(
                queue=bounded.queue, category=bounded.category,
                since_ms=bounded.since_ms, until_ms=bounded.until_ms,
            )  # fmt: skip
        return sum(len(ids) for ids in self._pages(bounded))

    def start(self, kind: BulkKind, selection: DeadLetterFilter, *, who: str) -> dict[str, Any]:
        """Record a bulk action and run it in a background thread; returns its record."""
        now = self.services.clock()
        action_id = f"{now:015d}-{secrets.token_hex(4)}"
        bounded = _bounded(selection, now)
        record = {
            "id": action_id,
            "kind": kind,
            "who": who,
            "started_at": now,
            "filter": json.dumps(selection.as_dict()),
            "matching": self.matching(bounded),
            "done": 0,
            "changed": 0,
            "refused": 0,
            "state": "running",
        }
        pipe = self.services.client.pipeline(transaction=True)
        pipe.hset(keys.bulk_action_key(action_id), mapping=record)
        pipe.expire(keys.bulk_action_key(action_id), RECORD_TTL_S)
        pipe.lpush(keys.BULK_ACTIONS_KEY, action_id)
        pipe.ltrim(keys.BULK_ACTIONS_KEY, 0, KEPT_RECORDS - 1)
        pipe.execute()
        logger.info("dashboard bulk %s %s started by %s: %s, %d record(s)", kind, action_id, who,
                    selection.describe(), record["matching"])  # fmt: skip
        thread = threading.Thread(
            target=self._run, args=(action_id, kind, bounded), name=f"evalq-bulk-{action_id}",
            daemon=True,
        )  # fmt: skip
        thread.start()
        return self.get(action_id) or {}

    def get(self, action_id: str) -> dict[str, Any] | None:
        """A bulk action's record, or None."""
        raw = cast("dict[Any, Any]", self.services.client.hgetall(keys.bulk_action_key(action_id)))
        return _record(raw) if raw else None

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest bulk actions, newest first."""
        ids = self.services.client.lrange(keys.BULK_ACTIONS_KEY, 0, limit - 1)
        pipe = self.services.client.pipeline(transaction=False)
        for action_id in ids:  # type: ignore[union-attr]
            pipe.hgetall(keys.bulk_action_key(keys.text(action_id)))
        return [_record(raw) for raw in pipe.execute() if raw]

    def _run(self, action_id: str, kind: BulkKind, selection: DeadLetterFilter) -> None:
        key = keys.bulk_action_key(action_id)
        client = self.services.client
        try:
            for ids in self._pages(selection):
                changed, refused = self._act(kind, ids, selection)
                pipe = client.pipeline(transaction=False)
                pipe.hincrby(key, "done", len(ids))
                pipe.hincrby(key, "changed", changed)
                pipe.hincrby(key, "refused", refused)
                pipe.execute()
            client.hset(key, mapping={"state": "finished", "finished_at": self.services.clock()})
        except Exception as error:
            logger.exception("dashboard bulk %s %s failed", kind, action_id)
            failure = f"{type(error).__name__}: {error}"
            client.hset(
                key,
                mapping={"state": "failed", "error": failure, "finished_at": self.services.clock()},
            )
        record = self.get(action_id) or {}
        logger.info("dashboard bulk %s %s %s: %s changed, %s refused", kind, action_id,
                    record.get("state"), record.get("changed"), record.get("refused"))  # fmt: skip

    def _act(self, kind: BulkKind, ids: list[str], selection: DeadLetterFilter) -> tuple[int, int]:
        store = self.services.dead_letters
        if kind == "purge":
            purged = store.purge(ids, queue=selection.queue, category=selection.category)
            return purged, len(ids) - purged
        outcomes = store.redrive(
            ids, queue=selection.queue, category=selection.category, now_ms=self.services.clock()
        )
        changed = sum(1 for outcome in outcomes if outcome.redriven)
        return changed, len(outcomes) - changed

    def _pages(self, selection: DeadLetterFilter) -> Any:
        cursor = None
        while True:
            page = self.services.dead_letters.list(
                queue=selection.queue, category=selection.category, since_ms=selection.since_ms,
                until_ms=selection.until_ms, limit=STEP, cursor=cursor,
            )  # fmt: skip
            ids = [record.id for record in page.records if selection.matches(record)]
            if ids:
                yield ids
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


def _bounded(selection: DeadLetterFilter, until_ms: int | None) -> DeadLetterFilter:
    if until_ms is None:
        return selection
    until = until_ms if selection.until_ms is None else min(selection.until_ms, until_ms)
    return DeadLetterFilter(selection.queue, selection.category, selection.rule,
                            selection.since_ms, until)  # fmt: skip


def _record(raw: dict[Any, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {keys.text(k): keys.text(v) for k, v in raw.items()}
    for name in ("started_at", "finished_at", "matching", "done", "changed", "refused"):
        if name in record:
            record[name] = int(record[name])
    record["filter"] = json.loads(record.get("filter") or "{}")
    return record
