"""Workers killed or stopped mid-job: every job ends in exactly one visible state."""

import os
import signal
import time

import pytest

from nself_jobs.maintenance import Maintenance
from nself_jobs.queue import JobQueue
from tests.conftest import drain_history, job_status, submit_job, wait_for


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)




def job_field(queue, job_id, name):
    return queue.redis.hget(f"rq:job:{job_id}", name)




def child_pid(queue, job_id):
    """Return the pid of the worker process running the job, from its worker name host.pid.suffix."""
    return int(job_field(queue, job_id, "worker_name").split(".")[-2])


def test_sigkilled_child_job_recovered_at_once(queue, settings, store, start_plugin):
    job_id = submit_job(queue, settings, "test-sleep", payload={"seconds": 3}, maxRetries=1, retryDelay=0)
    start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "active", message="the job to start")
    os.kill(child_pid(queue, job_id), signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: job_field(queue, job_id, "nj_attempts") == "2", timeout_s=10, message="the second attempt")
    assert time.monotonic() - killed_at < 5
    wait_for(lambda: job_status(queue, job_id) == "completed", timeout_s=15, message="the job to complete")
    drain_history(queue.redis, store)
    _, _, failures = store.job_history(job_id)
    assert [failure["error_message"] for failure in failures] == ["worker lost"]


def test_job_of_dead_worker_command_recovered_by_another(queue, settings, store, start_plugin):
    job_id = submit_job(queue, settings, "test-sleep", payload={"seconds": 60}, maxRetries=0)
    first = start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "active", message="the job to start")
    pid = child_pid(queue, job_id)
    first.process.send_signal(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "failed", timeout_s=30, message="recovery of the lost job")
    assert time.monotonic() - killed_at < 25
    drain_history(queue.redis, store)
    row, _, failures = store.job_history(job_id)
    assert row["status"] == "failed"
    assert failures[0]["error_message"] == "worker lost"


def test_sigterm_lets_short_job_finish(queue, settings, start_plugin):
    job_id = submit_job(queue, settings, "test-sleep", payload={"seconds": 2})
    worker = start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "active", message="the job to start")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(20) == 0
    assert job_status(queue, job_id) == "completed"


@pytest.mark.parametrize("max_retries, final_status", [(1, "pending"), (0, "failed")])
def test_sigterm_past_grace_ends_attempt_once(queue, settings, store, start_plugin, tmp_path, max_retries,
                                              final_status):
    marker = tmp_path / "marker"
    job_id = submit_job(queue, settings, "test-sleep", payload={"seconds": 30, "marker": str(marker)},
                        maxRetries=max_retries, retryDelay=0)
    worker = start_plugin("worker", "-c", "1", extra_env={"JOBS_SHUTDOWN_GRACE": "1000"})
    wait_for(lambda: job_status(queue, job_id) == "active", message="the job to start")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(15) == 0
    assert job_status(queue, job_id) == final_status
    assert queue.redis.zcard("rq:wip:default:normal") == 0
    drain_history(queue.redis, store)
    row, _, failures = store.job_history(job_id)
    assert row["status"] == final_status
    assert [failure["error_message"] for failure in failures] == [
        "worker shutdown: the job was stopped after the shutdown grace period"]
    assert not marker.exists()


def test_finished_job_never_marked_lost(queue, settings, store, start_plugin):
    job_id = submit_job(queue, settings, "test-echo")
    worker = start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "completed", message="the job to finish")
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(5)
    queue.redis.delete(*queue.redis.keys("nself:jobs:worker:*") or ["none"])
    assert Maintenance(queue.redis, settings).recover_lost_jobs() == []
    assert job_status(queue, job_id) == "completed"
