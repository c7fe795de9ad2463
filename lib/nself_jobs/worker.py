"""One worker process: claims jobs in priority order and runs them one at a time.

A worker command starts ``JOBS_DEFAULT_CONCURRENCY`` of these processes (see
``supervisor.py``). Each runs jobs in its main thread, so a job's timeout is a
real-time signal (``SIGALRM``) that raises :class:`JobTimeout` inside the
handler and stops its side effects; a background thread keeps the worker's
heartbeat fresh and notices cancel requests for the job in hand.

Shutdown: the first SIGTERM or SIGINT lets the job in hand finish within the
shutdown grace period (``JOBS_SHUTDOWN_GRACE``, ms); past that, the attempt
ends with "worker shutdown" and follows the retry rules, so the job is either
queued again or failed, never left running.
"""

import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid

import redis

from . import jobtypes, keys
from .errors import JobFailed, JobsError, JobTimeout
from .jobtypes import JobContext
from .lifecycle import Lifecycle
from .queue import connect_redis, load_script, rq_time, step_script

log = logging.getLogger(__name__)


class WorkerShutdown(JobsError):
    """Raised inside a job when the shutdown grace period ends before the job does."""

    def __init__(self):
        super().__init__("worker shutdown: the job was stopped after the shutdown grace period")


class JobCancelled(JobsError):
    """Raised inside a running job when someone cancels it."""

    def __init__(self):
        super().__init__("cancelled while running")


def worker_name(pid=None, suffix=None):
    """Return a worker name, ``host.pid.suffix``; the pid is the process that runs the jobs."""
    return f"{socket.gethostname()}.{pid or os.getpid()}.{suffix or uuid.uuid4().hex[:6]}"


def exit_with_parent():
    """Ask Linux to send SIGTERM to this process when its parent dies, so no worker outlives its supervisor."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable; a worker may outlive a killed supervisor")


def execute_job(job_id):
    """RQ's view of a job's function; this plugin's workers run jobs without calling it."""
    raise RuntimeError(f"job {job_id} must be run by an nself jobs worker, not by an RQ worker")


