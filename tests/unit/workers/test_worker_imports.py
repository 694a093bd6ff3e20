"""What a worker process holds after ``import workers``: only what every job needs.

Each pydantic model of a request or a dead-letter record costs memory for its validators; a
worker builds one at its first use. Code for error messages and for starting an embedded Redis
is not loaded at all. The worker memory row of ``make bench`` relies on both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
import workers
from middleware.state.dead_letter_record import DeadLetterRecord
from workers.evaluations.configs import METRIC_CONFIGS
from workers.evaluations.models import EvaluationRequest, EvaluationResult
models = [DeadLetterRecord, EvaluationRequest, EvaluationResult, *METRIC_CONFIGS.values()]
print(json.dumps({
    "built": sorted(m.__name__ for m in models if m.__pydantic_complete__),
    "loaded": sorted(m for m in ("difflib", "workers.embedded_redis", "workers.process_group",
                                 "openai") if m in sys.modules),
}))
"""


@pytest.fixture(scope="module")
def after_import() -> dict[str, list[str]]:
    """What a fresh interpreter built and loaded with ``import workers``."""
    env = {**os.environ, "EVALQ_REDIS_URL": "redis://127.0.0.1:1/0", "EVALQ_ENV": "test"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True, env=env
    )
    return dict(json.loads(done.stdout))


def test_a_worker_builds_no_request_or_record_model_at_import(
    after_import: dict[str, list[str]],
) -> None:
    assert after_import["built"] == []


def test_a_worker_loads_no_error_hint_embedded_redis_or_provider_code_at_import(
    after_import: dict[str, list[str]],
) -> None:
    assert after_import["loaded"] == []


def test_a_deferred_model_validates_at_first_use() -> None:
    from workers.evaluations.configs import METRIC_CONFIGS

    config = METRIC_CONFIGS["exact_match"].model_validate({})
    assert type(config).__pydantic_complete__
