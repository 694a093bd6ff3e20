from __future__ import annotations

from middleware.state.dead_letters import DeadLetters
from tests.support.dead_letters import make_record


def test_smoke(operator, services):
    services.dead_letters.add(make_record())
    for path in ["/", "/running", "/jobs", "/dlq", "/dlq/actions", "/api/overview", "/api/dlq", "/metrics"]:
        r = operator.get(path)
        print(path, r.status_code, r.text[:300] if r.status_code != 200 else "")
        assert r.status_code in (200,), path
