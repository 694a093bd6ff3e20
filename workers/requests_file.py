"""Read a JSONL file of EvaluationRequests, reporting every bad line by number.

Lines are split on ``\\n`` only (a ``\\r`` before it is JSON whitespace): a request may hold
U+2028, U+0085 or a form feed inside a string, which other line splitters cut at. Each line is
decoded on its own, so bytes that are not UTF-8 are reported with their line and column and
the other lines are still checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from workers.evaluations.models import EvaluationRequest
from workers.request_size import encoded_size, too_large_message


@dataclass(frozen=True)
class LineError:
    """What is wrong with one line of the file (line 0: the file as a whole)."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def describe_validation_error(error: ValidationError) -> str:
    """One readable sentence per problem, each naming the field by its dotted path."""
    parts = []
    for item in error.errors():
        where = ".".join(_field_name(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _field_name(part: str | int) -> str:
    """A field path step as written; a key that is empty, padded with spaces or holds control
    characters is quoted as JSON, so that every problem names its field, on one line."""
    text = str(part)
    return text if text and text == text.strip() and text.isprintable() else json.dumps(text)


def read_requests(
    path: Path, *, max_request_bytes: int | None = None
) -> tuple[list[tuple[int, EvaluationRequest]], list[LineError]]:
    """Parse ``path``: the valid requests with their line numbers, and the errors of bad lines.

    Blank lines are skipped. A request whose JSON encoding is larger than ``max_request_bytes``
    is a bad line. A file that cannot be read, or holds no request, is one error on line 0.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        return [], [LineError(path, 0, f"cannot read the file: {error.strerror or error}")]
    requests: list[tuple[int, EvaluationRequest]] = []
    errors: list[LineError] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        outcome = _parse_line(raw, max_request_bytes)
        if isinstance(outcome, EvaluationRequest):
            requests.append((number, outcome))
        elif outcome is not None:
            errors.append(LineError(path, number, outcome))
    if not requests and not errors:
        errors.append(LineError(path, 0, "the file holds no requests"))
    return requests, errors


def _parse_line(raw: bytes, max_request_bytes: int | None) -> EvaluationRequest | str | None:
    """The request on one line, what is wrong with it, or None for a blank line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        column = len(raw[: error.start].decode("utf-8")) + 1
        return f"not valid UTF-8 at column {column} (byte 0x{raw[error.start]:02x})"
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        return f"not valid JSON: {error.msg} at column {error.colno}"
    try:
        request = EvaluationRequest.model_validate(data)
    except ValidationError as error:
        return describe_validation_error(error)
    if max_request_bytes is not None:
        size = encoded_size(request)
        if size > max_request_bytes:
            return too_large_message(size, max_request_bytes)
    return request
