"""The copy of a job's payload that its record keeps once the job has finished.

A job's message leaves Redis when its delivery is acked; a dead letter keeps its own copy. For a
job that succeeded or was dropped, the finish script writes this copy into the job's state hash
(field ``payload``, kept as long as the record, ``EVALQ_JOB_TTL_S``), so that the dashboard's job
page still shows what the job was asked to do. No extra round trip: it travels with the outcome.

The copy is the message as ``Message.asdict()`` gives it, secrets redacted *before* it is capped
(a cap must never cut a secret short of what redaction recognises), stored as
``{"size_bytes": n, "message": {...}}`` when its JSON fits in ``EVALQ_HISTORY_PAYLOAD_BYTES``, else
``{"size_bytes": n, "excerpt": "<the first bytes of that JSON>"}``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from middleware.core.redaction import redact

#: The job state hash's field holding the copy.
FIELD = "payload"

PayloadSource = Literal["history", "history_excerpt"]

#: ``json.dumps`` with these options builds an encoder on every call; one is enough.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def payload_copy(message: dict[str, Any], *, limit_bytes: int) -> str | None:
    """What a finished job's record keeps of ``message`` (``Message.asdict()``); None when
    ``limit_bytes`` is 0 (keep nothing)."""
    if limit_bytes <= 0:
        return None
    text = _ENCODER.encode(redact(message))
    encoded = text.encode("utf-8")
    size = len(encoded)
    if size <= limit_bytes:
        # The message's JSON is put in as it is: encoding it a second time costs as much again.
        return f'{{"size_bytes":{size},"message":{text}}}'
    # Cut at a character boundary: the excerpt never ends in half a UTF-8 sequence.
    excerpt = encoded[:limit_bytes].decode("utf-8", "ignore")
    kept = {"size_bytes": size, "excerpt": excerpt}
    return _ENCODER.encode(kept)


def read_payload_copy(raw: str | None) -> tuple[dict[str, Any] | None, PayloadSource | None]:
    """The payload a job record kept and where it came from: ``history`` (the whole redacted
    message) or ``history_excerpt`` (``{"size_bytes", "excerpt"}``); (None, None) when the
    record kept none, or holds something that is not a copy."""
    if not raw:
        return None, None
    try:
        kept = json.loads(raw)
    except ValueError:
        return None, None
    if not isinstance(kept, dict):
        return None, None
    if isinstance(kept.get("message"), dict):
        message: dict[str, Any] = kept["message"]
        return message, "history"
    if isinstance(kept.get("excerpt"), str):
        return {"size_bytes": kept.get("size_bytes"), "excerpt": kept["excerpt"]}, (
            "history_excerpt"
        )
    return None, None
