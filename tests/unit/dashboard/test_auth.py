"""Nothing is served without a login, viewers and read-only mode cannot act, and every action
needs the session's CSRF token."""

from __future__ import annotations

import logging
import re

import pytest
from starlette.routing import Mount, Route

from dashboard.auth import PUBLIC_PATHS, BindRefused, Tokens, check_bind
from tests.support.dead_letters import make_record
from tests.unit.dashboard.conftest import (
    METRICS_TOKEN,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    csrf_of,
    settings,
)

SAMPLE_PARAMS = {
    "job_id": "job-1",
    "record_id": "000000000000001-0123456789",
    "action_id": "000000000000001-01234567",
    "path": "htmx.min.js",
}


def concrete_routes(app):
    """Every (method, path) the app serves, with sample path parameters filled in."""
    for route in app.routes:
        if isinstance(route, Mount):
            yield "GET", route.path + "/" + SAMPLE_PARAMS["path"]
            continue
        assert isinstance(route, Route)
        path = re.sub(r"{(\w+)(:\w+)?}", lambda m: SAMPLE_PARAMS[m.group(1)], route.path)
        for method in sorted(route.methods or ["GET"]):
            if method != "HEAD":
                yield method, path


def test_every_route_but_health_and_login_refuses_a_request_without_a_session(make_client):
    client = make_client()
    checked = 0
    for method, path in concrete_routes(client.app):
        response = client.request(method, path)
        if path in PUBLIC_PATHS:
            continue
        checked += 1
        if path.startswith("/api/") or path == "/metrics":
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 303, (method, path)
            assert response.headers["location"] == "/login"
    assert checked >= 30


def test_every_state_changing_route_refuses_viewers_read_only_mode_and_a_missing_csrf_token(
    make_client,
):
    viewer, read_only = (
        make_client(role="viewer"),
        make_client(role="operator", dashboard_read_only=True),
    )
    operator = make_client(role="operator")
    posts = [
        path
        for method, path in concrete_routes(operator.app)
        if method == "POST" and path not in PUBLIC_PATHS and path != "/logout"
    ]
    assert len(posts) >= 8
    for path in posts:
        assert operator.post(path).status_code == 403, path  # no CSRF token
        assert viewer.post(path, headers={"X-CSRF-Token": csrf_of(viewer)}).status_code == 403
        assert read_only.post(path, headers={"X-CSRF-Token": csrf_of(read_only)}).status_code == 403
        wrong = operator.post(path, headers={"X-CSRF-Token": "not-the-token"})
        assert wrong.status_code == 403, path


