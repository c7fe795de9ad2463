"""Measurements of plain RQ (the version installed in .venv) on the same Redis and the same no-op job.

Workers are RQ's own command line (``rq worker``, ``rq worker-pool``) with RQ's
defaults, logging included. A processing round enqueues its jobs, renames the
queue's list away, starts the workers and waits until each has registered,
then renames the list back. RQ's workers block in BLMOVE on the queue key, and
Redis wakes them when the key reappears, which starts the clock. The clock
stops when RQ's finished registry holds every job.
"""

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from rq import Queue

from . import services

REPO = Path(__file__).resolve().parents[1]
RQ_COMMAND = str(Path(sys.executable).with_name("rq"))
REDIS_DB = 2
QUEUE = "bench"
FUNCTION = "bench.rq_noop.noop"
HOLD_KEY = "bench:held-queue"
ENQUEUE_BATCH = 1000
ROUND_TIMEOUT_S = 300
POLL_INTERVAL_S = 0.01


@dataclass(frozen=True)
class WorkerSetup:
    """One way of running RQ workers: ``kind`` is worker, pool or simple."""

    key: str
    label: str
    kind: str
    processes: int


WORKER_SETUPS = (
    WorkerSetup("rq.worker", "RQ Worker (forks per job), 1 process", "worker", 1),
    WorkerSetup("rq.pool2", "RQ WorkerPool, 2 processes", "pool", 2),
    WorkerSetup("rq.simple1", "RQ SimpleWorker, 1 process", "simple", 1),
    WorkerSetup("rq.simple2", "RQ SimpleWorker, 2 processes", "simple", 2),
    WorkerSetup("rq.simple4", "RQ SimpleWorker, 4 processes", "simple", 4),
)


class PlainRQ:
    """RQ on the run's Redis database 2."""

    def __init__(self, servers, run_dir, processes, cpu=None):
        # A services.CpuAccount; when given, processing rounds also return the CPU time they used.
        self.cpu = cpu
        self.run_dir = run_dir
        self.processes = processes
        self.url = services.with_database_number(servers.redis_url, REDIS_DB)
        self.redis = servers.redis(REDIS_DB)
        # RQ stores pickled job data, so its own client must not decode replies.
        self.raw_redis = redis.Redis.from_url(self.url)
        self.queue = Queue(QUEUE, connection=self.raw_redis)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(run_dir),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO),
        }
        (run_dir / "logs").mkdir(exist_ok=True)

    def enqueue_one_rate(self, count):
        self.redis.flushdb()
        began = time.perf_counter()
        for _ in range(count):
            self.queue.enqueue(FUNCTION)
        return count / (time.perf_counter() - began)

    def enqueue_many_rate(self, count):
        self.redis.flushdb()
        began = time.perf_counter()
        self._enqueue_in_batches(count)
        return count / (time.perf_counter() - began)

    def _enqueue_in_batches(self, count):
        for start in range(0, count, ENQUEUE_BATCH):
            size = min(ENQUEUE_BATCH, count - start)
            self.queue.enqueue_many([Queue.prepare_data(FUNCTION) for _ in range(size)])

    def _worker_commands(self, setup):
        base = [RQ_COMMAND]
        if setup.kind == "pool":
            return [base + ["worker-pool", "--url", self.url, "-n", str(setup.processes), QUEUE]]
        command = base + ["worker", "--url", self.url, QUEUE]
        if setup.kind == "simple":
            command[2:2] = ["-w", "rq.worker.SimpleWorker"]
        return [command] * setup.processes

    def processing_rate(self, setup, jobs):
        """Run one round of ``jobs`` no-op jobs with the workers of ``setup``.

        Returns ``(jobs per second, CPU microseconds per job or None)``.
        """
        self.redis.flushdb()
        self._enqueue_in_batches(jobs)
        self.redis.rename(self.queue.key, HOLD_KEY)
        workers_key = f"rq:workers:{QUEUE}"
        started = []
        try:
            for index, command in enumerate(self._worker_commands(setup)):
                log_path = self.run_dir / "logs" / f"{setup.key}-{index}.log"
                started.append(self.processes.start(command, log_path, env=self.env, cwd=self.run_dir))

            def registered():
                for process in started:
                    if process.poll() is not None:
                        raise RuntimeError(f"an RQ worker exited with status {process.returncode}; "
                                           f"see {self.run_dir / 'logs'}")
                return self.redis.scard(workers_key) >= setup.processes

            services.wait_until(registered, 60, interval_s=0.05,
                                description=f"{setup.processes} RQ workers to register")
            finished_key = f"rq:finished:{QUEUE}"
            cpu_before = self.cpu.ours_seconds() if self.cpu else None
            began = time.perf_counter()
            self.redis.rename(HOLD_KEY, self.queue.key)
            deadline = began + ROUND_TIMEOUT_S
            while self.redis.zcard(finished_key) < jobs:
                failed = self.redis.zcard(f"rq:failed:{QUEUE}")
                if failed:
                    raise RuntimeError(f"{failed} RQ no-op jobs failed; see {self.run_dir / 'logs'}")
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"RQ jobs still unfinished after {ROUND_TIMEOUT_S} s")
                time.sleep(POLL_INTERVAL_S)
            rate = jobs / (time.perf_counter() - began)
            cpu_per_job_us = (self.cpu.ours_seconds() - cpu_before) / jobs * 1e6 if self.cpu else None
            return rate, cpu_per_job_us
        finally:
            for process in started:
                self.processes.stop(process)
