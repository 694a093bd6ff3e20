"""A dashboard app on the real (embedded) Redis, and clients logged in with each role."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from starlette.testclient import TestClient

import workers
from config.settings import Settings
from dashboard import Services, create_app
from dashboard.auth import Tokens

OPERATOR_TOKEN = "operator-token-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789"
METRICS_TOKEN = "metrics-token-0123456789"


def settings(**overrides: object) -> Settings:
    fields: dict[str, object] = {
        "dashboard_token": OPERATOR_TOKEN,
        "dashboard_viewer_token": VIEWER_TOKEN,
        "metrics_token": METRICS_TOKEN,
        **overrides,
    }
    return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture
def services(redis_client: redis.Redis) -> Services:
    return Services.from_settings(settings(), redis_client, workers.policy)


AppFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(services: Services) -> Iterator[AppFactory]:
    clients: list[TestClient] = []

    def make(*, role: str | None = None, **overrides: object) -> TestClient:
        configured = settings(**overrides)
        client = TestClient(
            create_app(configured, services, tokens=Tokens.from_settings(configured)),
            follow_redirects=False,
        )
        clients.append(client)
        if role is not None:
            token = OPERATOR_TOKEN if role == "operator" else VIEWER_TOKEN
            response = client.post("/login", data={"token": token, "name": f"test-{role}"})
            assert response.status_code == 303
        return client

    yield make
    for client in clients:
        client.close()


def csrf_of(client: TestClient) -> str:
    """The session's CSRF token, as the pages embed it."""
    page = client.get("/").text
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


@pytest.fixture
def operator(make_client: AppFactory) -> TestClient:
    return make_client(role="operator")


@pytest.fixture
def viewer(make_client: AppFactory) -> TestClient:
    return make_client(role="viewer")
