"""The demo's bundled dataset: a deterministic mix of rule and LLM-judge evaluations.

``build_dataset()`` is the source of truth; ``sample.jsonl`` beside this module is the same data
as a file you can submit yourself (``evalq submit workers/demo/sample.jsonl``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

SAMPLE_FILE = Path(__file__).with_name("sample.jsonl")
_NAMESPACE = uuid.UUID("5d1c7f52-9a53-4c0e-9a4e-3f3b8f0c2a11")

_CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Canada", "Ottawa"),
    ("Norway", "Oslo"),
    ("Egypt", "Cairo"),
    ("Chile", "Santiago"),
    ("India", "New Delhi"),
    ("Spain", "Madrid"),
    ("Ghana", "Accra"),
    ("Italy", "Rome"),
    ("Nepal", "Kathmandu"),
    ("Cuba", "Havana"),
    ("Poland", "Warsaw"),
    ("Qatar", "Doha"),
    ("Greece", "Athens"),
    ("Iran", "Tehran"),
    ("Mali", "Bamako"),
    ("Laos", "Vientiane"),
]
# Answers a model gave; some are wrong, some differ only in case or spacing.
_WRONG = {"Canada": "Toronto", "India": "Mumbai", "Nepal": "Pokhara", "Mali": "Timbuktu"}


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def _request(evaluation: dict[str, Any], n: int, target: dict[str, Any]) -> dict[str, Any]:
    return {"evaluation": evaluation, "target": {"uuid": _id(evaluation["name"], n), **target}}


def _capitals_exact() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("capitals"),
        "name": "capitals-exact",
        "type": "rule",
        "metric": "exact_match",
        "config": {"case_sensitive": False},
    }
    rows = []
    for n in range(40):
        country, capital = _CAPITALS[n % len(_CAPITALS)]
        answer = _WRONG.get(country, capital) if n < 20 else f"  {capital.lower()} "
        rows.append(
            _request(
                evaluation,
                n,
                {
                    "input": f"What is the capital of {country}?",
                    "actual_output": answer,
                    "expected_output": capital,
                },
            )
        )
    return rows


def _citations_regex() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("citations"),
        "name": "answer-cites-a-source",
        "type": "rule",
        "metric": "regular_expression",
        "config": {"pattern": r"\[\d+\]"},
    }
    return [
        _request(
            evaluation,
            n,
            {
                "input": f"Summarise report {n} with citations.",
                "actual_output": f"Revenue grew {n % 9 + 2}% year on year"
                + (f" [{n % 4 + 1}]." if n % 3 else "."),
            },
        )
        for n in range(30)
    ]


def _tickets_schema() -> list[dict[str, Any]]:
    schema = {
        "$defs": {"priority": {"enum": ["low", "medium", "high"]}},
        "type": "object",
        "required": ["priority", "team", "summary"],
        "properties": {
            "priority": {"$ref": "#/$defs/priority"},
            "team": {"type": "string", "minLength": 2},
            "summary": {"type": "string", "maxLength": 80},
        },
        "additionalProperties": False,
    }
    evaluation = {
        "uuid": _id("tickets"),
        "name": "ticket-triage-json",
        "type": "rule",
        "metric": "schema_validation",
        "config": {"schema": schema},
    }
    rows = []
    for n in range(30):
        ticket = {
            "priority": ["low", "medium", "high"][n % 3],
            "team": "billing",
            "summary": f"Customer {n} was charged twice",
        }
        if n % 7 == 0:
            ticket["priority"] = "urgent"
        output = json.dumps(ticket) if n % 10 != 9 else "Sure! Here is the JSON: {priority: high}"
        rows.append(
            _request(
                evaluation, n, {"input": f"Triage ticket #{1000 + n}", "actual_output": output}
            )
        )
    return rows


def _summary_length() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("summary-length"),
        "name": "summary-within-40-words",
        "type": "rule",
        "metric": "length_count",
        "config": {"unit": "words", "min": 5, "max": 40},
    }
    sentence = "The quarterly report shows steady growth in every region we serve"
    return [
        _request(
            evaluation,
            n,
            {
                "input": "Summarise the quarterly report.",
                "actual_output": " ".join([sentence] * (1 + n % 5)),
            },
        )
        for n in range(20)
    ]


def _overlap() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("overlap"),
        "name": "paraphrase-overlap",
        "type": "rule",
        "metric": "lexical_overlap",
        "config": {"method": "f1", "threshold": 0.5},
    }
    reference = "the cat sat on the warm mat near the kitchen door"
    variants = [
        reference,
        "a cat sat on a warm mat by the kitchen door",
        "the dog slept under the table",
        "near the kitchen door the cat sat on the mat",
        "stock prices fell sharply on monday",
    ]
    return [
        _request(
            evaluation,
            n,
            {
                "input": "Describe the picture.",
                "actual_output": variants[n % len(variants)],
                "expected_output": reference,
            },
        )
        for n in range(30)
    ]


def _summary_rouge() -> list[dict[str, Any]]:
    # Each variant of lexical_overlap on the same paraphrases: ROUGE-2, ROUGE-L, edit distance.
    reference = "the board approved the budget for next year on tuesday"
    variants = [
        reference,
        "on tuesday the board approved the budget for next year",
        "the board rejected the budget for next year on tuesday",
        "the budget was approved",
    ]
    configs = [
        ("summary-rouge2", {"algorithm": "rouge", "n": 2, "threshold": 0.5}),
        ("summary-rougeL", {"algorithm": "rouge", "variant": "rouge-l", "method": "recall"}),
        ("summary-levenshtein", {"algorithm": "levenshtein", "threshold": 0.8}),
    ]
    rows = []
    for name, config in configs:
        evaluation = {
            "uuid": _id(name),
            "name": name,
            "type": "rule",
            "metric": "lexical_overlap",
            "config": config,
        }
        rows += [
            _request(
                evaluation,
                n,
                {
                    "input": "Summarise the meeting.",
                    "actual_output": variants[n % len(variants)],
                    "expected_output": reference,
                },
            )
            for n in range(8)
        ]
    return rows


def _citation_substring() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("quote"),
        "name": "answer-quotes-the-source",
        "type": "rule",
        "metric": "lexical_overlap",
        "config": {"algorithm": "substring", "threshold": 0.9},
    }
    quote = "Revenue grew 4% in the third quarter"
    outputs = [
        f'The report says: "{quote}."',
        "The report says revenue grew 4 percent in the third quarter.",
        "The report does not mention revenue.",
    ]
    return [
        _request(
            evaluation,
            n,
            {
                "input": "Quote the revenue sentence.",
                "actual_output": outputs[n % 3],
                "expected_output": quote,
            },
        )
        for n in range(9)
    ]


def _arithmetic_numeric() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("arithmetic"),
        "name": "word-problem-answer",
        "type": "rule",
        "metric": "numeric_similarity",
        "config": {"pattern": r"(?i)answer:\s*(\S+)", "tolerance": 0.01},
    }
    rows = []
    for n in range(12):
        expected = 1250 + 125 * n
        given = expected if n % 4 else round(expected * 1.1)
        output = (
            f"Step 1: 25 boxes. Step 2: {given // 25} each. Answer: {given:,}"
            if n % 6
            else "I cannot tell."
        )
        rows.append(
            _request(
                evaluation,
                n,
                {
                    "input": f"How many items in total? (problem {n})",
                    "actual_output": output,
                    "expected_output": str(expected),
                },
            )
        )
    return rows


def _faq_semantic() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("faq-semantic"),
        "name": "faq-answer-similarity",
        "type": "llm",
        "metric": "semantic_similarity",
        "config": {"model": "sim-embed", "threshold": 0.5},
    }
    expected = "You can return an item within 30 days for a full refund."
    outputs = [
        "Items can be returned within 30 days for a full refund.",
        "Return any item within 30 days and get a full refund.",
        "Our store opens at nine in the morning.",
    ]
    return [
        _request(
            evaluation,
            n,
            {
                "input": "What is the return policy?",
                "actual_output": outputs[n % 3],
                "expected_output": expected,
            },
        )
        for n in range(12)
    ]


def _translation_comparison() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("translation"),
        "name": "translation-matches-reference",
        "type": "llm",
        "metric": "comparison",
        "config": {"model": "judge-small", "output_mode": "json", "threshold": 0.6},
    }
    return [
        _request(
            evaluation,
            n,
            {
                "input": f"Translate to English: Der Zug fährt um {n + 8} Uhr ab.",
                "actual_output": f"The train leaves at {n + 8} o'clock.",
                "expected_output": f"The train departs at {n + 8}:00.",
            },
        )
        for n in range(10)
    ]


def _grounding_custom() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("grounding"),
        "name": "answer-grounded-in-context",
        "type": "llm",
        "metric": "custom",
        "config": {
            "model": "judge-small",
            "output_mode": "tools",
            "prompt": (
                "Context and question:\n{{input}}\n\nAnswer:\n{{actual_output}}\n\n"
                "Grade from 0 to 10 how well every claim in the answer is supported by the "
                "context, and say whether any claim contradicts it."
            ),
            "schema": {
                "type": "object",
                "$defs": {"grade": {"type": "integer", "minimum": 0, "maximum": 10}},
                "properties": {
                    "grade": {"$ref": "#/$defs/grade"},
                    "contradiction": {"type": "boolean"},
                    "reason": {"type": "string"},
                },
                "required": ["grade", "contradiction", "reason"],
                "additionalProperties": False,
            },
            "score_field": "grade",
            "max_score": 10,
            "threshold": 6,
        },
    }
    return [
        _request(
            evaluation,
            n,
            {
                "input": f"Context: the museum opens at {9 + n % 3} am. When does it open?",
                "actual_output": f"It opens at {9 + n % 2} am.",
            },
        )
        for n in range(8)
    ]


def _helpfulness_binary() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("helpfulness"),
        "name": "answer-is-helpful",
        "type": "llm",
        "metric": "binary",
        "config": {
            "model": "judge-small",
            "output_mode": "json",
            "criteria": "The answer addresses the user's question directly and correctly.",
        },
    }
    return [
        _request(
            evaluation,
            n,
            {
                "input": f"How do I reset my password? (case {n})",
                "actual_output": "Open Settings, choose Security, then "
                f"'Reset password'. Step {n % 4 + 1} of 4.",
            },
        )
        for n in range(44)
    ]


def _tone_rating() -> list[dict[str, Any]]:
    evaluation = {
        "uuid": _id("tone"),
        "name": "support-tone-rating",
        "type": "llm",
        "metric": "rating",
        "config": {
            "model": "judge-small",
            "output_mode": "tools",
            "criteria": "Rate how polite and empathetic the reply is.",
            "min_rating": 1,
            "max_rating": 5,
        },
    }
    return [
        _request(
            evaluation,
            n,
            {
                "input": "My order is late again.",
                "actual_output": f"Sorry about that! Order {n} ships today.",
            },
        )
        for n in range(30)
    ]


def _legacy_model_tools() -> list[dict[str, Any]]:
    # A model that cannot do tool calls: every one of these fails permanently.
    evaluation = {
        "uuid": _id("legacy"),
        "name": "legacy-judge-faithfulness",
        "type": "llm",
        "metric": "binary",
        "config": {
            "model": "legacy-judge",
            "output_mode": "tools",
            "criteria": "The answer is faithful to the source.",
        },
    }
    return [
        _request(
            evaluation,
            n,
            {
                "input": "Source: the bridge opened in 1932.",
                "actual_output": f"The bridge opened in {1930 + n}.",
            },
        )
        for n in range(6)
    ]


def build_dataset() -> list[dict[str, Any]]:
    """Every demo request, in a fixed order."""
    return [
        *_capitals_exact(),
        *_citations_regex(),
        *_tickets_schema(),
        *_summary_length(),
        *_overlap(),
        *_summary_rouge(),
        *_citation_substring(),
        *_arithmetic_numeric(),
        *_helpfulness_binary(),
        *_faq_semantic(),
        *_translation_comparison(),
        *_grounding_custom(),
        *_tone_rating(),
        *_legacy_model_tools(),
    ]


def write_sample(path: Path = SAMPLE_FILE) -> None:
    """Write the dataset as JSONL (how ``sample.jsonl`` is produced)."""
    with path.open("w", encoding="utf-8") as out:
        for request in build_dataset():
            out.write(json.dumps(request, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_sample()
