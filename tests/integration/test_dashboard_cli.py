"""``evalq dashboard`` serves the dashboard behind its login, prints the link to open, and will
not listen beyond loopback without a configured token; ``evalq up`` serves it beside its pools."""

from __future__ import annotations

import http.cookiejar
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.cli import EVALQ, REPO_ROOT, evalq_env, run_evalq

pytestmark = pytest.mark.integration


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def browser() -> urllib.request.OpenerDirector:
    """A client that keeps cookies and does not follow redirects."""
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirects())


def get(opener: urllib.request.OpenerDirector, url: str) -> tuple[int, str]:
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


URL_LINE = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/\S*)")


def read_url(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        found = URL_LINE.search(line)
        if found:
            return found.group(1)
    raise AssertionError("no dashboard URL printed:\n" + "".join(seen))


def test_the_dashboard_command_prints_a_login_link_that_opens_the_dashboard(redis_url):
    proc = subprocess.Popen([EVALQ, "dashboard", "--port", "0"], env=evalq_env(redis_url),
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        link = read_url(proc)
        assert "/login?token=" in link
        base = link.split("/login")[0]
        opener = browser()
        assert get(opener, f"{base}/healthz") == (200, "ok")
        assert get(opener, f"{base}/")[0] == 303
        assert get(opener, link)[0] == 303
        status, page = get(opener, f"{base}/")
        assert status == 200 and "Overview" in page
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    # Logins (and actions) are logged with who did them; the token only ever in the link.
    assert "evalq.dashboard INFO dashboard login: operator (operator)" in rest
    token = link.split("token=")[1]
    assert token not in rest


def test_the_dashboard_refuses_to_listen_beyond_loopback_without_a_token(redis_url):
    refused = run_evalq("dashboard", "--host", "0.0.0.0", "--port", "0", redis_url=redis_url)
    assert refused.returncode == 2
    assert "without EVALQ_DASHBOARD_TOKEN" in refused.stderr


def test_up_prints_the_dashboard_url_and_serves_it(tmp_path: Path) -> None:
    up = subprocess.Popen([EVALQ, "up"], cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          env=evalq_env(None, EVALQ_DASHBOARD_PORT="0"))  # fmt: skip
    try:
        link = read_url(up)
        opener = browser()
        assert get(opener, link)[0] == 303
        status, page = get(opener, link.split("/login")[0] + "/")
        assert status == 200 and "evaluations.live" in page
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
