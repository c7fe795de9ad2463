"""Cancel, retry, promote, unique keys, cleanup and pagination on a real Redis and PostgreSQL."""

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from nself_jobs.cli.main import cli
from nself_jobs.errors import Conflict
from nself_jobs.jobspec import parse_job_request
from nself_jobs.operations import Operations
from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from tests.conftest import drain_history, job_status, run_plugin, submit_job, wait_for
from tests.wsgi import call


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


@pytest.fixture
def operations(queue):
    return Operations(queue)


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


@pytest.fixture
def run_cli(environ, tmp_path):
    from nself_jobs.cli.operate import cancel, promote, retry
    from nself_jobs.cli.stats import stats
    for command in (retry, cancel, promote, stats):
        cli.add_command(command)

    def run(*args):
        env = dict(environ, NSELF_PROJECT_DIR=str(tmp_path))
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return run






def fail_jobs(queue, settings, start_plugin, count, **payload):
    ids = [submit_job(queue, settings, "test-fail", payload, maxRetries=0) for _ in range(count)]
    worker = start_plugin("worker", "-c", "2")
    wait_for(lambda: all(job_status(queue, job_id) == "failed" for job_id in ids), timeout_s=60,
             message="jobs to fail")
    worker.stop()
    return ids


# ------------------------------------------------------------------ cancel


def test_cancel_waiting_job_never_runs(queue, settings, operations, start_plugin, tmp_path):
    log = tmp_path / "runs.log"
    job_id = submit_job(queue, settings, payload={"log": str(log)})
    assert operations.cancel(job_id) == "cancelled"
    other = submit_job(queue, settings)
    start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, other) == "completed", message="the other job")
    assert job_status(queue, job_id) == "cancelled"
    assert not log.exists()


def test_cancel_delayed_job(queue, settings, operations):
    job_id = submit_job(queue, settings, delay=60_000)
    assert operations.cancel(job_id) == "cancelled"
    assert queue.counts()["default"]["delayed"] == 0
    assert queue.counts()["default"]["cancelled"] == 1


def test_cancel_running_job_stops_it(queue, settings, store, operations, start_plugin, tmp_path):
    marker = tmp_path / "marker"
    job_id = submit_job(queue, settings, "test-sleep", {"seconds": 10, "marker": str(marker)})
    start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "active", message="the job to start")
    assert operations.cancel(job_id) == "requested"
    wait_for(lambda: job_status(queue, job_id) == "cancelled", timeout_s=5, message="the job to stop")
    drain_history(queue.redis, store)
    row, _, _ = store.job_history(job_id)
    assert row["status"] == "cancelled"
    assert not marker.exists()


def test_cancel_completed_job_is_conflict(queue, settings, app, start_plugin):
    job_id = submit_job(queue, settings)
    start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "completed", message="the job to finish")
    response = call(app, "DELETE", f"/api/jobs/{job_id}")
    assert response.status == 409
    assert "completed" in response.json()["error"]


# ------------------------------------------------------------------ retry


def test_retry_moves_failed_job_back_once(queue, settings, operations, app, start_plugin):
    [job_id] = fail_jobs(queue, settings, start_plugin, 1)
    assert call(app, "POST", f"/api/jobs/{job_id}/retry").status == 200
    assert call(app, "POST", f"/api/jobs/{job_id}/retry").status == 409
    assert job_status(queue, job_id) == "pending"
    assert queue.counts()["default"]["waiting"] == 1
    assert queue.counts()["default"]["failed"] == 0


def test_retried_job_gets_fresh_retries(queue, settings, store, operations, start_plugin, tmp_path):
    log = tmp_path / "runs.log"
    job_id = submit_job(queue, settings, "test-fail", {"log": str(log)}, maxRetries=1)
    worker = start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "failed", message="the job to fail")
    operations.retry(job_id)
    wait_for(lambda: len(log.read_text().splitlines()) == 4 and job_status(queue, job_id) == "failed",
             message="two more attempts")
    worker.stop()
    drain_history(queue.redis, store)
    _, _, failures = store.job_history(job_id)
    assert [failure["attempt_number"] for failure in failures] == [1, 2, 3, 4]


