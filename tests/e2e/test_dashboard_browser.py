"""In a real browser against real workers and Redis: watch a running job, abort it, redrive a
filtered set of dead letters after the confirmation, search the history."""

from __future__ import annotations

import time

from middleware.core.classify import EXPLICIT_RULE
from middleware.state.jobs import History
from middleware.worker_registry import live_workers
from tests.e2e.conftest import screenshot
from tests.support.dashboard_actors import FIXED_KEY, QUEUE, fail_until_fixed, linger

ACTORS = ("tests.support.dashboard_actors",)


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


def test_an_operator_watches_a_running_job_appear_aborts_it_and_sees_it_aborted(
    page, dashboard, worker_pools, redis_client
):
    worker_pools.start(QUEUE, modules=ACTORS, threads=2)
    page.goto(f"{dashboard}/running")
    job_id = linger.send(120).message_id
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    row.wait_for()  # appears through the page's live polling, without a reload
    assert "1 of" in row.inner_text()
    screenshot(page, "running")
    # Its page, in another tab, shows the running attempt, its worker and its payload.
    (worker,) = [w["id"] for w in live_workers(redis_client)]
    detail = page.context.new_page()
    detail.goto(f"{dashboard}/jobs/{job_id}")
    assert detail.inner_text("#job-worker") == worker
    running = detail.locator("tr.running")
    assert "running" in running.inner_text() and worker in running.inner_text()
    payload = detail.inner_text("#job-payload")
    assert '"actor_name": "linger"' in payload and "120" in payload
    detail.close()
    page.locator(f'tr[data-job-id="{job_id}"] button:has-text("Abort")').click()
    page.wait_for_url(f"{dashboard}/jobs/{job_id}")
    page.locator("#job-state:has-text('aborted')").wait_for()
    assert History(redis_client).show(job_id)["state"] == "aborted"
    screenshot(page, "job")


def test_an_operator_filters_dead_letters_by_category_and_bulk_redrives_them_to_success(
    page, dashboard, worker_pools, redis_client
):
    worker_pools.start(QUEUE, modules=ACTORS, threads=4)
    redrive = [fail_until_fixed.send(f"r{i}", "invalid_request").message_id for i in range(3)]
    kept = [fail_until_fixed.send(f"k{i}", "model_capability").message_id for i in range(2)]
    history = History(redis_client)
    wait_until(
        lambda: all(d and d["state"] == "dead_lettered" for d in history.show_many(redrive + kept)),
        what="5 dead letters",
    )
    redis_client.sadd(FIXED_KEY, *(f"r{i}" for i in range(3)), *(f"k{i}" for i in range(2)))

    page.goto(f"{dashboard}/dlq")
    page.select_option("select[name=category]", "invalid_request")
    page.click("form.filters button[type=submit]")
    page.locator("#matching").wait_for()
    assert page.inner_text("#matching") == "3"
    assert page.locator("table.dlq tbody tr").count() == 3
    # The provider's markup is shown as text, never run.
    assert "<script>alert(1)</script>" in page.inner_text("table.dlq")
    assert page.locator("table.dlq b").count() == 0
    screenshot(page, "dead-letters")
    page.click("#bulk-redrive")
    assert page.inner_text("#confirm-count") == "3"
    page.click("#confirm-bulk")
    page.locator("#bulk-state:has-text('finished')").wait_for()
    assert page.inner_text("#bulk-changed") == "3"

    wait_until(
        lambda: all(d["state"] == "succeeded" for d in history.show_many(redrive)),
        what="the redriven jobs succeeded",
    )
    page.goto(f"{dashboard}/jobs/{redrive[0]}")
    page.locator("#job-state:has-text('succeeded')").wait_for()
    assert [d["state"] for d in history.show_many(kept)] == ["dead_lettered"] * 2
    page.goto(f"{dashboard}/jobs/{kept[0]}")
    assert page.inner_text("td.attempt-rule") == EXPLICIT_RULE
    assert page.inner_text("td.attempt-worker") in {w["id"] for w in live_workers(redis_client)}
    page.goto(f"{dashboard}/dlq/actions")
    assert "e2e (operator)" in page.inner_text("table")
    page.goto(f"{dashboard}/")
    page.locator("text=failed: model_capability: 2").wait_for()
    screenshot(page, "overview")


def test_an_operator_searches_the_history_by_state_and_category(
    page, dashboard, worker_pools, redis_client
):
    worker_pools.start(QUEUE, modules=ACTORS, threads=4)
    redis_client.sadd(FIXED_KEY, "ok")
    failed = fail_until_fixed.send("bad", "content_filtered").message_id
    succeeded = fail_until_fixed.send("ok", "content_filtered").message_id
    history = History(redis_client)
    wait_until(
        lambda: all(
            d and d["state"] in ("succeeded", "dead_lettered")
            for d in history.show_many([failed, succeeded])
        ),
        what="both finished",
    )
    page.goto(f"{dashboard}/jobs")
    page.select_option("select[name=state]", "dead_lettered")
    page.fill("input[name=category]", "content_filtered")
    page.click("#search")
    page.locator(f'a[href="/jobs/{failed}"]').wait_for()
    assert page.locator(f'a[href="/jobs/{succeeded}"]').count() == 0
