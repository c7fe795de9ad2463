"""GET /api/queues and pausing queues through the REST API."""

import pytest

from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from tests.conftest import job_status, submit_job
from tests.integration.test_dashboard import DashboardClient, run_jobs


@pytest.fixture
def client(settings, store):
    return DashboardClient(create_app(settings, store=store))


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def test_queues_lists_counts_pause_and_workers(client, queue, settings):
    submit_job(queue, settings, queue_name="low-priority")
    queue.redis.zadd("nself:jobs:workers", {"w1": queue.clock()})
    queue.redis.set("nself:jobs:worker:w1", '{"queues": ["low-priority"], "pid": 1, "job": null}', ex=15)
    body = client.get("/api/queues").json()
    assert [row["name"] for row in body["queues"]] == ["high-priority", "default", "low-priority"]
    low = body["queues"][2]
    assert low["counts"]["waiting"] == 1
    assert low["paused"] is False
    assert low["workers"] == 1
    assert body["queues"][0]["workers"] == 0


def test_pause_stops_claims_and_resume_restarts(client, queue, settings):
    paused = client.request("POST", "/api/queues/default/pause")
    assert paused.status == 200
    assert paused.json() == {"name": "default", "paused": True}
    assert client.get("/api/queues").json()["queues"][1]["paused"] is True

    waiting = submit_job(queue, settings)
    elsewhere = submit_job(queue, settings, queue_name="high-priority")
    run_jobs(settings, ("high-priority", "default"))
    assert job_status(queue, waiting) == "pending"
    assert job_status(queue, elsewhere) == "completed"

    assert client.request("POST", "/api/queues/default/resume").json() == {"name": "default", "paused": False}
    run_jobs(settings)
    assert job_status(queue, waiting) == "completed"


def test_pause_twice_and_resume_unpaused_are_harmless(client):
    assert client.request("POST", "/api/queues/default/pause").status == 200
    assert client.request("POST", "/api/queues/default/pause").status == 200
    assert client.request("POST", "/api/queues/high-priority/resume").status == 200


def test_unknown_queue_is_404(client):
    page = client.request("POST", "/api/queues/urgent/pause")
    assert page.status == 404
    assert "urgent" in page.json()["error"]


def test_pause_needs_post(client):
    assert client.get("/api/queues/default/pause").status == 405