def test_concurrent_bulk_retries_enqueue_each_job_once(queue, settings, environ, tmp_path, start_plugin):
    ids = fail_jobs(queue, settings, start_plugin, 30)
    results = []

    def bulk_retry():
        results.append(run_plugin(["retry", "--limit", "100", "--json"], environ, tmp_path))

    threads = [threading.Thread(target=bulk_retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result.returncode for result in results) in ([0, 0], [0, 7])
    retried = [job for result in results if result.returncode == 0 for job in json.loads(result.stdout)["jobs"]]
    assert sorted(retried) == sorted(ids)
    waiting = queue.redis.lrange("rq:queue:default:normal", 0, -1)
    assert sorted(waiting) == sorted(ids)


def test_retry_cli_refuses_completed_job(queue, settings, start_plugin, run_cli):
    job_id = submit_job(queue, settings)
    start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "completed", message="the job to finish")
    result = run_cli("retry", "--id", job_id)
    assert result.exit_code == 10
    assert "not failed" in result.output


def test_retry_cli_nothing_to_retry_exits_7(run_cli):
    result = run_cli("retry")
    assert result.exit_code == 7
    assert "No failed jobs" in result.output


def test_retry_show_changes_nothing(queue, settings, start_plugin, run_cli):
    ids = fail_jobs(queue, settings, start_plugin, 3)
    result = run_cli("retry", "--show", "--json")
    assert result.exit_code == 0
    assert sorted(row["id"] for row in json.loads(result.output)["jobs"]) == sorted(ids)
    assert all(job_status(queue, job_id) == "failed" for job_id in ids)


def test_retry_filters_by_type_and_limit(queue, settings, start_plugin, run_cli):
    ids = fail_jobs(queue, settings, start_plugin, 4)
    result = run_cli("retry", "--type", "test-fail", "--limit", "2", "--json")
    assert json.loads(result.output)["retried"] == 2
    assert json.loads(run_cli("retry", "--type", "other", "--json").output)["retried"] == 0
    assert sum(job_status(queue, job_id) == "pending" for job_id in ids) == 2


# ------------------------------------------------------------------ promote, unique, cleanup


def test_promote_runs_delayed_job_now(queue, settings, app, start_plugin):
    start_plugin("worker", "-c", "1")
    job_id = submit_job(queue, settings, delay=600_000)
    assert call(app, "POST", f"/api/jobs/{job_id}/promote").status == 200
    wait_for(lambda: job_status(queue, job_id) == "completed", timeout_s=10, message="the promoted job")


