"""Operator actions on jobs: cancel, retry, promote, and finding failed jobs to retry.

Each action is one Lua script that checks the job's state and changes it in the
same atomic step, so two operators (or two cron runs of ``retry``) acting on the
same job at once change it once.
"""

import json
import time
import uuid
from dataclasses import dataclass

import redis

from . import keys
from .errors import Conflict, NotFound
from .queue import load_script, rq_time
from .settings import QUEUE_NAMES


@dataclass
class FailedJob:
    """A failed job that ``retry`` may move back to its queue."""

    id: str
    type: str
    queue: str
    attempts: int
    error: str
    failed_at_ms: int


class Operations:
    """Cancel, retry and promote jobs in one Redis database."""

    def __init__(self, queue):
        self.queue = queue
        self.redis = queue.redis
        self.settings = queue.settings
        self.clock = queue.clock
        self._cancel = self.redis.register_script(load_script("cancel"))
        self._retry = self.redis.register_script(load_script("retry"))
        self._promote = self.redis.register_script(load_script("promote"))

    def _origin(self, job_id):
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise NotFound(f"job {job_id!r} not found: job ids are UUIDs") from None
        try:
            origin = self.redis.hget(keys.job_key(job_id), "origin")
        except redis.RedisError as error:
            raise self.queue._translate(error) from error
        if origin is None:
            raise NotFound(f"job {job_id} not found in Redis: it does not exist or its cleanup age has passed")
        return origin

    def _event(self, name, job_id):
        return json.dumps({"e": name, "id": job_id, "t": int(self.clock() * 1000)})

    def cancel(self, job_id):
        """Cancel a waiting or delayed job at once, or ask a running one to stop.

        Returns ``"cancelled"`` or ``"requested"``; raises Conflict for a finished job.
        """
        rq_queue = self._origin(job_id)
        now = self.clock()
        ttl_ms = self.settings.clean_failed_after_ms
        outcome = self._cancel(
            keys=[keys.job_key(job_id), keys.queue_key(rq_queue), keys.registry_key("scheduled", rq_queue),
                  keys.registry_key("canceled", rq_queue), keys.HISTORY_KEY],
            args=[job_id, now, rq_time(now), int(now * 1000), ttl_ms, self._event("cancelled", job_id)],
        )
        if outcome in ("cancelled", "requested"):
            return outcome
        if outcome == "missing":
            raise NotFound(f"job {job_id} not found")
        raise Conflict(f"job {job_id} is already {_status_name(outcome)}; only waiting, delayed or running jobs "
                       "can be cancelled")

    def retry(self, job_id, seen_attempts=None):
        """Move a failed job back to its queue with a fresh set of retries; raise Conflict otherwise.

        ``seen_attempts`` is the attempt count from a listing of failed jobs: when the
        job has run again since then, another retry already handled it, and Conflict
        is raised instead of queueing it a second time.
        """
        rq_queue = self._origin(job_id)
        outcome = self._retry(
            keys=[keys.job_key(job_id), keys.registry_key("failed", rq_queue), keys.queue_key(rq_queue),
                  keys.HISTORY_KEY, keys.WAKEUP_KEY],
            args=[job_id, rq_time(self.clock()), self._event("retried", job_id), keys.WAKEUP_MAX_TOKENS,
                  "" if seen_attempts is None else str(seen_attempts)],
        )
        if outcome == "changed":
            raise Conflict(f"job {job_id} was retried by someone else since it was listed")
        if outcome == "retried":
            return outcome
        if outcome == "missing":
            raise NotFound(f"job {job_id} not found")
        raise Conflict(f"job {job_id} is {_status_name(outcome)}, not failed; only failed jobs can be retried")

    def promote(self, job_id):
        """Move a delayed job to its queue now; raise Conflict when it is not delayed."""
        rq_queue = self._origin(job_id)
        outcome = self._promote(
            keys=[keys.job_key(job_id), keys.registry_key("scheduled", rq_queue), keys.queue_key(rq_queue),
                  keys.HISTORY_KEY, keys.WAKEUP_KEY],
            args=[job_id, rq_time(self.clock()), self._event("queued", job_id), keys.WAKEUP_MAX_TOKENS],
        )
        if outcome == "promoted":
            return outcome
        if outcome == "missing":
            raise NotFound(f"job {job_id} not found")
        raise Conflict(f"job {job_id} is {_status_name(outcome)}, not delayed; only delayed jobs can be promoted")

    def delete(self, job_id):
        """Cancel a job that has not ended, or remove an ended job from Redis.

        Returns ``"cancelled"`` or ``"requested"`` as :meth:`cancel` does, or
        ``"removed"``. A removed job keeps its PostgreSQL history, so it is still
        listed and ``GET /api/jobs/:id`` still returns it.
        """
        job_key = keys.job_key(job_id)
        with self.redis.pipeline() as pipeline:
            while True:
                try:
                    # WATCH makes the removal fail if a retry or another removal changes the job meanwhile.
                    pipeline.watch(job_key)
                    status, origin, unique = pipeline.hmget(job_key, "status", "origin", "nj_unique_key")
                    if status is None:
                        raise NotFound(f"job {job_id} not found in Redis: it does not exist or its cleanup age "
                                       "has passed")
                    if status not in _ENDED_STATUSES:
                        pipeline.unwatch()
                        break
                    unique_holder = keys.unique_key(unique) if unique else None
                    if unique_holder:
                        pipeline.watch(unique_holder)
                    holds_unique = unique_holder is not None and pipeline.get(unique_holder) == job_id
                    pipeline.multi()
                    for kind in ("finished", "failed", "canceled"):
                        pipeline.zrem(keys.registry_key(kind, origin), job_id)
                    pipeline.delete(job_key)
                    if holds_unique:
                        pipeline.delete(unique_holder)
                    pipeline.execute()
                    return "removed"
                except redis.WatchError:
                    continue
                except redis.RedisError as error:
                    raise self.queue._translate(error) from error
        return self.cancel(job_id)

    def failed_jobs(self, queues=QUEUE_NAMES, job_type=None, limit=None):
        """Return failed jobs still in Redis, oldest failure first, filtered by queue and type."""
        now = time.time()
        candidates = []
        for queue in queues:
            for rq_queue in keys.rq_queue_names(queue):
                candidates += self.redis.zrangebyscore(keys.registry_key("failed", rq_queue), now, "+inf")
        pipeline = self.redis.pipeline(transaction=False)
        for job_id in candidates:
            pipeline.hmget(keys.job_key(job_id), "status", "nj_type", "nj_queue", "nj_attempts", "nj_error",
                           "nj_ended_ms")
        found = []
        for job_id, fields in zip(candidates, pipeline.execute()):
            status, type_name, queue, attempts, error, ended_ms = fields
            if status != "failed" or (job_type and type_name != job_type):
                continue
            found.append(FailedJob(job_id, type_name, queue, int(attempts or 0), error or "", int(ended_ms or 0)))
        found.sort(key=lambda job: job.failed_at_ms)
        return found[:limit] if limit is not None else found


# RQ statuses of jobs that have ended; only these can be removed from Redis.
_ENDED_STATUSES = ("finished", "failed", "canceled")

_STATUS_WORDS = {"finished": "completed", "canceled": "cancelled", "started": "running", "queued": "waiting",
                 "scheduled": "delayed"}


def _status_name(status):
    return _STATUS_WORDS.get(status, status)
