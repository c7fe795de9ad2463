"""Measurements of the plugin: enqueue, the REST API, processing, history and enqueue-to-start time.

Workers and the server are the real commands (``bin/nself-jobs worker`` and
``bin/nself-jobs server``) in child processes. The no-op job type comes from
``bench/noop_jobs.py`` through ``JOBS_HANDLER_MODULES``.

A processing round holds its jobs back until the worker command is up. It adds
the queue to the plugin's paused set, enqueues the jobs and waits until every
worker process has registered. Then it clears the pause and pushes one wakeup
token per process, which starts the clock. The clock stops when the finished
registry contains every job.
"""

import http.client
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import bench.noop_jobs  # noqa: F401 - registers the noop job type for parse_job_request
from nself_jobs import keys
from nself_jobs.history import HistoryStore
from nself_jobs.jobspec import parse_job_request
from nself_jobs.queue import JobQueue
from nself_jobs.settings import load_settings

from . import services
from .figures import percentile
from .http_load import run_load

log = logging.getLogger("bench")

# The repository that contains bench/; child processes import bench.noop_jobs from it.
REPO = Path(__file__).resolve().parents[1]
REDIS_DB = 1
QUEUE = "default"
RQ_QUEUE = keys.rq_queue_name(QUEUE, keys.DEFAULT_PRIORITY)
FINISHED_KEY = keys.registry_key("finished", RQ_QUEUE)
FAILED_KEY = keys.registry_key("failed", RQ_QUEUE)
HISTORY_LEASE_KEY = keys.lease_key("history")
# While the bench holds the history writer's lease under this token, no writer drains events.
BENCH_LEASE_TOKEN = "held-by-the-benchmark"
BENCH_LEASE_MS = 600_000
ENQUEUE_BATCH = 1000
ROUND_TIMEOUT_S = 300
POLL_INTERVAL_S = 0.01
JOB_REQUEST = {"type": "noop", "payload": {}}


@dataclass
class ProcessingRound:
    """One processing round; rates in jobs per second, lags in milliseconds."""

    jobs: int
    seconds: float
    cpu_seconds: float | None = None
    history_seconds: float | None = None
    drain_events_per_s: float | None = None
    lag_samples_ms: list = field(default_factory=list)
    round_trips: int | None = None
    batches: int | None = None

    @property
    def rate(self):
        return self.jobs / self.seconds

    @property
    def cpu_per_job_us(self):
        return self.cpu_seconds / self.jobs * 1e6 if self.cpu_seconds is not None else None

    @property
    def history_rate(self):
        return self.jobs / self.history_seconds if self.history_seconds else None