def test_unique_key_holds_under_concurrent_submissions(queue, settings):
    results = []

    def submit_same():
        spec = parse_job_request({"type": "test-echo", "options": {"uniqueKey": "nightly-report"}}, settings)
        results.append(queue.enqueue(spec))

    threads = [threading.Thread(target=submit_same) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert queue.counts()["default"]["waiting"] == 1


def test_completed_job_leaves_redis_after_cleanup_age(queue, settings, store, app, start_plugin):
    job_id = submit_job(queue, settings)
    start_plugin("worker", "-c", "1", extra_env={"JOBS_CLEAN_COMPLETED_AFTER": "1000"})
    wait_for(lambda: queue.redis.exists(f"rq:job:{job_id}") == 0, timeout_s=15, message="the cleanup")
    drain_history(queue.redis, store)
    response = call(app, "GET", f"/api/jobs/{job_id}")
    assert response.status == 200
    assert response.json()["status"] == "completed"


# ------------------------------------------------------------------ listing


def insert_history_rows(store, count, status="failed", start=datetime(2026, 1, 5, 12, 0, 1, tzinfo=timezone.utc)):
    ids = []
    with store.connect() as connection:
        for index in range(count):
            row = connection.execute(
                "INSERT INTO jobs (id, type, queue, status, payload, created_at) "
                "VALUES (gen_random_uuid(), 'test-echo', 'default', %s, '{}', %s) RETURNING id",
                [status, start + timedelta(seconds=index)]).fetchone()
            ids.append(str(row["id"]))
    return ids


def test_pages_of_failed_jobs_do_not_overlap(app, store):
    ids = insert_history_rows(store, 25)
    newest_first = list(reversed(ids))
    pages, cursor = [], None
    for _ in range(3):
        query = "/api/jobs?status=failed&pageSize=10" + (f"&cursor={cursor}" if cursor else "")
        body = call(app, "GET", query).json()
        pages.append([job["id"] for job in body["jobs"]])
        cursor = body["nextCursor"]
        assert body["total"] == 25
        assert body["totalPages"] == 3
    assert pages == [newest_first[:10], newest_first[10:20], newest_first[20:]]
    assert cursor is None


def test_pages_stay_stable_while_jobs_are_added(app, store):
    ids = insert_history_rows(store, 25)
    first = call(app, "GET", "/api/jobs?pageSize=10").json()
    insert_history_rows(store, 5, start=datetime(2026, 1, 5, 13, 0, 0, tzinfo=timezone.utc))
    seen = [job["id"] for job in first["jobs"]]
    cursor = first["nextCursor"]
    while cursor:
        body = call(app, "GET", f"/api/jobs?pageSize=10&cursor={cursor}").json()
        seen += [job["id"] for job in body["jobs"]]
        cursor = body["nextCursor"]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("query, field", [("status=done", "status"), ("queue=x", "queue"),
                                          ("pageSize=0", "pageSize"), ("cursor=%%%", "cursor")])
def test_list_filters_validated(app, query, field):
    response = call(app, "GET", f"/api/jobs?{query}")
    assert response.status == 422
    assert response.json()["field"] == field


# ------------------------------------------------------------------ stats and Redis policy


def test_stats_performance_json(queue, settings, store, start_plugin, run_cli):
    ids = [submit_job(queue, settings) for _ in range(3)] + [submit_job(queue, settings, "test-fail", maxRetries=0)]
    start_plugin("worker", "-c", "1")
    wait_for(lambda: all(job_status(queue, job_id) in ("completed", "failed") for job_id in ids),
             message="jobs to finish")
    drain_history(queue.redis, store)
    result = run_cli("stats", "--performance", "--time", "1", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    by_type = {row["type"]: row for row in data["performance"]}
    assert by_type["test-echo"]["jobs"] == 3
    assert by_type["test-fail"]["failure_rate"] == 1.0
    assert data["queues"]["default"]["completed"] == 3
    assert data["history"]["default"]["completed"] == 3


def test_eviction_policy_warning(queue, app):
    original = queue.redis.config_get("maxmemory-policy")["maxmemory-policy"]
    queue.redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        warnings = call(app, "GET", "/health").json().get("warnings", [])
    finally:
        queue.redis.config_set("maxmemory-policy", original)
    assert any("allkeys-lru" in warning for warning in warnings)
    assert "warnings" not in call(app, "GET", "/health").json()


def test_operations_conflict_on_unknown_state(queue, settings, operations):
    job_id = submit_job(queue, settings)
    with pytest.raises(Conflict):
        operations.promote(job_id)


def test_retry_from_stale_listing_is_refused(queue, settings, operations, start_plugin):
    [job_id] = fail_jobs(queue, settings, start_plugin, 1)
    [listed] = operations.failed_jobs()
    queue.redis.hset(f"rq:job:{job_id}", "nj_attempts", listed.attempts + 1)
    with pytest.raises(Conflict):
        operations.retry(job_id, seen_attempts=listed.attempts)
    assert job_status(queue, job_id) == "failed"
