from __future__ import annotations

import json
from collections import Counter

from workers.demo.dataset import SAMPLE_FILE, build_dataset
from workers.evaluations.configs import LLM_METRICS, RULE_METRICS
from workers.evaluations.models import EvaluationRequest


def test_the_bundled_sample_file_is_exactly_the_generated_dataset() -> None:
    lines = SAMPLE_FILE.read_text().splitlines()
    assert [json.loads(line) for line in lines] == build_dataset()


def test_the_dataset_has_at_least_200_valid_requests_over_every_metric() -> None:
    requests = [EvaluationRequest.model_validate(r) for r in build_dataset()]
    assert len(requests) >= 200
    metrics = Counter(r.evaluation.metric for r in requests)
    assert set(metrics) == set(RULE_METRICS) | set(LLM_METRICS)
    assert len({r.result_key for r in requests}) == len(requests)


def test_the_dataset_includes_a_model_that_cannot_do_tool_calls() -> None:
    legacy = [
        r for r in build_dataset() if r["evaluation"]["config"].get("model") == "legacy-judge"
    ]
    assert legacy and all(r["evaluation"]["config"]["output_mode"] == "tools" for r in legacy)


def test_the_dataset_uses_every_lexical_overlap_algorithm() -> None:
    algorithms = {
        r["evaluation"]["config"].get("algorithm", "word")
        for r in build_dataset()
        if r["evaluation"]["metric"] == "lexical_overlap"
    }
    assert algorithms == {"word", "substring", "levenshtein", "rouge"}