class Worker:
    """Claim and run jobs from ``queues`` until stopped."""

    def __init__(self, settings, queues, name=None, shutdown_grace_ms=None, clock=time.time):
        self.settings = settings
        self.queues = list(queues)
        self.name = name or worker_name()
        self.clock = clock
        self.redis = connect_redis(settings.redis_url)
        self.lifecycle = Lifecycle(self.redis, settings, clock)
        self._claim = self.redis.register_script(load_script("claim"))
        self._settle = self.redis.register_script(load_script("settle"))
        self._step = self.redis.register_script(step_script())
        self._settlement = None
        # Set when a claim or step call failed on the connection: Redis may have run it and lost only the reply.
        self._reply_lost = False
        self.shutdown_grace_ms = shutdown_grace_ms if shutdown_grace_ms is not None else \
            settings.env.int("JOBS_SHUTDOWN_GRACE", 8000, minimum=0)

        self.rq_queues = [rq for queue in self.queues for rq in keys.rq_queue_names(queue)]
        self.plugin_queue_of = {rq: queue for queue in self.queues for rq in keys.rq_queue_names(queue)}
        self._claim_keys = (
            [keys.HISTORY_KEY, keys.PAUSED_KEY]
            + [keys.queue_key(rq) for rq in self.rq_queues]
            + [keys.registry_key("scheduled", rq) for rq in self.rq_queues]
            + [keys.registry_key("wip", rq) for rq in self.rq_queues]
        )

        self.stopping = False
        self.current_job_id = None
        self._in_job = False
        self._job_deadline = None
        self._shutdown_deadline = None
        self._cancel_requested = False
        self._stop_heartbeat = threading.Event()
        self.jobs_done = 0

    # ------------------------------------------------------------ signals

    def install_signal_handlers(self):
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.signal(signal.SIGUSR1, self._on_cancel)

    def _request_stop(self, signum, frame):
        if self.stopping:
            self._shutdown_deadline = time.monotonic()
        else:
            self.stopping = True
            self._shutdown_deadline = time.monotonic() + self.shutdown_grace_ms / 1000
            log.info("worker %s stopping: finishing the job in hand within %d ms", self.name, self.shutdown_grace_ms)
        if self._in_job:
            self._arm_timer()

    def _arm_timer(self):
        deadlines = [d for d in (self._job_deadline, self._shutdown_deadline) if d is not None]
        if deadlines:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, min(deadlines) - time.monotonic()))

    def _on_alarm(self, signum, frame):
        if not self._in_job:
            return
        now = time.monotonic()
        if self._shutdown_deadline is not None and now >= self._shutdown_deadline:
            raise WorkerShutdown()
        if self._job_deadline is not None and now >= self._job_deadline - 0.0005:
            raise JobTimeout(self._timeout_ms)
        self._arm_timer()

    def _on_cancel(self, signum, frame):
        if self._in_job and self._cancel_requested:
            raise JobCancelled()

    # ------------------------------------------------------------ heartbeat

    def heartbeat(self):
        pipeline = self.redis.pipeline(transaction=False)
        pipeline.set(keys.worker_key(self.name), json.dumps({"queues": self.queues, "pid": os.getpid(),
                                                            "job": self.current_job_id}),
                     ex=keys.WORKER_TTL_S)
        pipeline.zadd(keys.WORKERS_KEY, {self.name: self.clock()})
        pipeline.execute()

    def _heartbeat_loop(self):
        last_beat = 0.0
        while not self._stop_heartbeat.wait(1.0):
            try:
                if time.monotonic() - last_beat >= keys.HEARTBEAT_INTERVAL_S:
                    self.heartbeat()
                    last_beat = time.monotonic()
                self._check_cancel()
            except redis.RedisError as error:
                log.warning("worker %s heartbeat failed: %s", self.name, error)

    def _check_cancel(self):
        job_id = self.current_job_id
        if job_id and self._in_job and self.redis.hget(keys.job_key(job_id), "nj_cancel_requested") == "1":
            self._cancel_requested = True
            os.kill(os.getpid(), signal.SIGUSR1)

    # ------------------------------------------------------------ loop

    def _claim_args(self):
        now = self.clock()
        return [len(self.rq_queues), now, rq_time(now), int(now * 1000), self.name, keys.LEASE_GRACE_S,
                *[self.plugin_queue_of[rq] for rq in self.rq_queues]]

    def claim(self):
        return self._claim(keys=self._claim_keys, args=self._claim_args())

    def settle_and_claim(self, settlement):
        """End the previous attempt and claim the next job in one round trip; return ``(recorded, claimed)``."""
        reply = self._step(keys=settlement.keys + self._claim_keys,
                           args=[len(settlement.args), *settlement.args, *self._claim_args()])
        return bool(reply[0]), (reply[1] if len(reply) > 1 else None)

    def work(self, burst=False, max_jobs=None):
        """Run jobs until stopped; with ``burst``, stop when no job is waiting."""
        if not self._register():
            return
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        log.info("worker %s started on queues %s", self.name, ", ".join(self.queues))
        try:
            while not self.stopping and (max_jobs is None or self.jobs_done < max_jobs):
                if not self._work_once(burst):
                    break
            self._flush_settlement()
        finally:
            self._stop_heartbeat.set()
            self._deregister()
            log.info("worker %s stopped after %d jobs", self.name, self.jobs_done)

    def _register(self, retry_s=1.0):
        """Write the first heartbeat, retrying while Redis is unreachable or at its client limit.

        Returns False when the worker is stopped before Redis accepts it.
        """
        failures = 0
        while not self.stopping:
            try:
                self.heartbeat()
            except redis.RedisError as error:
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.warning("worker %s cannot register with Redis (%s); retrying every %.0f s (%d failures)",
                                self.name, error, retry_s, failures)
                time.sleep(retry_s)
                continue
            if failures:
                log.info("worker %s registered with Redis after %d failed attempts", self.name, failures)
            return True
        return False

    def _work_once(self, burst):
        try:
            if self._reply_lost:
                claimed = self._recover_lost_reply()
            elif self._settlement is not None:
                recorded, claimed = self.settle_and_claim(self._settlement)
                self._settled(recorded)
            else:
                claimed = self.claim()
        except redis.RedisError as error:
            # The settlement is kept and sent again, so a Redis restart loses no finished attempt.
            if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
                self._reply_lost = True
            log.warning("worker %s cannot reach Redis (%s); retrying in 1 s", self.name, error)
            time.sleep(1)
            return True
        if claimed is None:
            if burst:
                return False
            try:
                self.redis.blpop([keys.WAKEUP_KEY], timeout=keys.IDLE_POLL_S)
            except redis.RedisError:
                time.sleep(keys.IDLE_POLL_S)
            return True
        self._settlement = self.run_claimed(claimed)
        self.jobs_done += 1
        return True

    def _settled(self, recorded):
        if not recorded:
            log.warning("job %s ended on worker %s after another process had ended the attempt "
                        "(recovered, cancelled or finished elsewhere); this outcome was dropped",
                        self._settlement.args[0], self.name)
        self._settlement = None

    def _recover_lost_reply(self):
        """Record the kept settlement on its own, then return a claim whose reply was lost, or None.

        A connection can drop after Redis ran a claim or step script and before its
        reply arrived. The job is then running under this worker's name while no
        process runs it, and the recovery sweep would only find it when its lease
        lapses (its timeout plus LEASE_GRACE_S), so this worker looks for it and runs it.
        """
        if self._settlement is not None:
            job_id = self._settlement.args[0]
            if not self._settle(keys=self._settlement.keys, args=self._settlement.args):
                log.info("job %s: the attempt was already recorded, by the call whose reply was lost or by "
                         "another process", job_id)
            self._settlement = None
        claimed = self._find_lost_claim()
        self._reply_lost = False
        return claimed

    def _find_lost_claim(self):
        """Return the claim reply for a running job of this worker's registries that names this worker."""
        pipeline = self.redis.pipeline(transaction=False)
        for rq_queue in self.rq_queues:
            pipeline.zrange(keys.registry_key("wip", rq_queue), 0, -1)
        for index, job_ids in enumerate(pipeline.execute(), start=1):
            for job_id in job_ids:
                fields = self.redis.hmget(keys.job_key(job_id), "status", "worker_name", "nj_attempts", "nj_type",
                                          "nj_payload", "nj_timeout_ms", "nj_account", "nj_max_attempts",
                                          "nj_retry_delay_ms", "nj_backoff")
                if fields[0] == "started" and fields[1] == self.name:
                    log.warning("worker %s lost the reply to its claim of job %s (attempt %s); running it now",
                                self.name, job_id, fields[2])
                    # The same shape as the claim script's reply.
                    return [job_id, index, *fields[2:]]
        return None

    def _flush_settlement(self, deadline_s=60):
        """Record the last attempt before exiting, retrying while Redis is unreachable."""
        give_up_at = time.monotonic() + deadline_s
        while self._settlement is not None:
            try:
                self._settled(bool(self._settle(keys=self._settlement.keys, args=self._settlement.args)))
            except redis.RedisError as error:
                if time.monotonic() > give_up_at:
                    log.error("worker %s could not record job %s before exiting (%s); the recovery of lost jobs "
                              "will retry or fail it", self.name, self._settlement.args[0], error)
                    return
                time.sleep(1)

    def _deregister(self):
        try:
            pipeline = self.redis.pipeline(transaction=False)
            pipeline.delete(keys.worker_key(self.name))
            pipeline.zrem(keys.WORKERS_KEY, self.name)
            pipeline.execute()
        except redis.RedisError as error:
            log.warning("worker %s could not deregister: %s", self.name, error)

    # ------------------------------------------------------------ one job

    def run_claimed(self, claimed):
        """Run one claimed job and return the :class:`Settlement` that records its outcome."""
        job_id, index, attempt, type_name, payload_json, timeout_ms, account = claimed[:7]
        retry_rules = {"max_attempts": int(claimed[7]), "retry_delay_ms": int(claimed[8]), "backoff": claimed[9]}
        rq_queue = self.rq_queues[int(index) - 1]
        attempt = int(attempt)
        self._timeout_ms = int(timeout_ms)
        self.current_job_id = job_id
        self._cancel_requested = False
        started = time.monotonic()
        log.debug("job %s (%s) attempt %d started on %s", job_id, type_name, attempt, rq_queue)
        try:
            result = self._run_with_deadline(job_id, attempt, type_name, payload_json)
            duration_ms = int((time.monotonic() - started) * 1000)
            json.dumps(result, allow_nan=False)
        except BaseException as error:  # noqa: BLE001 - every failure of user code must end the attempt
            if isinstance(error, (KeyboardInterrupt, SystemExit)) and not self.stopping:
                raise
            return self._failure_settlement(job_id, rq_queue, attempt, retry_rules, error, account)
        else:
            log.debug("job %s completed in %d ms", job_id, duration_ms)
            return self.lifecycle.completed(job_id, rq_queue, self.name, attempt, result, duration_ms, account,
                                            run=False)
        finally:
            self.current_job_id = None

    def _run_with_deadline(self, job_id, attempt, type_name, payload_json):
        job_type = jobtypes.get(type_name)
        payload = json.loads(payload_json)
        context = JobContext(job_id, attempt, self.settings, self._timeout_ms,
                             report_progress=lambda percent, message: self._report_progress(job_id, percent, message))
        self._job_deadline = time.monotonic() + self._timeout_ms / 1000
        self._in_job = True
        try:
            self._arm_timer()
            return job_type.run(payload, context)
        finally:
            self._in_job = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._job_deadline = None

    def _failure_settlement(self, job_id, rq_queue, attempt, retry_rules, error, account):
        if isinstance(error, JobCancelled):
            return self.lifecycle.cancelled(job_id, rq_queue, self.name, attempt, run=False)
        if isinstance(error, (TypeError, ValueError)) and "JSON" in str(error):
            error = JobFailed(f"the job's result is not JSON-serialisable: {error}")
        if isinstance(error, (JobFailed, JobTimeout, WorkerShutdown)):
            stack = None
        else:
            stack = "".join(traceback.format_exception(error))[-20_000:]
        log.info("job %s attempt %d of %d failed: %s", job_id, attempt, retry_rules["max_attempts"], error)
        return self.lifecycle.failure_from_exception(job_id, rq_queue, self.name, attempt, retry_rules, error, stack,
                                                     account, run=False)

    def _report_progress(self, job_id, percent, message):
        now_ms = int(self.clock() * 1000)
        event = json.dumps({"e": "progress", "id": job_id, "t": now_ms, "progress": percent, "message": message},
                           ensure_ascii=False)
        pipeline = self.redis.pipeline(transaction=True)
        pipeline.hset(keys.job_key(job_id), mapping={"nj_progress": percent, "nj_progress_message": message or ""})
        pipeline.rpush(keys.HISTORY_KEY, event)
        pipeline.execute()


def run_worker_process(settings, queues, name_suffix, log_config=None):
    """Entry point of a spawned worker process."""
    parent = os.getppid()
    exit_with_parent()
    if os.getppid() != parent:
        return
    if log_config is not None:
        log_config()
    jobtypes.load_user_modules(settings.env.list("JOBS_HANDLER_MODULES"))
    worker = Worker(settings, queues, name=worker_name(suffix=name_suffix))
    worker.install_signal_handlers()
    # Ctrl-C reaches the whole process group; the supervisor passes it on as SIGTERM,
    # so a child that also acted on SIGINT would count one keypress as two signals.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker.work()
