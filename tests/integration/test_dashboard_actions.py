"""Dashboard forms in-process: retry (one and matching), cancel, delete, promote, pause, schedules."""

import json
import re

import pytest

from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from tests.conftest import drain_history, job_status, submit_job
from tests.integration.test_dashboard import DashboardClient, run_jobs


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


@pytest.fixture
def client(app):
    return DashboardClient(app)


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def flash(client, path="/dashboard"):
    match = re.search(r'<p class="flash (\w+)" role="status">([^<]*)</p>', client.get(path).text)
    return match and (match.group(1), match.group(2))


def failed_jobs(queue, settings, store, count, message="boom", job_type="test-fail"):
    ids = [submit_job(queue, settings, job_type, {"message": message}, maxRetries=0) for _ in range(count)]
    run_jobs(settings)
    drain_history(queue.redis, store)
    assert all(job_status(queue, job_id) == "failed" for job_id in ids)
    return ids


def test_retry_one_failed_job(client, queue, settings, store):
    [job_id] = failed_jobs(queue, settings, store, 1)
    page = client.post_form(f"/dashboard/jobs/{job_id}/retry", csrf_from=f"/dashboard/jobs/{job_id}")
    assert page.status == 303
    assert page.headers["location"] == f"/dashboard/jobs/{job_id}"
    assert job_status(queue, job_id) == "pending"
    assert flash(client) == ("ok", f"Job {job_id} queued again.")
    assert flash(client) is None


def test_retry_of_completed_job_reports_conflict(client, queue, settings):
    job_id = submit_job(queue, settings)
    run_jobs(settings)
    client.post_form(f"/dashboard/jobs/{job_id}/retry")
    kind, text = flash(client)
    assert kind == "error"
    assert "not failed" in text
    assert job_status(queue, job_id) == "completed"


def test_retry_matching_confirms_count_then_retries(client, queue, settings, store):
    boom = failed_jobs(queue, settings, store, 3, message="boom")
    other = failed_jobs(queue, settings, store, 2, message="other")

    confirm = client.get("/dashboard/retry?status=failed&q=boom")
    assert confirm.status == 200
    assert "3 failed jobs match" in confirm.text
    assert "Retry 3 jobs" in confirm.text
    assert all(job_status(queue, job_id) == "failed" for job_id in boom)

    page = client.post_form("/dashboard/retry", {"q": "boom"}, csrf_from="/dashboard/retry?status=failed&q=boom")
    assert page.status == 303
    assert page.headers["location"] == "/dashboard/jobs?q=boom&status=failed"
    assert all(job_status(queue, job_id) == "pending" for job_id in boom)
    assert all(job_status(queue, job_id) == "failed" for job_id in other)
    assert flash(client) == ("ok", "3 failed jobs queued again.")


def test_retry_matching_by_exact_error_and_queue(client, queue, settings, store):
    boom = failed_jobs(queue, settings, store, 2, message="boom")
    failed_jobs(queue, settings, store, 1, message="boom twice")
    client.post_form("/dashboard/retry", {"error": "boom", "queue": "default"})
    assert sorted(job_id for job_id in boom if job_status(queue, job_id) == "pending") == sorted(boom)
    assert queue.counts()["default"]["failed"] == 1


def test_retry_matching_skips_jobs_gone_from_redis(client, queue, settings, store):
    [kept, gone] = failed_jobs(queue, settings, store, 2)
    queue.redis.delete(f"rq:job:{gone}")
    client.post_form("/dashboard/retry", {})
    assert job_status(queue, kept) == "pending"
    kind, text = flash(client)
    assert text.startswith("1 failed job queued again. 1 skipped")


def test_cancel_waiting_job(client, queue, settings):
    job_id = submit_job(queue, settings)
    assert client.post_form(f"/dashboard/jobs/{job_id}/cancel").status == 303
    assert job_status(queue, job_id) == "cancelled"