def test_an_htmx_request_without_a_session_is_told_to_go_to_the_login_page(make_client):
    response = make_client().get("/running", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/login"


def test_health_and_the_login_form_are_served_without_a_session(make_client):
    client = make_client()
    assert client.get("/healthz").text == "ok"
    assert 'name="token"' in client.get("/login").text


def test_a_wrong_token_does_not_log_in(make_client):
    client = make_client()
    response = client.post("/login", data={"token": "guess"})
    assert response.status_code == 401
    assert client.get("/").status_code == 303


def test_the_printed_login_link_logs_in_and_leaves_the_token_out_of_the_address(make_client):
    client = make_client()
    response = client.get(f"/login?token={OPERATOR_TOKEN}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert client.get("/").status_code == 200


def test_the_session_cookie_is_http_only_same_site_strict_and_secure_over_https(make_client):
    plain = make_client().post("/login", data={"token": OPERATOR_TOKEN})
    cookie = plain.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    secure_client = make_client()
    secure_client.base_url = "https://testserver"
    secure = secure_client.post("https://testserver/login", data={"token": OPERATOR_TOKEN})
    assert "secure" in secure.headers["set-cookie"].lower()


def test_the_session_cookie_is_signed(make_client, operator):
    cookie = operator.cookies.get("evalq_session")
    assert cookie
    forged = make_client()
    forged.cookies.set("evalq_session", cookie[:-4] + "AAAA")
    assert forged.get("/").status_code == 303


def test_bearer_tokens_open_the_api_by_role(make_client, services):
    client = make_client()
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    record = make_record()
    services.dead_letters.add(record)
    assert client.get("/api/dlq", headers=viewer).json()["records"][0]["id"] == record.id
    refused = client.post(f"/api/dlq/{record.id}/purge", headers=viewer)
    assert refused.status_code == 403 and "viewers cannot act" in refused.json()["error"]
    # A bearer request needs no CSRF token: a browser never sends one on its own.
    assert client.post(f"/api/dlq/{record.id}/purge", headers=operator).json()["purged"] is True
    assert client.get("/api/dlq", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_metrics_token_opens_metrics_and_nothing_else(make_client):
    client = make_client()
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert client.get("/metrics", headers=headers).status_code == 200
    assert client.get("/api/overview", headers=headers).status_code == 401
    assert (
        client.get("/metrics", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}).status_code
        == 200
    )


def test_read_only_mode_refuses_operators_but_still_shows_the_pages(make_client, services):
    services.dead_letters.add(make_record())
    client = make_client(role="operator", dashboard_read_only=True)
    page = client.get("/dlq")
    assert page.status_code == 200 and "read-only" in page.text
    assert "Redrive all matching" not in page.text
    response = client.post("/api/dlq/bulk", headers={"X-CSRF-Token": csrf_of(client)}, json={})
    assert response.status_code == 403 and "read-only" in response.json()["error"]


def test_viewers_see_no_action_buttons(viewer, services):
    services.dead_letters.add(make_record())
    page = viewer.get("/dlq").text
    assert "Redrive all matching" not in page and ">Purge<" not in page


def test_every_response_carries_a_strict_content_security_policy(operator):
    for path in ("/", "/login", "/api/overview", "/static/htmx.min.js"):
        policy = operator.get(path).headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "default-src 'none'" in policy


def test_pages_have_no_inline_scripts_or_styles(operator, services):
    services.dead_letters.add(make_record())
    for path in ("/", "/running", "/dlq", "/jobs", "/login"):
        page = operator.get(path).text
        assert "<script>" not in page and "<style" not in page and " style=" not in page
        assert all('src="/static/' in tag for tag in re.findall(r"<script[^>]*>", page))


def test_a_token_is_never_logged(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    client.post("/login", data={"token": OPERATOR_TOKEN, "name": "ada"})
    client.post("/login", data={"token": OPERATOR_TOKEN + "x"})
    client.get("/api/overview", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    client.post("/api/jobs/j/abort", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert "dashboard login: ada (operator)" in caplog.text
    for token in (OPERATOR_TOKEN, VIEWER_TOKEN):
        assert token not in caplog.text


def test_tokens_are_compared_in_constant_time_and_grant_their_role():
    tokens = Tokens(operator="op-secret", viewer="view-secret")
    assert tokens.role_of("op-secret") == "operator"
    assert tokens.role_of("view-secret") == "viewer"
    assert tokens.role_of("op-secre") is None and tokens.role_of("") is None


def test_without_a_configured_token_the_dashboard_refuses_any_address_but_loopback():
    generated = Tokens.from_settings(settings(dashboard_token=None))
    assert generated.generated and len(generated.operator) >= 24
    check_bind("127.0.0.1", generated)
    with pytest.raises(BindRefused, match="EVALQ_DASHBOARD_TOKEN"):
        check_bind("0.0.0.0", generated)
    with pytest.raises(BindRefused):
        check_bind("192.168.1.10", generated)
    check_bind("0.0.0.0", Tokens.from_settings(settings()))


def test_every_action_is_logged_with_who_did_it(operator, caplog, services):
    caplog.set_level(logging.INFO, logger="evalq.dashboard")
    record = make_record()
    services.dead_letters.add(record)
    operator.post(f"/dlq/records/{record.id}/purge", data={"csrf": csrf_of(operator)})
    assert "dashboard action purge by test-operator (operator)" in caplog.text
    assert record.id in caplog.text


def test_a_session_ends_when_its_roles_token_is_changed_or_removed(services):
    from starlette.testclient import TestClient

    from dashboard import create_app

    def app(**overrides):
        configured = settings(**overrides)
        return create_app(configured, services, tokens=Tokens.from_settings(configured))

    with TestClient(app(), follow_redirects=False) as before:
        before.post("/login", data={"token": VIEWER_TOKEN})
        cookie = before.cookies.get("evalq_session")
        assert before.get("/").status_code == 200
    for changed in ({"dashboard_viewer_token": "a-new-viewer-token"},
                    {"dashboard_viewer_token": None}):  # fmt: skip
        with TestClient(app(**changed), follow_redirects=False) as after:
            after.cookies.set("evalq_session", cookie)
            assert after.get("/").status_code == 303


def test_a_name_given_at_login_cannot_forge_log_lines(make_client, caplog):
    caplog.set_level(logging.INFO, logger="evalq.dashboard")
    make_client().post("/login", data={"token": OPERATOR_TOKEN, "name": "ada\nforged line"})
    assert "dashboard login: adaforged line (operator)" in caplog.text
