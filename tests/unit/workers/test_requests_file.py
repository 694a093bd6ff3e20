from __future__ import annotations

import json
import uuid
from pathlib import Path

from workers.evaluations.models import EvaluationRequest
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


def test_a_line_holding_line_separators_inside_a_string_is_one_valid_request(
    tmp_path: Path,
) -> None:
    # U+2028, U+2029, U+0085 and a form feed are line breaks to str.splitlines(), not to JSONL.
    output = "first\u2028second\u2029third\x85fourth\x0cfifth"
    path = tmp_path / "in.jsonl"
    raw = json.loads(line())
    raw["target"]["actual_output"] = output
    path.write_text(json.dumps(raw, ensure_ascii=False) + "\n", encoding="utf-8")
    requests, errors = read_requests(path)
    assert errors == []
    [(number, request)] = requests
    assert (number, request.target.actual_output) == (1, output)


def test_windows_line_endings_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(f"{line()}\r\n{line()}\r\n".encode())
    requests, errors = read_requests(path)
    assert errors == []
    assert [number for number, _ in requests] == [1, 2]


def test_bytes_that_are_not_utf8_are_reported_with_their_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    bad = line(actual_output="CAFE").replace("CAFE", "caf\xe9").encode("latin-1")  # é: 1 byte
    column = bad.index(b"\xe9") + 1
    also_bad = b'{"x": "\xc3\x28"}'  # a broken two-byte sequence after 7 characters
    path.write_bytes(line().encode() + b"\n" + bad + b"\n" + also_bad + b"\n" + line().encode())
    requests, errors = read_requests(path)
    assert [number for number, _ in requests] == [1, 4]
    assert [str(e) for e in errors] == [
        f"{path}:2: not valid UTF-8 at column {column} (byte 0xe9)",
        f"{path}:3: not valid UTF-8 at column 8 (byte 0xc3)",
    ]


def test_the_column_of_bad_bytes_counts_characters_not_bytes(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes('{"x": "ñé'.encode() + b"\xff" + b'"}\n')
    [error] = read_requests(path)[1]
    assert str(error) == f"{path}:1: not valid UTF-8 at column 10 (byte 0xff)"


def test_every_bad_line_is_listed_with_its_exact_message(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = ["{", line(), "[1, 2]", '{"a": 1,}', line(), "nul\x00l"]
    path.write_text("\n".join(lines) + "\n")
    requests, errors = read_requests(path)
    assert [number for number, _ in requests] == [2, 5]
    assert [str(e) for e in errors] == [
        f"{path}:1: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{path}:3: Input should be a valid dictionary or instance of EvaluationRequest",
        f"{path}:4: not valid JSON: Expecting property name enclosed in double quotes at column 9",
        f"{path}:6: not valid JSON: Expecting value at column 1",
    ]


def test_a_request_over_the_size_limit_is_a_bad_line_naming_its_size_and_the_limit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    small, big = line(), line(actual_output="x" * 5_000)
    path.write_text(small + "\n" + big + "\n")
    requests, errors = read_requests(path, max_request_bytes=4_096)
    # The size of the request as it is enqueued: its compact JSON, defaults included.
    size = len(EvaluationRequest.model_validate_json(big).model_dump_json().encode())
    assert size > len(big) > 5_000
    assert [number for number, _ in requests] == [1]
    assert [str(e) for e in errors] == [
        f"{path}:2: the request is {size:,} bytes, over the limit of 4,096 bytes "
        "(EVALQ_MAX_REQUEST_BYTES)"
    ]


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
