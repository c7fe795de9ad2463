"""The REST API in-process, on a real Redis and PostgreSQL."""

import json

import pytest

from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from tests.conftest import drain_history
from tests.wsgi import call


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


class Drainer:
    """Writes the history backlog, whichever process holds the writer lease."""

    def __init__(self, redis_client, store):
        self.redis = redis_client
        self.store = store

    def drain_all(self):
        drain_history(self.redis, self.store)


@pytest.fixture
def writer(settings, store):
    return Drainer(JobQueue.from_settings(settings).redis, store)


def post_job(app, body, **kwargs):
    return call(app, "POST", "/api/jobs", body, **kwargs)


def test_health_returns_200_json(app):
    response = call(app, "GET", "/health")
    assert response.status == 200
    assert response.json()["status"] == "ok"


def test_ready_when_both_services_up(app):
    assert call(app, "GET", "/ready").status == 200


def test_ready_503_names_postgres_when_down(settings):
    from nself_jobs.history import HistoryStore
    down = HistoryStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=1)
    response = call(create_app(settings, store=down), "GET", "/ready")
    assert response.status == 503
    assert "postgres" in response.json()["down"]


@pytest.mark.parametrize("priority, stored", [("critical", 1), ("high", 2), ("normal", 3), ("low", 4), (None, 3)])
def test_spec_example_body_accepted_for_every_priority(app, store, writer, priority, stored):
    options = {"maxRetries": 3, "delay": 5000}
    if priority:
        options["priority"] = priority
    body = {"type": "test-echo", "queue": "default", "payload": {"value": "x"}, "options": options}
    response = post_job(app, body)
    assert response.status == 201
    job_id = response.json()["id"]
    writer.drain_all()
    row, _, _ = store.job_history(job_id)
    assert row["priority"] == stored
    assert row["status"] == "delayed"
    assert row["max_attempts"] == 4


@pytest.mark.parametrize("body, field", [
    ({"type": "nope"}, "type"),
    ({"type": "test-echo", "queue": "urgent"}, "queue"),
    ({"type": "test-echo", "options": {"priority": "urgent"}}, "options.priority"),
    ({"type": "test-echo", "options": {"maxRetries": -1}}, "options.maxRetries"),
    ({"type": "test-echo", "options": {"delay": "soon"}}, "options.delay"),
    ({"type": "test-echo", "options": {"retries": 3}}, "options.retries"),
    ({"type": "test-echo", "extra": 1}, "extra"),
    ({"type": "test-echo", "payload": [1]}, "payload"),
    ({"type": "test-echo", "payload": {"seconds": "x"}}, "payload.seconds"),
    ({}, "type"),
])
def test_invalid_request_is_422_naming_field(app, body, field):
    response = post_job(app, body)
    assert response.status == 422
    assert response.json()["field"] == field


def test_rejected_request_queues_nothing(app, settings):
    post_job(app, {"type": "test-echo", "queue": "urgent"})
    counts = JobQueue.from_settings(settings).counts()
    assert sum(sum(v for k, v in row.items() if k != "paused") for row in counts.values()) == 0


def test_nan_is_422(app):
    response = post_job(app, '{"type": "test-echo", "payload": {"timeout": NaN}}')
    assert response.status == 422


def test_invalid_utf8_is_400(app):
    response = post_job(app, b'{"type": "test-echo", "payload": {"a": "\xff\xfe"}}')
    assert response.status == 400
    assert "UTF-8" in response.json()["error"]


def test_deep_nesting_is_422(app):
    response = post_job(app, '{"type": "test-echo", "payload": {"a": ' + "[" * 1000 + "]" * 1000 + "}}")
    assert response.status == 422


def test_body_over_limit_is_413_stating_limit(app, settings):
    big = json.dumps({"type": "test-echo", "payload": {"blob": "x" * (settings.max_payload_bytes + 1)}})
    response = post_job(app, big)
    assert response.status == 413
    assert str(settings.max_payload_bytes) in response.json()["error"]


def test_get_unknown_job_is_404(app):
    assert call(app, "GET", "/api/jobs/6f1c0e2a-8b5e-4c1e-9d0a-1b2c3d4e5f60").status == 404
    assert call(app, "GET", "/api/jobs/not-a-uuid").status == 404


def test_job_visible_before_history_written_and_when_postgres_down(settings, store):
    from nself_jobs.history import HistoryStore
    down = HistoryStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=1)
    app_without_db = create_app(settings, store=down)
    response = post_job(app_without_db, {"type": "test-echo", "payload": {"value": 1}})
    assert response.status == 201
    job_id = response.json()["id"]

    shown = call(app_without_db, "GET", f"/api/jobs/{job_id}")
    assert shown.status == 200
    assert shown.json()["status"] == "pending"
    assert shown.json()["historyAvailable"] is False

    drain_history(JobQueue.from_settings(settings).redis, store)
    row, _, _ = store.job_history(job_id)
    assert row["status"] == "pending"


def test_unicode_round_trips_through_api_and_history(app, store, writer):
    payload = {"value": "中文 ✓", "note": "glāžšķūņŗūķīšī"}
    job_id = post_job(app, {"type": "test-echo", "payload": payload}).json()["id"]
    assert call(app, "GET", f"/api/jobs/{job_id}").json()["payload"] == payload
    writer.drain_all()
    row, _, _ = store.job_history(job_id)
    assert row["payload"] == payload


def test_unique_key_returns_existing_job(app):
    body = {"type": "test-echo", "options": {"uniqueKey": "invoice-42"}}
    first = post_job(app, body)
    second = post_job(app, body)
    assert first.status == 201
    assert second.status == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["created"] is False


def test_stats_counts_waiting_and_delayed(app):
    post_job(app, {"type": "test-echo", "queue": "high-priority"})
    post_job(app, {"type": "test-echo", "options": {"delay": 60000}})
    stats = call(app, "GET", "/api/stats").json()
    assert stats["queues"]["high-priority"]["waiting"] == 1
    assert stats["queues"]["default"]["delayed"] == 1
    assert stats["total"]["waiting"] == 1
    assert stats["total"]["delayed"] == 1


def test_app_name_header_sets_account(app, store, writer):
    job_id = post_job(app, {"type": "test-echo"}, headers={"X-App-Name": " Shop_EU! "}).json()["id"]
    writer.drain_all()
    row, _, _ = store.job_history(job_id)
    assert row["source_account_id"] == "shop_eu"


def test_dashboard_page_renders(app):
    response = call(app, "GET", "/dashboard")
    assert response.status == 200
    assert b"high-priority" in response.body
