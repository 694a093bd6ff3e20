"""How the CLI shows text it did not write: literally, whatever it holds."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from workers.cli.text import aligned, field, literal, visible


@pytest.mark.parametrize(
    "text",
    [
        "[/red]",
        "[bold red]not bold[/bold red]",
        r"\[\d+\]",
        "Field required [type=missing, input_value={}, input_type=dict]",
        ":smile: [link=https://x]y[/link]",
        "שלום עולם",
        "مرحبا",
        "e\u0301 n\u0303 a\u0308",
        "漢字 and emoji 👩‍💻",
        "tab-free plain text",
    ],
)
def test_printable_text_is_shown_exactly_as_it_is(text: str) -> None:
    assert visible(text) == text
    assert rendered(literal(text)) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("over\rwrite", "over\\rwrite"),
        ("bell\x07 null\x00 del\x7f c1\x9b", "bell\\x07 null\\x00 del\\x7f c1\\x9b"),
        ("a\tb", "a\\tb"),
        ("line\u2028separator\u2029paragraph", "line\\u2028separator\\u2029paragraph"),
        ("abc\u202edcba\u202c", "abc\\u202edcba\\u202c"),  # right-to-left override
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ],
)
def test_characters_that_would_act_on_the_terminal_are_escaped(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert rendered(literal(text)) == shown


def test_newlines_are_escaped_in_one_line_views_and_kept_in_multiline_ones() -> None:
    assert visible("one\ntwo") == "one\\ntwo"
    assert visible("one\ntwo\x1b", multiline=True) == "one\ntwo\\x1b"


def test_a_very_long_line_is_printed_whole_without_wrapping() -> None:
    text = "[/red]" + "x" * 100_000
    assert rendered(field("error", text)) == f"error: {text}"


def test_aligned_rows_never_cut_an_id_whatever_the_width() -> None:
    long_id = "0001764590000000-" + "a" * 40
    lines = aligned(("id", "queue", "error"), [(long_id, "evaluations.batch", "[/red] boom")])
    output = rendered(*lines, width=40)
    assert output.splitlines() == [
        "id" + " " * (len(long_id) - 2) + "  queue              error",
        f"{long_id}  evaluations.batch  [/red] boom",
    ]


def test_aligned_columns_are_measured_in_terminal_cells() -> None:
    lines = aligned(("name", "n"), [("漢字", 1), ("ab", 2)])
    assert [line.plain for line in lines] == ["name  n", "漢字  1", "ab    2"]


def rendered(*renderables: object, width: int = 80) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    console.print(*renderables, sep="\n", soft_wrap=True)
    return buffer.getvalue().removesuffix("\n")
