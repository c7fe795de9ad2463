"""Worker processes end to end: real Redis, real PostgreSQL, the worker command as a subprocess."""

import time

import pytest

from nself_jobs.queue import JobQueue
from tests.conftest import drain_history, job_status, submit_job, wait_for


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)






def wait_done(queue, job_ids, timeout_s=30):
    wait_for(lambda: all(job_status(queue, job_id) in ("completed", "failed") for job_id in job_ids),
             timeout_s=timeout_s, message=f"{len(job_ids)} jobs to finish")


def drain(queue, store):
    drain_history(queue.redis, store)


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_job_completes_with_history_rows(queue, settings, store, start_plugin):
    job_id = submit_job(queue, settings, "test-echo", {"value": "ok"})
    start_plugin("worker", "-c", "1")
    wait_done(queue, [job_id])
    drain(queue, store)

    row, results, failures = store.job_history(job_id)
    assert row["status"] == "completed"
    assert row["attempts"] == 1
    assert row["created_at"] <= row["started_at"] <= row["completed_at"]
    assert results[0]["result"] == {"echo": "ok", "attempt": 1}
    assert results[0]["duration_ms"] >= 0
    assert failures == []


def test_queue_stats_view_counts_finished_jobs(queue, settings, store, start_plugin):
    ids = [submit_job(queue, settings, "test-echo") for _ in range(3)] + [submit_job(queue, settings, "test-fail", maxRetries=0)]
    start_plugin("worker", "-c", "2")
    wait_done(queue, ids)
    drain(queue, store)
    with store.connect(autocommit=True) as connection:
        stats = connection.execute("SELECT * FROM queue_stats WHERE queue = 'default'").fetchone()
        type_stats = {row["type"]: row for row in connection.execute("SELECT * FROM job_type_stats").fetchall()}
        failed = connection.execute("SELECT count(*) AS n FROM jobs_failed_details").fetchone()
    assert stats["completed"] == 3
    assert stats["failed"] == 1
    assert type_stats["test-echo"]["completed"] == 3
    assert failed["n"] == 1


def test_priorities_run_critical_high_normal_low(queue, settings, store, start_plugin, tmp_path):
    log = tmp_path / "order.log"
    ids = {}
    for priority in ("low", "normal", "high", "critical"):
        ids[priority] = submit_job(queue, settings, "test-echo", {"log": str(log)}, priority=priority)
    start_plugin("worker", "-c", "1")
    wait_done(queue, list(ids.values()))
    order = [line.split()[1] for line in read_lines(log)]
    assert order == [ids["critical"], ids["high"], ids["normal"], ids["low"]]


def test_default_worker_serves_all_three_queues(queue, settings, store, start_plugin):
    ids = [submit_job(queue, settings, "test-echo", queue_name=name) for name in ("high-priority", "default", "low-priority")]
    start_plugin("worker")
    wait_done(queue, ids)
    assert [job_status(queue, job_id) for job_id in ids] == ["completed"] * 3


def test_worker_named_queue_serves_only_that_queue(queue, settings, store, start_plugin):
    high = submit_job(queue, settings, "test-echo", queue_name="high-priority")
    low = submit_job(queue, settings, "test-echo", queue_name="low-priority")
    start_plugin("worker", "high-priority", "-c", "1")
    wait_done(queue, [high])
    time.sleep(1)
    assert job_status(queue, low) == "pending"


def test_spaced_jobs_complete_on_first_attempt(queue, settings, store, start_plugin):
    start_plugin("worker", "-c", "5")
    time.sleep(1.5)
    ids = []
    for _ in range(100):
        ids.append(submit_job(queue, settings, "test-echo"))
        time.sleep(0.01)
    wait_done(queue, ids, timeout_s=60)
    drain(queue, store)
    with store.connect(autocommit=True) as connection:
        failures = connection.execute("SELECT count(*) AS n FROM job_failures").fetchone()["n"]
        first_attempt = connection.execute(
            "SELECT count(*) AS n FROM jobs WHERE status = 'completed' AND attempts = 1").fetchone()["n"]
    assert failures == 0
    assert first_attempt == 100


@pytest.mark.parametrize("max_retries, executions", [(0, 1), (1, 2), (3, 4)])
def test_retries_count_after_first_attempt(queue, settings, store, start_plugin, tmp_path, max_retries, executions):
    log = tmp_path / "runs.log"
    job_id = submit_job(queue, settings, "test-fail", {"log": str(log)}, maxRetries=max_retries, retryDelay=0)
    start_plugin("worker", "-c", "1")
    wait_done(queue, [job_id])
    drain(queue, store)
    row, _, failures = store.job_history(job_id)
    assert len(read_lines(log)) == executions
    assert row["status"] == "failed"
    assert [failure["attempt_number"] for failure in failures] == list(range(1, executions + 1))
    assert queue.get_job(job_id)["attempts"] == executions


def test_permanent_failure_skips_retries(queue, settings, store, start_plugin, tmp_path):
    log = tmp_path / "runs.log"
    job_id = submit_job(queue, settings, "test-fail", {"log": str(log), "permanent": True}, maxRetries=3)
    start_plugin("worker", "-c", "1")
    wait_done(queue, [job_id])
    assert len(read_lines(log)) == 1


def test_unexpected_exception_stores_stack(queue, settings, store, start_plugin):
    job_id = submit_job(queue, settings, "test-fail", {"unexpected": True, "message": "boom ✓"}, maxRetries=0)
    start_plugin("worker", "-c", "1")
    wait_done(queue, [job_id])
    drain(queue, store)
    _, _, failures = store.job_history(job_id)
    assert failures[0]["error_message"] == "boom ✓"
    assert "RuntimeError" in failures[0]["error_stack"]


def test_timeout_stops_side_effect(queue, settings, store, start_plugin, tmp_path):
    marker = tmp_path / "marker"
    log = tmp_path / "runs.log"
    slow = submit_job(queue, settings, "test-sleep", {"seconds": 5, "marker": str(marker), "log": str(log)},
                  timeout=1000, maxRetries=0)
    after = submit_job(queue, settings, "test-echo", {"log": str(log)})
    start_plugin("worker", "-c", "1")
    started = time.monotonic()
    wait_done(queue, [slow], timeout_s=20)
    elapsed = time.monotonic() - started
    wait_done(queue, [after])
    time.sleep(5)
    drain(queue, store)
    _, _, failures = store.job_history(slow)
    assert failures[0]["error_message"] == "timed out after 1000 ms"
    assert not marker.exists()
    assert elapsed < 4
    assert sum(1 for line in read_lines(log) if line.startswith("echo")) == 1


def test_progress_stored(queue, settings, store, start_plugin):
    job_id = submit_job(queue, settings, "test-progress")
    start_plugin("worker", "-c", "1")
    wait_done(queue, [job_id])
    drain(queue, store)
    row, _, _ = store.job_history(job_id)
    assert row["progress"] == 100
    assert row["progress_message"] == "step 75"


def test_delayed_job_waits_then_runs(queue, settings, store, start_plugin):
    start_plugin("worker", "-c", "1")
    job_id = submit_job(queue, settings, "test-echo", delay=1500)
    time.sleep(0.8)
    assert job_status(queue, job_id) == "delayed"
    wait_done(queue, [job_id], timeout_s=10)
    job = queue.get_job(job_id)
    from datetime import datetime
    run_at = datetime.fromisoformat(job["runAt"].replace("Z", "+00:00"))
    started_at = datetime.fromisoformat(job["startedAt"].replace("Z", "+00:00"))
    assert 0 <= (started_at - run_at).total_seconds() < 1.0