def test_delete_ended_job_keeps_history(client, queue, settings, store):
    job_id = submit_job(queue, settings, uniqueKey="report-7")
    run_jobs(settings)
    drain_history(queue.redis, store)
    client.post_form(f"/dashboard/jobs/{job_id}/delete")
    assert flash(client)[1] == f"Job {job_id} removed from Redis; its history is kept."
    assert queue.get_job(job_id) is None
    assert queue.counts()["default"]["completed"] == 0
    assert queue.redis.exists("nself:jobs:unique:report-7") == 0
    shown = client.get(f"/api/jobs/{job_id}")
    assert shown.status == 200
    assert shown.json()["status"] == "completed"
    assert "Redis no longer holds this job" in client.get(f"/dashboard/jobs/{job_id}").text
    again = submit_job(queue, settings, uniqueKey="report-7")
    assert again != job_id


def test_delete_waiting_job_cancels_it(client, queue, settings):
    job_id = submit_job(queue, settings)
    client.post_form(f"/dashboard/jobs/{job_id}/delete")
    assert job_status(queue, job_id) == "cancelled"


def test_promote_delayed_job(client, queue, settings):
    job_id = submit_job(queue, settings, delay=3_600_000)
    client.post_form(f"/dashboard/jobs/{job_id}/promote")
    assert job_status(queue, job_id) == "pending"


def test_action_on_job_of_other_app_changes_nothing(client, queue, settings):
    job_id = submit_job(queue, settings)
    page = client.post_form(f"/dashboard/jobs/{job_id}/cancel?app=shop", csrf_from="/dashboard?app=shop")
    assert page.status == 303
    assert job_status(queue, job_id) == "pending"
    assert flash(client, "/dashboard?app=shop")[0] == "error"


def test_unknown_action_is_404(client, queue, settings):
    job_id = submit_job(queue, settings)
    assert client.post_form(f"/dashboard/jobs/{job_id}/explode").status == 404
    assert client.post_form("/dashboard/queues/default/explode").status == 404
    assert client.post_form("/dashboard/queues/urgent/pause").status == 404


def test_pause_and_resume_queue(client, queue, settings):
    page = client.post_form("/dashboard/queues/default/pause", {"back": "/dashboard"})
    assert page.headers["location"] == "/dashboard"
    assert queue.redis.sismember("nself:jobs:paused", "default")
    assert client.get("/api/stats").json()["queues"]["default"]["paused"] is True
    overview = client.get("/dashboard")
    assert 'action="/dashboard/queues/default/resume"' in overview.text

    job_id = submit_job(queue, settings)
    run_jobs(settings)
    assert job_status(queue, job_id) == "pending"

    client.post_form("/dashboard/queues/default/resume")
    assert not queue.redis.sismember("nself:jobs:paused", "default")
    run_jobs(settings)
    assert job_status(queue, job_id) == "completed"


def test_back_field_cannot_leave_dashboard(client):
    page = client.post_form("/dashboard/queues/default/pause", {"back": "https://evil.example/"})
    assert page.headers["location"] == "/dashboard/queues/default"


def schedule(client, name="hourly-ping", enabled=True):
    body = {"name": name, "type": "test-echo", "cron": "0 * * * *", "enabled": enabled}
    response = client.request("POST", "/api/schedules", body=json.dumps(body).encode())
    assert response.status == 201, response.text


def test_schedule_disable_enable_run_now(client, queue):
    schedule(client)
    client.post_form("/dashboard/schedules/hourly-ping/disable")
    assert client.get("/api/schedules/hourly-ping").json()["enabled"] is False
    assert flash(client, "/dashboard/schedules") == ("ok", "Schedule hourly-ping disabled.")
    client.post_form("/dashboard/schedules/hourly-ping/enable")
    assert client.get("/api/schedules/hourly-ping").json()["enabled"] is True

    client.post_form("/dashboard/schedules/hourly-ping/run-now")
    kind, text = flash(client, "/dashboard/schedules")
    assert kind == "ok"
    assert "queued now" in text
    assert queue.counts()["default"]["waiting"] == 1


def test_schedule_of_other_app_not_found(client):
    schedule(client)
    page = client.post_form("/dashboard/schedules/hourly-ping/run-now?app=shop", csrf_from="/dashboard?app=shop")
    assert page.status == 404
    assert client.post_form("/dashboard/schedules/missing/run-now").status == 404
