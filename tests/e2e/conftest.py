"""A real dashboard server, real worker processes and headless Chromium (Debian's, driven by
Playwright). Skipped, saying why, where /usr/bin/chromium is absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import workers
from config.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "e2e-operator-token-0123456789"
#: Set to 1 to (re)write the README's screenshots under docs/screenshots/.
SCREENSHOTS = os.environ.get("EVALQ_UPDATE_SCREENSHOTS") == "1"
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(
            "needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium; "
            ".ci/run installs it)"
        )
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture
def dashboard(redis_url: str) -> Iterator[str]:
    """A dashboard server on a free loopback port; yields its base URL."""
    from dashboard.server import DashboardServer

    client = redis.Redis.from_url(redis_url)
    settings = Settings(dashboard_token=TOKEN, env="test")
    server = DashboardServer(settings, client, workers.policy, host="127.0.0.1", port=0).start()
    yield server.url.rstrip("/")
    server.stop()
    client.close()


@pytest.fixture
def page(browser, dashboard: str) -> Iterator[object]:
    """A browser page logged in as an operator named e2e."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    tab.goto(f"{dashboard}/")
    assert tab.url.endswith("/login")
    tab.fill("input[name=token]", TOKEN)
    tab.fill("input[name=name]", "e2e")
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{dashboard}/")
    yield tab
    context.close()


def screenshot(tab: object, name: str) -> None:
    """Save ``docs/screenshots/<name>.png`` when EVALQ_UPDATE_SCREENSHOTS=1."""
    if SCREENSHOTS:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