class Plugin:
    """The plugin on the run's Redis database 1 and PostgreSQL schema, with helpers to run its commands.

    ``plugin_dir`` is the checkout whose ``bin/nself-jobs`` runs; its ``lib`` must be
    the one this process imported ``nself_jobs`` from.
    """

    def __init__(self, servers, run_dir, processes, plugin_dir=REPO, cpu=None):
        self.command = Path(plugin_dir) / "bin" / "nself-jobs"
        # A services.CpuAccount; when given, processing rounds record the CPU time they used.
        self.cpu = cpu
        self.servers = servers
        self.run_dir = run_dir
        self.processes = processes
        schema = servers.reset_schema()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(run_dir),
            "LANG": "C.UTF-8",
            "NSELF_PROJECT_DIR": str(run_dir),
            "JOBS_HOME": str(run_dir / "home"),
            "JOBS_REDIS_URL": services.with_database_number(servers.redis_url, REDIS_DB),
            "DATABASE_URL": servers.database_url,
            "JOBS_DB_SCHEMA": schema,
            "JOBS_HANDLER_MODULES": "bench.noop_jobs",
            "JOBS_BIND_HOST": "127.0.0.1",
            "PYTHONPATH": str(REPO),
            "LOG_LEVEL": "info",
        }
        self.settings = load_settings(environ=self.env, project_dir=run_dir)
        HistoryStore(servers.database_url, schema).apply_schema()
        self.redis = servers.redis(REDIS_DB)
        self.queue = JobQueue(self.redis, self.settings)
        (run_dir / "logs").mkdir(exist_ok=True)

    def reset(self):
        """Empty the plugin's Redis database and history tables; call only while no command of it runs."""
        self.redis.flushdb()
        self.servers.truncate_history()

    def job_spec(self):
        return parse_job_request(JOB_REQUEST, self.settings)

    # ------------------------------------------------------------ enqueue

    def enqueue_one_rate(self, count):
        """Return jobs per second for ``count`` calls of ``JobQueue.enqueue``, request parsing included."""
        self.reset()
        began = time.perf_counter()
        for _ in range(count):
            self.queue.enqueue(self.job_spec())
        return count / (time.perf_counter() - began)

    def enqueue_many_rate(self, count):
        """Return jobs per second for ``JobQueue.enqueue_many`` in batches of ``ENQUEUE_BATCH``."""
        self.reset()
        began = time.perf_counter()
        self.enqueue_in_batches(count)
        return count / (time.perf_counter() - began)

    def enqueue_in_batches(self, count):
        for start in range(0, count, ENQUEUE_BATCH):
            self.queue.enqueue_many([self.job_spec() for _ in range(min(ENQUEUE_BATCH, count - start))])

    # ------------------------------------------------------------ commands

    def start_worker(self, concurrency, database_url=None):
        """Start ``nself-jobs worker default -c N`` and return it once every process has registered."""
        env = dict(self.env)
        if database_url:
            env["DATABASE_URL"] = database_url
        process = self.processes.start([str(self.command), "worker", QUEUE, "-c", str(concurrency)],
                                       self.run_dir / "logs" / f"worker-c{concurrency}.log", env=env, cwd=self.run_dir)

        def registered():
            if process.poll() is not None:
                raise RuntimeError(f"the worker command exited with status {process.returncode}; "
                                   f"see {self.run_dir / 'logs'}")
            return self.redis.zcard(keys.WORKERS_KEY) >= concurrency

        services.wait_until(registered, 90, interval_s=0.05,
                            description=f"{concurrency} worker processes to register")
        return process

    def stop(self, process):
        self.processes.stop(process)

    def start_server(self, port):
        """Start ``nself-jobs server`` on 127.0.0.1:``port`` and return it once ``GET /health`` returns 200."""
        env = dict(self.env, JOBS_DASHBOARD_PORT=str(port))
        process = self.processes.start([str(self.command), "server"], self.run_dir / "logs" / "server.log",
                                       env=env, cwd=self.run_dir)

        def healthy():
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}; see {self.run_dir / 'logs'}")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                connection.request("GET", "/health")
                return connection.getresponse().status == 200
            except OSError:
                return False
            finally:
                connection.close()

        services.wait_until(healthy, 90, interval_s=0.1, description=f"the server on port {port}")
        return process

    # ------------------------------------------------------------ REST API

    def http_rounds(self, rounds, duration_s, connections, with_worker, run_round):
        """Run ``rounds`` load runs against a fresh server, each through ``run_round``; return its results.

        ``run_round(measure)`` calls ``measure()`` and returns ``(result, extra)``,
        and the returned list contains those pairs with a :class:`LoadResult` as each result.
        """
        self.reset()
        port = services.free_port()
        server = self.start_server(port)
        worker = self.start_worker(5) if with_worker else None
        try:
            results = []
            for _ in range(rounds):
                result, extra = run_round(lambda: run_load(port, duration_s, connections))
                if result.errors:
                    raise RuntimeError(f"{result.errors} requests to POST /api/jobs failed; "
                                       f"see {self.run_dir / 'logs'}")
                results.append((result, extra))
            return results
        finally:
            if worker is not None:
                self.stop(worker)
            self.stop(server)

    # ------------------------------------------------------------ processing

    def hold_history(self):
        """Take the history writer's lease, so no writer drains until :meth:`release_history`."""
        self.redis.set(HISTORY_LEASE_KEY, BENCH_LEASE_TOKEN, px=BENCH_LEASE_MS)

    def release_history(self):
        """Give the lease back and wait until a writer takes it (a waiting writer retries every second)."""
        if self.redis.get(HISTORY_LEASE_KEY) == BENCH_LEASE_TOKEN:
            self.redis.delete(HISTORY_LEASE_KEY)
        services.wait_until(lambda: self.redis.get(HISTORY_LEASE_KEY) not in (None, BENCH_LEASE_TOKEN), 10,
                            description="the history writer to take its lease")

    def _oldest_event_lag_ms(self, oldest_raw):
        if oldest_raw is None:
            return 0.0
        return max(0.0, time.time() * 1000 - json.loads(oldest_raw)["t"])

    def processing_round(self, concurrency, jobs, history, relay=None):
        """Run ``jobs`` no-op jobs through a running worker command and time them.

        ``history`` is one of:

        - ``"on"``: the writer drains every event of the round while the jobs run,
          the created events included.
        - ``"off"``: the bench holds the writer's lease until the jobs are done,
          then gives it back and times the drain.
        - ``"lag"``: the created events are drained before the clock starts, and
          the age of the oldest undrained event is sampled while the jobs run.
        """
        redis_client = self.redis
        redis_client.sadd(keys.PAUSED_KEY, QUEUE)
        if history in ("on", "off"):
            self.hold_history()
        finished_before = redis_client.zcard(FINISHED_KEY)
        ltrim_before = self._command_calls("ltrim")
        self.enqueue_in_batches(jobs)
        if history == "lag":
            services.wait_until(lambda: redis_client.llen(keys.HISTORY_KEY) == 0, 120,
                                description="the history writer to drain the created events")
        if history == "on":
            self.release_history()
        round_trips_before = relay.round_trips if relay else None

        result = ProcessingRound(jobs=jobs, seconds=0.0)
        cpu_before = self.cpu.ours_seconds() if self.cpu else None
        began = time.perf_counter()
        pipeline = redis_client.pipeline(transaction=False)
        pipeline.srem(keys.PAUSED_KEY, QUEUE)
        pipeline.lpush(keys.WAKEUP_KEY, *["1"] * concurrency)
        pipeline.execute()
        deadline = began + ROUND_TIMEOUT_S
        while True:
            pipeline = redis_client.pipeline(transaction=False)
            pipeline.zcard(FINISHED_KEY)
            pipeline.lindex(keys.HISTORY_KEY, 0)
            finished, oldest = pipeline.execute()
            if history == "lag":
                result.lag_samples_ms.append(self._oldest_event_lag_ms(oldest))
            if finished - finished_before >= jobs:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{jobs - (finished - finished_before)} of {jobs} jobs still unfinished "
                                   f"after {ROUND_TIMEOUT_S} s")
            time.sleep(POLL_INTERVAL_S)
        result.seconds = time.perf_counter() - began
        if self.cpu:
            result.cpu_seconds = self.cpu.ours_seconds() - cpu_before
        failed = redis_client.zcard(FAILED_KEY)
        if failed:
            raise RuntimeError(f"{failed} no-op jobs failed; see {self.run_dir / 'logs'}")

        if history == "off":
            backlog = redis_client.llen(keys.HISTORY_KEY)
            self.release_history()
            drain_began = time.perf_counter()
            self._wait_for_history(lambda: None)
            result.drain_events_per_s = backlog / (time.perf_counter() - drain_began)
        else:
            sample = (lambda: result.lag_samples_ms.append(
                self._oldest_event_lag_ms(redis_client.lindex(keys.HISTORY_KEY, 0)))) if history == "lag" else None
            self._wait_for_history(sample)
            result.history_seconds = time.perf_counter() - began
        if relay is not None:
            result.round_trips = relay.round_trips - round_trips_before
        # Each enqueue trims the wakeup list once; every other LTRIM is the writer trimming a written batch.
        result.batches = self._command_calls("ltrim") - ltrim_before - jobs
        return result

    def _wait_for_history(self, sample):
        deadline = time.perf_counter() + ROUND_TIMEOUT_S
        while self.redis.llen(keys.HISTORY_KEY):
            if sample is not None:
                sample()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"history events still in Redis after {ROUND_TIMEOUT_S} s")
            time.sleep(POLL_INTERVAL_S)

    def _command_calls(self, name):
        return int(self.redis.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))

    # ------------------------------------------------------------ enqueue to start

    def start_latency_round(self, count, gap_s):
        """Enqueue ``count`` jobs ``gap_s`` apart to a running worker; return each job's start minus creation, ms."""
        finished_before = self.redis.zcard(FINISHED_KEY)
        job_ids = []
        next_at = time.perf_counter()
        for _ in range(count):
            job_ids.append(self.queue.enqueue(self.job_spec())[0])
            next_at += gap_s
            time.sleep(max(0.0, next_at - time.perf_counter()))
        services.wait_until(lambda: self.redis.zcard(FINISHED_KEY) - finished_before >= count, 60,
                            description=f"{count} jobs to finish")
        pipeline = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipeline.hmget(keys.job_key(job_id), "nj_created_ms", "nj_started_ms")
        return [int(started) - int(created) for created, started in pipeline.execute()]


def latency_summary(samples):
    return percentile(samples, 0.50), percentile(samples, 0.99)
