from __future__ import annotations

import json
import uuid
from pathlib import Path

from workers.requests_file import read_requests


def line(**target: str) -> str:
    return json.dumps(
        {
            "evaluation": {
                "uuid": str(uuid.uuid4()),
                "name": "e",
                "type": "rule",
                "metric": "regular_expression",
                "config": {"pattern": "x"},
            },
            "target": {"uuid": str(uuid.uuid4()), "actual_output": "x", **target},
        }
    )


def test_valid_lines_come_back_with_their_line_numbers_and_blank_lines_are_skipped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(line() + "\n\n" + line() + "\n")
    requests, errors = read_requests(path)
    assert errors == []
    assert [number for number, _ in requests] == [1, 3]


def test_every_bad_line_is_reported_with_file_and_line_number(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([line(), "{not json", line(), '{"evaluation": {}}']) + "\n")
    requests, errors = read_requests(path)
    assert len(requests) == 2
    assert [str(e).split(": ")[0] for e in errors] == [f"{path}:2", f"{path}:4"]
    assert "not valid JSON" in str(errors[0])
    assert "evaluation.uuid: Field required" in str(errors[1])
    assert "target: Field required" in str(errors[1])


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    requests, errors = read_requests(tmp_path / "absent.jsonl")
    assert requests == []
    assert len(errors) == 1 and "cannot read the file" in str(errors[0])


def test_an_empty_file_is_an_error_not_a_silent_success(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    assert "holds no requests" in str(read_requests(path)[1][0])


def test_a_line_separator_inside_a_json_string_does_not_split_the_line(tmp_path: Path) -> None:
    # JSON allows U+2028, U+0085 and the ASCII record separators raw inside a string; only "\n"
    # ends a JSONL line (found by the fuzz in tests/reliability).
    path = tmp_path / "in.jsonl"
    raw = json.loads(line(actual_output="one\u2028two\x1ethree\x85four"))
    path.write_text(json.dumps(raw, ensure_ascii=False) + "\r\n" + line() + "\n", "utf-8")
    requests, errors = read_requests(path)
    assert errors == []
    assert [number for number, _ in requests] == [1, 2]
    assert requests[0][1].target.actual_output == "one\u2028two\x1ethree\x85four"


def test_a_key_that_prints_as_nothing_is_still_named(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({**json.loads(line()), "": 1, "\r": 2}) + "\n")
    _, [error] = read_requests(path)
    assert (
        error.message == '"": Extra inputs are not permitted; "\\r": Extra inputs are not permitted'
    )
