"""Text that comes from jobs, requests, providers and errors, shown on a terminal as it is.

Every human-readable ``evalq`` view prints such text through ``literal``: it is never read as
rich markup (``[/red]`` stays ``[/red]``, ``\\[\\d+\\]`` stays ``\\[\\d+\\]``), and every character
that would act on the terminal instead of showing (ANSI escapes, carriage returns, bells, bidi
overrides, line separators, lone surrogates) is written as its escape, ``\\x1b`` or ``\\u202e``,
so what a provider said can be read exactly, and nothing can repaint the screen.

Views lay out rows with ``aligned`` instead of rich tables: a rich table fits itself to the
terminal (80 columns when the output is not one) and wraps or cuts what does not fit, ids
included. Aligned rows never cut anything; the terminal wraps a long line.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from rich.cells import cell_len
from rich.text import Text

# Characters that reorder the text after them when displayed (the "Trojan Source" characters).
_BIDI_CONTROLS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})

#: Categories whose characters act instead of showing: controls, line and paragraph
#: separators, surrogates (a lone one cannot even be encoded for the terminal).
_ACTING_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


def _escape(character: str) -> str:
    code = ord(character)
    if character == "\r":
        return "\\r"
    if character == "\t":
        return "\\t"
    if character == "\n":
        return "\\n"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _acts(character: str) -> bool:
    return ord(character) in _BIDI_CONTROLS or unicodedata.category(character) in _ACTING_CATEGORIES


def visible(value: object, *, multiline: bool = False) -> str:
    """``value`` as text with every character that would act on the terminal escaped.

    Printable characters, right-to-left scripts and combining marks are kept as they are. With
    ``multiline`` a newline stays a line break (tracebacks, payloads); otherwise it is shown as
    ``\\n`` so one record stays one line.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the common case: nothing to escape, no copy
        return text
    return "".join(_escape(c) if _acts(c) and not (multiline and c == "\n") else c for c in text)


def literal(value: object, *, style: str = "", multiline: bool = False) -> Text:
    """A rich ``Text`` of ``value`` that is never read as markup, its controls made visible."""
    return Text(visible(value, multiline=multiline), style=style)


def field(name: str, value: object, *, multiline: bool = False) -> Text:
    """One ``name: value`` line of a detail view, the name in bold, the value literal."""
    return Text.assemble((f"{name}:", "bold"), " ", literal(value, multiline=multiline))


def aligned(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[Text]:
    """``header`` and ``rows`` as lines of left-aligned columns, two spaces apart.

    Every cell is shown whole (``visible``); the last column is not padded, so a long value
    there costs one long line, not a wide table.
    """
    cells = [[visible(c) for c in header]] + [[visible(c) for c in row] for row in rows]
    widths = [max(cell_len(row[i]) for row in cells) for i in range(len(header) - 1)]
    lines = []
    for number, row in enumerate(cells):
        padded = [c + " " * (w - cell_len(c)) for c, w in zip(row, widths, strict=False)]
        line = Text("  ".join([*padded, row[-1]]).rstrip())
        if number == 0:
            line.stylize("bold")
        lines.append(line)
    return lines
