"""GET /metrics: queue depth, workers, counters and the duration histogram from the history."""

import re
import uuid
from datetime import datetime, timezone

import pytest

from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from nself_jobs.server.metrics import escape_label
from tests.conftest import drain_history, submit_job
from tests.integration.test_dashboard import DashboardClient, insert_history, run_jobs


@pytest.fixture
def client(settings, store):
    return DashboardClient(create_app(settings, store=store))


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def samples(text):
    """Return {'name{labels}': value} for every sample line."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_metrics_format_and_live_gauges(client, queue, settings):
    submit_job(queue, settings)
    submit_job(queue, settings, delay=60000, queue_name="low-priority")
    queue.redis.sadd("nself:jobs:paused", "high-priority")
    page = client.get("/metrics")
    assert page.status == 200
    assert page.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    values = samples(page.text)
    assert values['nself_jobs_queue_jobs{queue="default",state="waiting"}'] == 1
    assert values['nself_jobs_queue_jobs{queue="low-priority",state="delayed"}'] == 1
    assert values['nself_jobs_queue_paused{queue="high-priority"}'] == 1
    assert values["nself_jobs_workers_alive"] == 0
    assert values["nself_jobs_history_up"] == 1
    for family in ("nself_jobs_queue_jobs", "nself_jobs_completed_total", "nself_jobs_duration_seconds"):
        assert f"# TYPE {family} " in page.text


def test_counters_and_histogram_from_history(client, queue, settings, store):
    for _ in range(3):
        submit_job(queue, settings)
    submit_job(queue, settings, "test-fail", maxRetries=1)
    run_jobs(settings)
    drain_history(queue.redis, store)
    values = samples(client.get("/metrics").text)
    assert values['nself_jobs_completed_total{app="primary",type="test-echo"}'] == 3
    assert values['nself_jobs_failed_attempts_total{app="primary",type="test-fail"}'] == 2
    assert values['nself_jobs_history_jobs{app="primary",type="test-fail",status="failed"}'] == 1
    assert values['nself_jobs_duration_seconds_count{app="primary",type="test-echo"}'] == 3
    assert values['nself_jobs_duration_seconds_bucket{app="primary",type="test-echo",le="+Inf"}'] == 3

    buckets = [(float(bound), value) for key, value in values.items()
               for bound in re.findall(r'type="test-echo",le="([0-9.]+)"', key)]
    counts = [value for _, value in sorted(buckets)]
    assert counts == sorted(counts)


def test_histogram_bucket_edges(client, store):
    durations = {0: 5, 1: 6, 2: 10, 3: 11, 4: 3_600_001}
    with store.connect() as connection:
        for index, duration in durations.items():
            job_id = str(uuid.uuid4())
            insert_history(store, [{"id": job_id, "type": "edge", "status": "completed",
                                    "completed_at": datetime.now(timezone.utc)}])
            connection.execute("INSERT INTO job_results (id, job_id, duration_ms, attempt_number) "
                               "VALUES (%s, %s, %s, 1)", [str(uuid.uuid4()), job_id, duration])
    values = samples(client.get("/metrics").text)

    def bucket(le):
        return values[f'nself_jobs_duration_seconds_bucket{{app="primary",type="edge",le="{le}"}}']

    assert bucket("0.005") == 1
    assert bucket("0.01") == 3
    assert bucket("0.025") == 4
    assert bucket("3600.0") == 4
    assert bucket("+Inf") == 5
    assert values['nself_jobs_duration_seconds_sum{app="primary",type="edge"}'] == pytest.approx(3600.033)


def test_label_values_escaped():
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_metrics_without_postgres_keeps_live_part(settings):
    from nself_jobs.history import HistoryStore
    down = HistoryStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=1)
    page = DashboardClient(create_app(settings, store=down)).get("/metrics")
    assert page.status == 200
    values = samples(page.text)
    assert values["nself_jobs_history_up"] == 0
    assert 'nself_jobs_queue_jobs{queue="default",state="waiting"}' in values
