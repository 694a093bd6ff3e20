"""Read a JSONL file of EvaluationRequests, reporting every bad line by number."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from workers.evaluations.models import EvaluationRequest


@dataclass(frozen=True)
class LineError:
    """What is wrong with one line of the file."""

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


def read_requests(path: Path) -> tuple[list[tuple[int, EvaluationRequest]], list[LineError]]:
    """Parse ``path``: the valid requests with their line numbers, and the errors of bad lines.

    Blank lines are skipped. A file that cannot be read is one error on line 0.
    """
    requests: list[tuple[int, EvaluationRequest]] = []
    errors: list[LineError] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [], [LineError(path, 0, f"cannot read the file: {error}")]
    # Lines end at "\n" only (JSONL): str.splitlines would also split at U+2028, U+0085 and other
    # separators that JSON allows raw inside a string, breaking a valid request in two.
    for number, line in enumerate(text.removesuffix("\n").split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(
                LineError(path, number, f"not valid JSON: {error.msg} at column {error.colno}")
            )
            continue
        try:
            requests.append((number, EvaluationRequest.model_validate(data)))
        except ValidationError as error:
            errors.append(LineError(path, number, describe_validation_error(error)))
    if not requests and not errors:
        errors.append(LineError(path, 0, "the file holds no requests"))
    return requests, errors
