"""The dashboard in headless Chromium against the real server and a worker.

Screenshots go to tests/artifacts/ (git-ignored); docs/dashboard-overview.png is
a copy of overview.png.
"""

import re

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import TOKEN
from tests.e2e.dashboard_jobs import UNICODE_ERROR, UNICODE_TYPE

SCRIPT = "<script>alert(1)</script>"

pytestmark = pytest.mark.slow
# Messages of the dialogs (confirm, alert) the current test's page opened, and its script errors.
DIALOGS = []
ERRORS = []


@pytest.fixture
def page(browser, plugin_server):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    DIALOGS.clear()
    ERRORS.clear()

    def on_dialog(dialog):
        DIALOGS.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: ERRORS.append(str(error)))
    page.on("console", lambda message: ERRORS.append(message.text) if message.type == "error" else None)
    yield page
    context.close()


def log_in(page, base_url, target="/dashboard"):
    page.goto(base_url + target)
    assert "/dashboard/login" in page.url
    page.fill("#token", TOKEN)
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(re.escape(base_url + target) + r"$"))


def test_login_failed_job_retry_pause_resume(page, plugin_server, artifacts):
    api = plugin_server
    base = api.base_url
    completed = [api.submit("test-echo", {"value": index}) for index in range(6)]
    failed = api.submit("test-fail", {"message": "upstream answered 502"}, maxRetries=0)
    unicode_job = api.submit(UNICODE_TYPE, {"fail": True}, maxRetries=0, description="中文 ✓")
    hostile = api.submit("test-echo", {"note": SCRIPT})
    wait_for(lambda: api.status_of(failed) == "failed" and api.status_of(unicode_job) == "failed"
             and all(api.status_of(job_id) == "completed" for job_id in completed + [hostile]),
             timeout_s=60, message="the jobs to end")

    page.goto(base + "/dashboard")
    page.screenshot(path=str(artifacts / "login.png"))
    log_in(page, base)
    wait_for(lambda: "Failed, last 24 h: 2" in page.inner_text("main") or page.reload(), timeout_s=10,
             message="the history to reach the overview")
    assert page.locator("text=workers alive").count() == 1
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    # Find the failed job through the failures page and retry it.
    page.click("header nav >> text=Failures")
    assert "upstream answered 502" in page.inner_text("main")
    assert UNICODE_ERROR in page.inner_text("main")
    page.screenshot(path=str(artifacts / "failures.png"), full_page=True)
    page.click(f"a[href='/dashboard/jobs/{failed}']")
    assert page.inner_text(".badge.failed").strip() == "failed"
    assert "upstream answered 502" in page.inner_text("pre.error")
    page.screenshot(path=str(artifacts / "failed-job.png"), full_page=True)
    page.click("button:has-text('Retry')")
    assert f"Job {failed} queued again." in page.inner_text(".flash")
    wait_for(lambda: api.request("GET", f"/api/jobs/{failed}")[1]["attempts"] == 2, timeout_s=30,
             message="the retried job to run again")
    page.reload()
    assert "2/2" in page.inner_text("dl.facts")

    # Pause the default queue: a new job waits until the queue is resumed.
    page.click("header nav >> text=Overview")
    page.click("tr:has(a[href='/dashboard/queues/default']) >> button:has-text('Pause')")
    assert any("Pause queue default" in message for message in DIALOGS)
    assert "Queue default paused" in page.inner_text(".flash")
    assert page.locator("tr:has(a[href='/dashboard/queues/default']) .badge.paused").count() == 1
    waiting = api.submit("test-echo", {"value": "after pause"})
    page.wait_for_timeout(2000)
    assert api.status_of(waiting) == "pending"
    page.goto(base + "/dashboard/queues/default?status=pending")
    assert waiting[:8] in page.inner_text("main")
    page.screenshot(path=str(artifacts / "queue-paused.png"), full_page=True)
    page.click("button:has-text('Resume queue')")
    assert "Queue default resumed." in page.inner_text(".flash")
    wait_for(lambda: api.status_of(waiting) == "completed", timeout_s=30, message="the job after resume")

    # Unicode and a script in a payload are shown as text.
    page.goto(f"{base}/dashboard/jobs/{unicode_job}")
    main = page.inner_text("main")
    assert UNICODE_TYPE in main
    assert "中文 ✓" in main
    assert UNICODE_ERROR in main
    page.goto(f"{base}/dashboard/jobs/{hostile}")
    assert SCRIPT in page.inner_text("main")
    assert page.locator("main script").count() == 0
    assert "1" not in DIALOGS
    assert ERRORS == [], ERRORS


def test_overview_refreshes_itself(page, plugin_server):
    api = plugin_server
    log_in(page, api.base_url)
    api.request("POST", "/api/queues/low-priority/pause")
    status, body = api.request("POST", "/api/jobs", {"type": "test-echo", "queue": "low-priority"})
    assert status == 201, body
    waiting_cell = "tr:has(a[href='/dashboard/queues/low-priority']) td.num >> nth=0"
    wait_for(lambda: page.inner_text(waiting_cell).strip() == "1", timeout_s=15, message="the overview to refresh")
    assert "Updated" in page.inner_text("footer")


def test_wrong_token_shows_error(page, plugin_server):
    page.goto(plugin_server.base_url + "/dashboard")
    page.fill("#token", "not-the-token")
    page.click("button:has-text('Log in')")
    assert "Wrong token" in page.inner_text("main")
    page.goto(plugin_server.base_url + "/dashboard/failures")
    assert "/dashboard/login" in page.url
