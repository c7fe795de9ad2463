"""Worker processes killed by SIGKILL and by the kernel's OOM killer in the middle of jobs."""

import os
import re
import signal
import time

import pytest

from nself_jobs import keys
from nself_jobs.queue import JobQueue
from tests.conftest import drain_history, job_status, submit_job, wait_for
from tests.faults.conftest import assert_doctor_clean

MEBIBYTE = 1024 * 1024
# The README says that a worker command ends a dead child's attempt "at once"; the tests allow 5 s.
CHILD_RECOVERY_BOUND_S = 5


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def child_pid(queue, job_id):
    """Return the pid of the worker process running the job, from its worker name host.pid.suffix."""
    return int(queue.redis.hget(keys.job_key(job_id), "worker_name").split(".")[-2])


def attempt_of(queue, job_id):
    return int(queue.redis.hget(keys.job_key(job_id), "nj_attempts") or 0)


def running_job(queue, ids, started_before_ms):
    """Return a job of ``ids`` that is running and started before ``started_before_ms``, or None."""
    for job_id in ids:
        status, started_ms = queue.redis.hmget(keys.job_key(job_id), "status", "nj_started_ms")
        if status == "started" and started_ms and int(started_ms) < started_before_ms:
            return job_id
    return None


def test_sigkilled_children_lose_no_job(queue, settings, store, start_plugin, fault_environ, tmp_path):
    log = tmp_path / "executions.log"
    ids = [submit_job(queue, settings, "test-sleep", {"seconds": 1.0, "log": str(log)}, maxRetries=1, retryDelay=0)
           for _ in range(24)]
    worker = start_plugin("worker", "-c", "3")
    recovered = {}

    for _ in range(3):
        job_id = wait_for(lambda: running_job(queue, ids, int(time.time() * 1000) - 200), timeout_s=30,
                          message="a job that has run for 200 ms")
        attempt = attempt_of(queue, job_id)
        os.kill(child_pid(queue, job_id), signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: job_status(queue, job_id) != "active" or attempt_of(queue, job_id) > attempt,
                 timeout_s=15, interval_s=0.01, message="the killed attempt to end")
        recovered[job_id] = time.monotonic() - killed_at

    wait_for(lambda: all(job_status(queue, job_id) == "completed" for job_id in ids), timeout_s=90,
             interval_s=0.2, message="every job to complete")
    drain_history(queue.redis, store)

    print(f"recovery after SIGKILL of a worker process: {', '.join(f'{s:.2f} s' for s in recovered.values())}")
    assert max(recovered.values()) < CHILD_RECOVERY_BOUND_S
    for job_id in recovered:
        row, _, failures = store.job_history(job_id)
        assert row["status"] == "completed"
        assert [failure["error_message"] for failure in failures] == ["worker lost"]
    ends = re.findall(r"^end (\S+) ", log.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert set(ends) == set(ids)
    assert len(re.findall(r"exited with code -9", worker.output())) == 3
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)


def oom_kills(cgroup):
    text = (cgroup / "memory.oom_control").read_text(encoding="ascii")
    return int(re.search(r"^oom_kill (\d+)$", text, flags=re.MULTILINE).group(1))


def test_oom_killed_child_job_fails_with_reason(queue, settings, store, start_plugin, fault_environ, tmp_path,
                                                memory_cgroup):
    cgroup, set_limit = memory_cgroup
    set_limit(128 * MEBIBYTE)
    job_id = submit_job(queue, settings, "fault-allocate", {"cgroup": str(cgroup), "chunk_mb": 8},
                        maxRetries=1, retryDelay=0)
    worker = start_plugin("worker", "-c", "1")

    wait_for(lambda: job_status(queue, job_id) == "active", timeout_s=30, message="the job to start")
    started = time.monotonic()
    wait_for(lambda: job_status(queue, job_id) == "failed", timeout_s=30, interval_s=0.01,
             message="the job to fail after two OOM kills")
    elapsed = time.monotonic() - started
    print(f"two attempts OOM-killed and the job failed {elapsed:.2f} s after its first start")

    # Both attempts were ended by the kernel, not by a MemoryError inside Python.
    assert oom_kills(cgroup) == 2
    assert len(re.findall(r"exited with code -9", worker.output())) == 2
    assert elapsed < 2 * CHILD_RECOVERY_BOUND_S
    drain_history(queue.redis, store)
    row, _, failures = store.job_history(job_id)
    assert row["status"] == "failed"
    assert [failure["error_message"] for failure in failures] == ["worker lost", "worker lost"]

    after = submit_job(queue, settings, "test-echo")
    wait_for(lambda: job_status(queue, after) == "completed", timeout_s=30,
             message="the restarted worker process to run the next job")
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)
