"""10,000 jobs submitted through POST /api/jobs of the real server by 16 concurrent clients."""

import statistics
import threading
import time
from pathlib import Path

import pytest

from nself_jobs import keys
from nself_jobs.doctor import take_snapshot
from nself_jobs.queue import JobQueue
from tests.conftest import wait_for
from tests.faults.conftest import Client, assert_doctor_clean, wait_for_server

pytestmark = pytest.mark.faults

JOBS = 10_000
CLIENTS = 16
SUBMIT_DEADLINE_S = 300
RSS_SAMPLE_INTERVAL_S = 0.25
# Allowed growth of the server's resident memory over the second half of the jobs, after
# warm-up (imports, thread stacks, allocator arenas). An estimate that leaves room for
# allocator noise and stays below a leak of 1 KiB per request (about 5 MB over 5,000).
RSS_GROWTH_LIMIT_KIB = 4 * 1024


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS line for pid {pid}")


class RssSampler(threading.Thread):
    """Record ``(jobs submitted so far, VmRSS in KiB)`` of one process every RSS_SAMPLE_INTERVAL_S."""

    def __init__(self, pid, progress, stop):
        super().__init__(daemon=True)
        self.pid = pid
        self.progress = progress
        self.stop = stop
        self.samples = []

    def run(self):
        while not self.stop.wait(RSS_SAMPLE_INTERVAL_S):
            self.samples.append((len(self.progress), rss_kib(self.pid)))

    def at_progress(self, jobs):
        """Return the first sample taken once ``jobs`` jobs were submitted."""
        return next(kib for submitted, kib in self.samples if submitted >= jobs)


class LoadClient(threading.Thread):
    """Submit ``count`` jobs over one keep-alive connection, stopping at ``deadline``."""

    def __init__(self, port, count, deadline, progress):
        super().__init__(daemon=True)
        self.client = Client(port)
        self.count = count
        self.deadline = deadline
        self.progress = progress
        self.ids = []
        self.errors = []
        self.latencies = []

    def run(self):
        for number in range(self.count):
            if time.monotonic() > self.deadline:
                self.errors.append("submit deadline passed")
                break
            body = {"type": "test-echo", "payload": {"value": number}}
            started = time.monotonic()
            try:
                status, data = self.client.json("POST", "/api/jobs", body)
            except OSError as error:
                self.errors.append(repr(error))
                continue
            self.latencies.append(time.monotonic() - started)
            if status == 201:
                self.ids.append(data["id"])
                self.progress.append(1)
            else:
                self.errors.append((status, data))
        self.client.close()


def test_ten_thousand_jobs_through_rest(settings, store, start_plugin, fault_environ, tmp_path):
    queue = JobQueue.from_settings(settings)
    port = int(fault_environ["JOBS_DASHBOARD_PORT"])
    server = start_plugin("server")
    start_plugin("worker", "-c", "2")
    wait_for_server(port)

    stop = threading.Event()
    progress = []
    sampler = RssSampler(server.process.pid, progress, stop)
    sampler.start()
    deadline = time.monotonic() + SUBMIT_DEADLINE_S
    clients = [LoadClient(port, JOBS // CLIENTS, deadline, progress) for _ in range(CLIENTS)]
    started = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join(SUBMIT_DEADLINE_S)
    submit_s = time.monotonic() - started
    end_rss = rss_kib(server.process.pid)
    stop.set()
    sampler.join()
    half_rss = sampler.at_progress(JOBS // 2)

    ids = [job_id for client in clients for job_id in client.ids]
    errors = [error for client in clients for error in client.errors]
    latencies = sorted(latency for client in clients for latency in client.latencies)
    samples = [kib for _, kib in sampler.samples]
    print(f"{len(ids)} jobs submitted by {CLIENTS} clients in {submit_s:.1f} s ({len(ids) / submit_s:.0f} per s); "
          f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms")
    print(f"server VmRSS: {samples[0]} KiB at the first sample, {sampler.at_progress(JOBS // 10)} KiB after "
          f"{JOBS // 10} jobs, {half_rss} KiB after {JOBS // 2}, {end_rss} KiB after {JOBS}, "
          f"max {max(samples)} KiB ({len(samples)} samples)")
    assert errors == []
    assert len(ids) == JOBS
    assert len(set(ids)) == JOBS
    assert end_rss - half_rss < RSS_GROWTH_LIMIT_KIB

    def every_job_completed():
        pipeline = queue.redis.pipeline(transaction=False)
        for job_id in ids:
            pipeline.hget(keys.job_key(job_id), "status")
        return all(status == "finished" for status in pipeline.execute())

    wait_for(every_job_completed, timeout_s=300, interval_s=1, message="every job to complete")
    print(f"every job completed {time.monotonic() - started:.1f} s after the first request")
    wait_for(lambda: queue.redis.llen(keys.HISTORY_KEY) == 0, timeout_s=120, interval_s=0.5,
             message="the history writer to catch up")
    rows = store.fetch_all("doctor_job_statuses", {"ids": ids})
    assert len(rows) == JOBS
    assert {row["status"] for row in rows} == {"completed"}

    # The doctor's snapshot is one MULTI transaction; Redis's own counters give the time it blocked Redis.
    queue.redis.config_resetstat()
    snapshot_started = time.monotonic()
    snapshot = take_snapshot(queue.redis)
    snapshot_ms = (time.monotonic() - snapshot_started) * 1000
    exec_ms = queue.redis.info("commandstats")["cmdstat_exec"]["usec"] / 1000
    print(f"doctor snapshot of {len(snapshot.jobs)} jobs: {snapshot_ms:.0f} ms in the client, "
          f"of which Redis spent {exec_ms:.1f} ms in the MULTI transaction")
    assert len(snapshot.jobs) == JOBS
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)
