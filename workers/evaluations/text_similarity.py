"""How alike two texts are: the measures behind the ``lexical_overlap`` rule metric.

Pure functions of two strings, each returning figures in 0..1 (1: identical by that measure):

- **word overlap**: words compared as multisets (precision, recall, f1, jaccard);
- **substring**: how well the expected text appears inside the output (rapidfuzz);
- **levenshtein**: normalised edit similarity of the whole texts (rapidfuzz);
- **ROUGE-N**: n-gram overlap counted here; **ROUGE-L**: longest common subsequence of words
  (rapidfuzz's LCS on word sequences); both with precision, recall and f1.

Words are runs of unicode letters and digits after NFC normalisation, case-folded unless
``case_sensitive``. The character measures see the text after the same normalisation and
case folding, nothing else removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq, Levenshtein

_WORD = re.compile(r"[^\W_]+")  # runs of unicode letters and digits


@dataclass(frozen=True, slots=True)
class Overlap:
    """Shared units between an output and an expected text, and the figures they give.

    ``shared`` units (words, n-grams or the LCS length) of ``output`` units in the output and
    ``expected`` in the expected text.
    """

    shared: int
    output: int
    expected: int
    precision: float
    recall: float
    f1: float
    jaccard: float


def normalise(text: str, case_sensitive: bool) -> str:
    """``text`` in NFC, case-folded unless ``case_sensitive``."""
    text = unicodedata.normalize("NFC", text)
    return text if case_sensitive else text.casefold()


def words(text: str, case_sensitive: bool) -> list[str]:
    """The words of ``text``, in order."""
    return _WORD.findall(normalise(text, case_sensitive))


def overlap(shared: int, output: int, expected: int) -> Overlap:
    """The figures of ``shared`` units out of ``output`` and ``expected``.

    Two sides without units are identical (every figure 1); one side without any scores 0.
    """
    if output == 0 and expected == 0:
        return Overlap(0, 0, 0, 1.0, 1.0, 1.0, 1.0)
    precision = shared / output if output else 0.0
    recall = shared / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if shared else 0.0
    jaccard = shared / (output + expected - shared)
    return Overlap(shared, output, expected, precision, recall, f1, jaccard)


def word_overlap(output: list[str], expected: list[str]) -> Overlap:
    """Words as multisets: a word is shared as often as both sides have it."""
    actual, reference = Counter(output), Counter(expected)
    return overlap(sum((actual & reference).values()), len(output), len(expected))


def ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    """The n-grams of ``tokens`` with their counts (none when there are fewer than ``n``)."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(output: list[str], expected: list[str], n: int) -> Overlap:
    """ROUGE-N: clipped n-gram counts. precision = shared / output n-grams, recall = shared /
    expected n-grams. Texts too short for any n-gram compare their words instead: equal word
    sequences score 1, anything else 0."""
    actual, reference = ngrams(output, n), ngrams(expected, n)
    if not actual and not reference:
        same = output == expected
        return Overlap(int(same), 0, 0, float(same), float(same), float(same), float(same))
    return overlap(sum((actual & reference).values()), actual.total(), reference.total())


def rouge_l(output: list[str], expected: list[str]) -> Overlap:
    """ROUGE-L: the longest common subsequence of words. precision = LCS / output words,
    recall = LCS / expected words."""
    return overlap(int(LCSseq.similarity(output, expected)), len(output), len(expected))


def substring_similarity(output: str, expected: str) -> float:
    """1 when ``expected`` appears verbatim in ``output``; otherwise how close the best-matching
    window of ``output`` comes to it (rapidfuzz ``partial_ratio``, Indel-normalised). An output
    shorter than the expected text cannot contain it: it is compared whole (``ratio``)."""
    if not expected:
        return 1.0
    if len(output) < len(expected):
        return float(fuzz.ratio(output, expected)) / 100
    return float(fuzz.partial_ratio(expected, output)) / 100


def levenshtein_similarity(output: str, expected: str) -> tuple[float, int]:
    """(1 - distance / length of the longer text, the edit distance); two empty texts: (1, 0)."""
    distance = int(Levenshtein.distance(output, expected))
    return float(Levenshtein.normalized_similarity(output, expected)), distance
