"""Recovery of jobs whose worker died, and removal of expired registry entries.

A running job is lost when its worker's heartbeat key has expired (the worker
died: SIGKILL, OOM, power loss) or its lease in the wip registry has lapsed.
A lost attempt ends as "worker lost" and follows the retry rules: queued again
when attempts remain, failed otherwise. A worker heartbeat expires after
``WORKER_TTL_S`` (15 s) and the sweep runs every ``SWEEP_INTERVAL_S`` (5 s), so
a lost job is recovered within about 20 s; a worker command notices its own
child dying at once and recovers that child's job within about a second.

The settle script checks that the attempt is still the one the dead worker
held, so a job that finished normally is never marked lost afterwards.
"""

import logging
import threading
import time
import uuid

import redis

from . import keys
from .lifecycle import Lifecycle
from .settings import QUEUE_NAMES

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 5
LEASE_ROLE = "maintenance"
LEASE_TTL_MS = 15_000


class Maintenance:
    """Recover lost jobs and trim registries; one process at a time holds the lease."""

    def __init__(self, connection, settings, clock=time.time):
        self.redis = connection
        self.settings = settings
        self.clock = clock
        self.lifecycle = Lifecycle(connection, settings, clock)
        self.token = uuid.uuid4().hex

    def acquire_lease(self):
        lease = keys.lease_key(LEASE_ROLE)
        if self.redis.get(lease) == self.token:
            self.redis.pexpire(lease, LEASE_TTL_MS)
            return True
        return bool(self.redis.set(lease, self.token, nx=True, px=LEASE_TTL_MS))

    def recover_lost_jobs(self, only_worker=None):
        """End every attempt whose worker is gone or whose lease lapsed; return the job ids recovered."""
        now = self.clock()
        candidates = []
        for queue in QUEUE_NAMES:
            for rq_queue in keys.rq_queue_names(queue):
                for job_id, lease_expiry in self.redis.zrange(keys.registry_key("wip", rq_queue), 0, -1, withscores=True):
                    candidates.append((rq_queue, job_id, lease_expiry))
        if not candidates:
            return []

        pipeline = self.redis.pipeline(transaction=False)
        for _, job_id, _ in candidates:
            pipeline.hmget(keys.job_key(job_id), "worker_name", "nj_attempts", "nj_account", "status",
                           "nj_max_attempts", "nj_retry_delay_ms", "nj_backoff")
        states = pipeline.execute()
        workers = {state[0] for state in states if state[0]}
        alive = self._alive_workers(workers)

        recovered = []
        for (rq_queue, job_id, lease_expiry), state in zip(candidates, states):
            owner, attempt, account, status = state[:4]
            retry_rules = {"max_attempts": int(state[4] or 1), "retry_delay_ms": int(state[5] or 0),
                           "backoff": state[6] or "exponential"}
            if status is None:
                log.error("job %s is in the running registry of %s but its data is missing (evicted or deleted); "
                          "removing the entry", job_id, rq_queue)
                self.redis.zrem(keys.registry_key("wip", rq_queue), job_id)
                continue
            if only_worker is not None and owner != only_worker:
                continue
            if owner in alive and lease_expiry > now:
                continue
            reason = "worker lost" if owner not in alive else "worker lost: lease expired"
            if self._end_lost_attempt(job_id, rq_queue, owner, attempt, retry_rules, account, reason):
                recovered.append(job_id)
        return recovered

    def _alive_workers(self, names):
        names = list(names)
        if not names:
            return set()
        pipeline = self.redis.pipeline(transaction=False)
        for name in names:
            pipeline.exists(keys.worker_key(name))
        return {name for name, exists in zip(names, pipeline.execute()) if exists}

    def _end_lost_attempt(self, job_id, rq_queue, owner, attempt, retry_rules, account, reason):
        recorded = self.lifecycle.failed_attempt(job_id, rq_queue, owner or "", attempt or "0", retry_rules, reason, None,
                                                 account=account or "primary")
        if recorded:
            log.warning("job %s: %s (worker %s, attempt %s); attempt ended by recovery", job_id, reason, owner, attempt)
        return recorded

    def trim_registries(self):
        """Remove finished, failed and cancelled entries past their cleanup age, and dead workers."""
        now = self.clock()
        pipeline = self.redis.pipeline(transaction=False)
        for queue in QUEUE_NAMES:
            for rq_queue in keys.rq_queue_names(queue):
                for kind in ("finished", "failed", "canceled"):
                    pipeline.zremrangebyscore(keys.registry_key(kind, rq_queue), "-inf", now)
        pipeline.zremrangebyscore(keys.WORKERS_KEY, "-inf", now - keys.WORKER_TTL_S)
        pipeline.execute()

    def run(self, stop_event):
        while not stop_event.is_set():
            try:
                if self.acquire_lease():
                    self.recover_lost_jobs()
                    self.trim_registries()
            except redis.RedisError as error:
                log.warning("maintenance cannot reach Redis: %s", error)
            except Exception:
                log.exception("maintenance sweep failed")
            stop_event.wait(SWEEP_INTERVAL_S)

    def start_thread(self, stop_event):
        thread = threading.Thread(target=self.run, args=(stop_event,), name="maintenance", daemon=True)
        thread.start()
        return thread
