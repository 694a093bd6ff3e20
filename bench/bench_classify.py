"""Cost of classifying one failure against the shipped rules, in microseconds per call.

(a) a ``RuntimeError`` wrapping an openai ``BadRequestError`` "tools is not supported" (two links,
matched by a message rule), (b) a bare ``RuntimeError`` that no rule matches (every rule tried).
Baseline, measured in the same run: ``str()`` of (a)'s innermost exception plus one ``re.search``
of the capability regex on it, the least any message-based classification has to do. The target
is a ratio to it, as every speed target here: ``TARGET_RATIO`` is the 20 µs first set for a call,
over the 1.25 µs this baseline took on the machine that set it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx2
import openai

from config.policy import load_policy
from config.settings import DEFAULT_POLICY_FILE
from middleware.core.classify import Classifier

TARGET_RATIO = 16.0
CAPABILITY = re.compile(
    r"(?i)\b(tools?|tool_choice|function calling|response_format)\b.*\bnot supported\b"
)


def _raised(make: Callable[[], BaseException]) -> BaseException:
    try:
        raise make()
    except BaseException as error:
        return error


def _capability_error() -> BaseException:
    request = httpx2.Request("POST", "https://provider.invalid/v1/chat/completions")
    response = httpx2.Response(400, request=request, headers={"x-request-id": "req_1"})
    body = {
        "message": "tools is not supported in this model",
        "type": "invalid_request_error",
        "param": "tools",
        "code": None,
    }
    inner = openai.BadRequestError(
        "Error code: 400 - tools is not supported in this model", response=response, body=body
    )

    def wrapped() -> BaseException:
        try:
            raise inner
        except openai.BadRequestError as error:
            raise RuntimeError("unknown") from error

    try:
        wrapped()
    except RuntimeError as error:
        return error
    raise AssertionError("unreachable")


def _per_call_us(call: Callable[[], Any], *, min_time_s: float = 0.2, repeats: int = 5) -> float:
    """Best of ``repeats`` timings of enough calls to last ``min_time_s``, in µs per call."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            call()
        if time.perf_counter() - start >= min_time_s / 10:
            break
        n *= 2
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def run() -> list[dict[str, Any]]:
    # As the error-policy middleware does: one classifier per policy, its rule plan built once.
    classifier = Classifier(load_policy(DEFAULT_POLICY_FILE))
    now = time.time()
    cases = {
        "classify: wrapped openai capability error": _capability_error(),
        "classify: unknown RuntimeError (no rule)": _raised(lambda: RuntimeError("boom")),
    }
    inner = cases["classify: wrapped openai capability error"].__cause__
    baseline = _per_call_us(lambda: CAPABILITY.search(str(inner)))
    rows = []
    for name, exc in cases.items():
        value = _per_call_us(lambda exc=exc: classifier.classify(exc, now=now))  # type: ignore[misc]
        rows.append(
            {
                "name": name,
                "value": round(value, 3),
                "unit": "us",
                "baseline": round(baseline, 3),
                "ratio": round(value / baseline, 2),
                "target": f"<= {TARGET_RATIO:.0f}x",
                "ok": value / baseline <= TARGET_RATIO,
            }
        )
    return rows
