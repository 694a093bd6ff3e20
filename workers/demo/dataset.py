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
        "type": "object",
        "required": ["priority", "team", "summary"],
        "properties": {
            "priority": {"enum": ["low", "medium", "high"]},
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
        *_helpfulness_binary(),
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
