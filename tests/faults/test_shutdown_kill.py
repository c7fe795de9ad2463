"""A platform stop: SIGTERM to a worker command at 10 s into a 60 s job, then SIGKILL to all of it at 20 s.

Docker and Kubernetes stop a container this way, with the SIGKILL after their stop
timeout. The job must end in exactly one visible state: queued again or failed,
with the reason in its history, and never left running for a worker that is gone.
"""

import os
import signal
import time

import pytest

from nself_jobs import keys
from nself_jobs.queue import JobQueue
from tests.conftest import drain_history, job_status, submit_job, wait_for
from tests.faults.conftest import assert_doctor_clean

pytestmark = pytest.mark.faults

SIGTERM_AT_S = 10
SIGKILL_AT_S = 20
# The README's bound for a job whose whole worker command died: heartbeats expire
# after 15 s and the recovery sweep runs every 5 s.
RECOVERY_BOUND_S = 25
SHUTDOWN_MESSAGE = "worker shutdown: the job was stopped after the shutdown grace period"


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def kill_worker_command(worker, child_pid):
    """SIGKILL the supervisor and its worker process, as a container runtime does after its stop timeout."""
    for pid in (worker.process.pid, child_pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.process.wait(10)


def stop_like_a_platform(queue, job_id, worker):
    """Send SIGTERM at SIGTERM_AT_S and SIGKILL at SIGKILL_AT_S after the job started; return the kill time."""
    wait_for(lambda: job_status(queue, job_id) == "active", timeout_s=30, message="the job to start")
    started = time.monotonic()
    child_pid = int(queue.redis.hget(keys.job_key(job_id), "worker_name").split(".")[-2])
    time.sleep(SIGTERM_AT_S)
    worker.process.send_signal(signal.SIGTERM)
    time.sleep(started + SIGKILL_AT_S - time.monotonic())
    kill_worker_command(worker, child_pid)
    return time.monotonic()


def total_in_redis(queue):
    counts = queue.counts()
    return sum(value for row in counts.values() for name, value in row.items() if name != "paused")


def test_stop_within_grace_requeues_job(queue, settings, store, start_plugin, fault_environ, tmp_path):
    marker = tmp_path / "marker"
    job_id = submit_job(queue, settings, "test-sleep", {"seconds": 60, "marker": str(marker)}, maxRetries=1,
                        retryDelay=0)
    worker = start_plugin("worker", "-c", "1", extra_env={"JOBS_SHUTDOWN_GRACE": "8000"})

    stop_like_a_platform(queue, job_id, worker)

    # The 8 s grace ended at 18 s, before the SIGKILL, so the worker recorded the attempt itself.
    assert job_status(queue, job_id) == "pending"
    assert queue.redis.lrange(keys.queue_key("default:normal"), 0, -1) == [job_id]
    assert total_in_redis(queue) == 1
    drain_history(queue.redis, store)
    row, _, failures = store.job_history(job_id)
    assert row["status"] == "pending"
    assert [failure["error_message"] for failure in failures] == [SHUTDOWN_MESSAGE]
    assert not marker.exists()
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)


def test_kill_during_grace_recovered_by_next_worker(queue, settings, store, start_plugin, fault_environ, tmp_path):
    marker = tmp_path / "marker"
    job_id = submit_job(queue, settings, "test-sleep", {"seconds": 60, "marker": str(marker)}, maxRetries=1,
                        retryDelay=0)
    worker = start_plugin("worker", "-c", "1", extra_env={"JOBS_SHUTDOWN_GRACE": "30000"})

    killed_at = stop_like_a_platform(queue, job_id, worker)

    # Still in its 30 s grace when killed: nothing recorded the end of the attempt.
    assert job_status(queue, job_id) == "active"
    start_plugin("worker", "-c", "1")
    wait_for(lambda: int(queue.redis.hget(keys.job_key(job_id), "nj_attempts")) == 2, timeout_s=RECOVERY_BOUND_S + 5,
             interval_s=0.2, message="the next worker command to recover and rerun the job")
    recovered_s = time.monotonic() - killed_at
    print(f"job of a SIGKILLed worker command running again {recovered_s:.1f} s after the kill")

    assert recovered_s < RECOVERY_BOUND_S
    assert total_in_redis(queue) == 1
    drain_history(queue.redis, store)
    _, _, failures = store.job_history(job_id)
    assert [failure["error_message"] for failure in failures] == ["worker lost"]
    assert not marker.exists()
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)


def test_server_alone_recovers_job_of_dead_worker(queue, settings, store, start_plugin):
    job_id = submit_job(queue, settings, "test-sleep", {"seconds": 60}, maxRetries=1, retryDelay=0)
    worker = start_plugin("worker", "-c", "1")
    wait_for(lambda: job_status(queue, job_id) == "active", timeout_s=30, message="the job to start")
    child_pid = int(queue.redis.hget(keys.job_key(job_id), "worker_name").split(".")[-2])
    kill_worker_command(worker, child_pid)

    start_plugin("server")
    time.sleep(RECOVERY_BOUND_S)

    assert job_status(queue, job_id) == "pending"
