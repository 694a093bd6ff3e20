"""Numbers in text: the extraction and comparison behind the ``numeric_similarity`` metric.

A number is an optional sign, digits with optional thousands separators, an optional decimal
part and an optional exponent: ``-1,234.5``, ``3e-4``, ``.5``. With ``decimal_separator=","``
the roles of ``.`` and ``,`` swap (``1.234,5``). Thousands separators are only recognised in
groups of three, so ``1,5`` is two numbers under ``"."`` and one under ``","``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

_SIGN = r"[-+\u2212]?"  # U+2212 is the typographic minus sign
_EXPONENT = r"(?:[eE][-+]?\d+)?"


@lru_cache(maxsize=4)
def number_pattern(decimal_separator: str) -> re.Pattern[str]:
    """The regular expression of one number written with ``decimal_separator``."""
    thousands = "," if decimal_separator == "." else r"\."
    decimal = re.escape(decimal_separator)
    integer = rf"(?:\d{{1,3}}(?:{thousands}\d{{3}})+|\d+)"
    return re.compile(
        rf"(?<![\w.]){_SIGN}(?:{integer}(?:{decimal}\d+)?|{decimal}\d+){_EXPONENT}(?![\w])"
    )


def parse_number(text: str, decimal_separator: str) -> float:
    """The value of one number as ``number_pattern`` matched it."""
    thousands = "," if decimal_separator == "." else "."
    plain = text.replace("\u2212", "-").replace(thousands, "")
    return float(plain.replace(decimal_separator, "."))


def find_numbers(text: str, decimal_separator: str) -> list[tuple[str, float]]:
    """Every number in ``text``, in order, as (as written, value)."""
    return [
        (match.group(), parse_number(match.group(), decimal_separator))
        for match in number_pattern(decimal_separator).finditer(text)
    ]


def relative_difference(actual: float, expected: float) -> float:
    """``|actual - expected| / |expected|``; against an expected 0, 0 when equal, else inf."""
    if expected == 0:
        return 0.0 if actual == 0 else math.inf
    return abs(actual - expected) / abs(expected)


def extract_number(
    output: str, *, extract: str, pattern: str | None, decimal_separator: str
) -> tuple[str | None, str]:
    """The number of ``output`` that counts: (as written, where it was found), or (None, why
    there is none). ``pattern`` narrows the search to its first group (or its whole match);
    ``extract`` is ``first``, ``last`` or ``only`` (exactly one number allowed)."""
    where = "the output"
    if pattern is not None:
        match = re.search(pattern, output)
        shown = pattern if len(pattern) <= 40 else pattern[:39] + "…"
        if match is None:
            return None, f"pattern '{shown}' is not found in the output"
        part = match.group(1) if match.re.groups else match.group()
        if part is None:
            return None, f"the group of pattern '{shown}' did not take part in the match"
        output, where = part, f"the match of pattern '{shown}'"
    found = find_numbers(output, decimal_separator)
    if not found:
        shown = output if len(output) <= 40 else output[:39] + "…"
        return None, f"no number in {where}: {shown!r}"
    if extract == "only" and len(found) > 1:
        return None, f"{len(found)} numbers in {where}; extract 'only' needs exactly one"
    written = found[-1][0] if extract == "last" else found[0][0]
    return written, f"the {extract} number in {where}"
