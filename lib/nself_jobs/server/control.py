"""Redis state the server reads or switches beside JobQueue and Operations.

Pausing a queue adds its name to the set ``nself:jobs:paused``. Every worker's
claim script skips the queues in that set, so a paused queue keeps its waiting
jobs, and a job that is already running finishes. Workers are listed from their heartbeats.
"""

import json

import redis

from .. import keys
from ..errors import NotFound
from ..settings import QUEUE_NAMES


class QueueControl:
    """Pause and resume queues, list live workers and look up a job's app in one Redis database."""

    def __init__(self, queue):
        self.queue = queue
        self.redis = queue.redis

    def _check_queue(self, name):
        if name not in QUEUE_NAMES:
            raise NotFound(f"queue {name!r} not found; queues: {', '.join(QUEUE_NAMES)}")

    def set_paused(self, name, paused):
        """Pause or resume queue ``name``; raise NotFound for an unknown queue."""
        self._check_queue(name)
        try:
            if paused:
                self.redis.sadd(keys.PAUSED_KEY, name)
            else:
                self.redis.srem(keys.PAUSED_KEY, name)
        except redis.RedisError as error:
            raise self.queue._translate(error) from error

    def alive_workers(self):
        """Return the workers whose heartbeat is younger than WORKER_TTL_S, newest heartbeat first.

        Each worker is ``{"name", "queues", "pid", "job", "lastSeen"}``; ``job`` is the
        id of the job in hand or None, ``lastSeen`` the heartbeat time in epoch s.
        """
        now = self.queue.clock()
        try:
            beats = self.redis.zrevrangebyscore(keys.WORKERS_KEY, "+inf", now - keys.WORKER_TTL_S, withscores=True)
            states = self.redis.mget([keys.worker_key(name) for name, _ in beats]) if beats else []
        except redis.RedisError as error:
            raise self.queue._translate(error) from error
        workers = []
        for (name, last_seen), state in zip(beats, states):
            if state is None:
                continue  # the heartbeat key expired: the worker stopped since its last beat
            try:
                details = json.loads(state)
            except ValueError:
                details = {}
            workers.append({"name": name, "queues": details.get("queues") or [], "pid": details.get("pid"),
                            "job": details.get("job"), "lastSeen": last_seen})
        return workers

    def job_account(self, job_id):
        """Return the app that owns a job in Redis, or None when Redis no longer contains the job."""
        try:
            return self.redis.hget(keys.job_key(job_id), "nj_account")
        except redis.RedisError as error:
            raise self.queue._translate(error) from error
