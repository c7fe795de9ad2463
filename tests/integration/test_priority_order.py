"""Strict priority order over many jobs, with late and delayed critical jobs."""

import time

import pytest

from nself_jobs.jobspec import parse_job_request
from nself_jobs.keys import PRIORITY_NAMES
from nself_jobs.queue import JobQueue
from tests.conftest import wait_for

JOB_COUNT = 15_000


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def spec(settings, priority, log, **options):
    return parse_job_request({"type": "test-echo", "payload": {"log": str(log)},
                              "options": dict(priority=PRIORITY_NAMES[priority], **options)}, settings)


def started_ids(log):
    """Return the job ids in the log, in run order; a line still being written is left out."""
    if not log.exists():
        return []
    complete_lines = log.read_text().split("\n")[:-1]
    return [line.split()[1] for line in complete_lines]


@pytest.mark.slow
def test_no_inversions_over_many_jobs_and_late_critical_job_runs_next(queue, settings, start_plugin, tmp_path):
    log = tmp_path / "order.log"
    specs = [spec(settings, index % 4 + 1, log) for index in range(JOB_COUNT)]
    priority_of = {item.id: item.priority for item in specs}
    for start in range(0, JOB_COUNT, 1000):
        queue.enqueue_many(specs[start:start + 1000])

    start_plugin("worker", "default", "-c", "1")
    wait_for(lambda: len(started_ids(log)) >= 6000, timeout_s=120, message="6,000 jobs to run")
    late = spec(settings, 1, log)
    queue.enqueue(late)
    priority_of[late.id] = 1
    wait_for(lambda: len(started_ids(log)) == JOB_COUNT + 1, timeout_s=180, message="every job to run")

    order = started_ids(log)
    late_index = order.index(late.id)
    pipeline = queue.redis.pipeline(transaction=False)
    for job_id in order[late_index - 5:late_index]:
        pipeline.hget(f"rq:job:{job_id}", "nj_started_ms")
    started_before_late = [int(value) for value in pipeline.execute()]
    late_created_ms = int(queue.redis.hget(f"rq:job:{late.id}", "nj_created_ms"))
    # Only a job already claimed when the late job arrived may start between the two.
    assert sum(1 for started_ms in started_before_late if started_ms > late_created_ms) <= 1
    without_late = [job_id for job_id in order if job_id != late.id]
    priorities = [priority_of[job_id] for job_id in without_late]
    assert priorities == sorted(priorities)
    expected_fifo = [item.id for level in (1, 2, 3, 4) for item in specs if item.priority == level]
    assert without_late == expected_fifo


def test_delayed_critical_job_keeps_its_priority(queue, settings, start_plugin, tmp_path):
    log = tmp_path / "order.log"
    lows = [parse_job_request({"type": "test-sleep", "payload": {"seconds": 0.05, "log": str(log)},
                               "options": {"priority": "low"}}, settings) for _ in range(60)]
    queue.enqueue_many(lows)
    delayed = spec(settings, 1, log, delay=1000)
    queue.enqueue(delayed)
    due = time.time() + 1.0
    start_plugin("worker", "default", "-c", "1")
    wait_for(lambda: any(line.startswith("echo") for line in log.read_text().splitlines()) if log.exists() else False,
             timeout_s=10, message="the delayed job to run")
    started_ms = int(queue.redis.hget(f"rq:job:{delayed.id}", "nj_started_ms"))
    assert started_ms / 1000 - due < 1.0
    lines = log.read_text().splitlines()
    position = next(index for index, line in enumerate(lines) if line.startswith("echo"))
    low_starts_before = sum(1 for line in lines[:position] if line.startswith("start"))
    assert low_starts_before < 60
