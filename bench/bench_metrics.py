"""Per-job cost of each metric on the evaluation path, at 1,000 jobs per metric.

What a worker does for one evaluation job, minus Redis: validate the payload into an
``EvaluationRequest`` (the metric's config included) and ``evaluate`` it. Each metric runs
1,000 jobs of one evaluation over distinct targets, as a batch does. The figure is the CPU time
of the calling thread per job, in microseconds: for the metrics that call the provider it is
the openai SDK's own work (building the request, parsing the answer) and ours, not the wait for
the simulated provider (which answers from another thread on 127.0.0.1). Baseline, measured in
the same run: ``exact_match``. Targets are ratios to it, with room for slower machines.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import openai

from config.settings import Settings
from workers.demo.provider import SimulatedProvider
from workers.evaluations.evaluate import evaluate
from workers.evaluations.llm_judge import make_client
from workers.evaluations.models import EvaluationRequest

JOBS = 1_000
WARM_UP = 20

REFERENCE = "the board approved the budget for next year on tuesday after a long debate"
OUTPUT = "on tuesday the board approved next year's budget after a long and heated debate"
TICKET = '{"priority": "high", "team": "billing", "summary": "Customer was charged twice"}'
TICKET_SCHEMA = {
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
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"grade": {"type": "integer", "minimum": 0, "maximum": 10}, "reason": {}},
    "required": ["grade", "reason"],
}

#: (row name, type, metric, config, actual output, expected output, target ratio to baseline)
CASES: list[tuple[str, str, str, dict[str, Any], str, str | None, float]] = [
    ("exact_match (baseline)", "rule", "exact_match", {}, OUTPUT, REFERENCE, 1.5),
    ("regular_expression", "rule", "regular_expression", {"pattern": r"\bbudget\b"}, OUTPUT,
     None, 4),
    ("length_count", "rule", "length_count", {"max": 40}, OUTPUT, None, 4),
    ("schema_validation ($ref)", "rule", "schema_validation", {"schema": TICKET_SCHEMA}, TICKET,
     None, 10),
    ("lexical_overlap word", "rule", "lexical_overlap", {}, OUTPUT, REFERENCE, 4),
    ("lexical_overlap substring", "rule", "lexical_overlap", {"algorithm": "substring"},
     OUTPUT, REFERENCE, 4),
    ("lexical_overlap levenshtein", "rule", "lexical_overlap", {"algorithm": "levenshtein"},
     OUTPUT, REFERENCE, 4),
    ("lexical_overlap rouge-2", "rule", "lexical_overlap", {"algorithm": "rouge", "n": 2},
     OUTPUT, REFERENCE, 4),
    ("lexical_overlap rouge-l", "rule", "lexical_overlap",
     {"algorithm": "rouge", "variant": "rouge-l"}, OUTPUT, REFERENCE, 4),
    ("numeric_similarity", "rule", "numeric_similarity",
     {"pattern": r"total:\s*(\S+)", "tolerance": 0.01}, "Step 1: 25. Total: 1,250", "1250", 4),
    ("binary judge (HTTP)", "llm", "binary", {"model": "sim-judge", "criteria": "polite"},
     OUTPUT, None, 150),
    ("comparison judge (HTTP)", "llm", "comparison", {"model": "sim-judge"}, OUTPUT, REFERENCE,
     150),
    ("custom judge (HTTP)", "llm", "custom",
     {"model": "sim-judge", "prompt": "Grade {{actual_output}}", "schema": VERDICT_SCHEMA,
      "score_field": "grade", "max_score": 10}, OUTPUT, None, 150),
    ("semantic_similarity (HTTP)", "llm", "semantic_similarity", {"model": "sim-embed"},
     OUTPUT, REFERENCE, 150),
]  # fmt: skip


def _payloads(case: tuple[Any, ...], count: int) -> list[dict[str, Any]]:
    _, type_, metric, config, actual, expected, _ = case
    evaluation = {"uuid": str(uuid.uuid4()), "name": metric, "type": type_, "metric": metric,
                  "config": config}  # fmt: skip
    target = {"actual_output": actual} | ({"expected_output": expected} if expected else {})
    return [{"evaluation": evaluation, "target": {"uuid": str(uuid.uuid4()), **target}}
            for _ in range(count)]  # fmt: skip


def _per_job_us(payloads: list[dict[str, Any]], llm_client: Callable[[], openai.OpenAI]) -> float:
    for payload in payloads[:WARM_UP]:  # warm: caches, connections
        evaluate(EvaluationRequest.model_validate(payload), llm_client=llm_client)
    measured = payloads[WARM_UP:]
    start = time.thread_time()
    for payload in measured:
        evaluate(EvaluationRequest.model_validate(payload), llm_client=llm_client)
    return (time.thread_time() - start) / len(measured) * 1e6


def run() -> list[dict[str, Any]]:
    with SimulatedProvider() as provider:
        settings = Settings(
            provider_base_url=provider.base_url, provider_api_key="sk-bench", provider_timeout_s=5
        )
        sdk = make_client(settings)
        # One throwaway baseline run first: the first metric measured pays for warming the
        # interpreter's caches, which would flatter every ratio after it.
        _per_job_us(_payloads(CASES[0], JOBS + WARM_UP), lambda: sdk)
        costs = [(case, _per_job_us(_payloads(case, JOBS + WARM_UP), lambda: sdk))
                 for case in CASES]  # fmt: skip
        if provider.count() != (JOBS + WARM_UP) * sum(1 for c in CASES if c[1] == "llm"):
            raise AssertionError(f"expected one provider request per LLM job: {provider.count()}")
    baseline = costs[0][1]
    return [
        {
            "name": f"{case[0]}: per job",
            "value": round(cost, 1),
            "unit": "us",
            "baseline": round(baseline, 1),
            "ratio": round(cost / baseline, 2),
            "target": f"<= {case[6]:g}x",
            "ok": cost / baseline <= case[6],
        }
        for case, cost in costs
    ]
