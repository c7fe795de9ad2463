"""The queue core: enqueue, look up and count jobs in Redis.

Every state change is one Lua script (see ``lua/``), so a job is always in
exactly one place and its history event is queued in the same atomic step.
The history writer copies those events into PostgreSQL later, so an accepted
job never waits on the database and is never missing from its history.
"""

import json
import time
from datetime import datetime, timezone
from importlib import resources

import redis

from . import keys
from .errors import ServiceUnavailable
from .settings import QUEUE_NAMES, mask_url

EXECUTE_FUNCTION = "nself_jobs.worker.execute_job"


def load_script(name):
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def step_script():
    """Compose settle.lua and claim.lua into one script that ends an attempt and claims the next job.

    KEYS are the five settle keys followed by the claim keys; ARGV[1] is the number
    of settle arguments, followed by those and then the claim arguments. The reply
    is ``{recorded, claimed}``, or ``{recorded}`` when no job is waiting.
    """
    return "\n".join([
        "local function settle(KEYS, ARGV)", load_script("settle"), "end",
        "local function claim(KEYS, ARGV)", load_script("claim"), "end",
        load_script("step"),
    ])


def rq_time(epoch_s):
    """Format an epoch time the way RQ stores timestamps."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_ms(epoch_ms):
    """Format epoch milliseconds as an ISO 8601 UTC string, or None."""
    if epoch_ms in (None, ""):
        return None
    return datetime.fromtimestamp(int(epoch_ms) / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def connect_redis(url):
    """Open a Redis client with decoded replies; errors surface on first use."""
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                socket_connect_timeout=5, socket_keepalive=True)


def redis_target(url):
    """Return ``host:port`` (or the socket path) of a Redis URL, for messages."""
    client_kwargs = redis.connection.parse_url(url)
    if "path" in client_kwargs:
        return client_kwargs["path"]
    return f"{client_kwargs.get('host', 'localhost')}:{client_kwargs.get('port', 6379)}"


class JobQueue:
    """Enqueue and inspect jobs in one Redis database."""

    def __init__(self, connection, settings, clock=time.time):
        self.redis = connection
        self.settings = settings
        self.clock = clock
        self._enqueue = connection.register_script(load_script("enqueue"))

    @classmethod
    def from_settings(cls, settings):
        return cls(connect_redis(settings.redis_url), settings)

    def _translate(self, error):
        return ServiceUnavailable("Redis", redis_target(self.settings.redis_url), str(error) or type(error).__name__)

    # ------------------------------------------------------------ enqueue

    def _job_fields(self, spec, now_s, now_ms):
        rq_queue = keys.rq_queue_name(spec.queue, spec.priority_name)
        timeout_s = max(1, -(-spec.timeout_ms // 1000))
        fields = {
            "data": json.dumps([EXECUTE_FUNCTION, None, [spec.id], {}]),
            "created_at": rq_time(now_s),
            "enqueued_at": rq_time(now_s),
            "origin": rq_queue,
            "description": spec.description or f"{spec.type} job",
            "timeout": timeout_s,
            "status": "scheduled" if spec.delay_ms else "queued",
            "nj_type": spec.type,
            "nj_queue": spec.queue,
            "nj_priority": spec.priority,
            "nj_payload": json.dumps(spec.payload, ensure_ascii=False, allow_nan=False),
            "nj_options": json.dumps(spec.options(), ensure_ascii=False),
            "nj_attempts": 0,
            "nj_max_attempts": spec.max_attempts,
            "nj_retries": spec.max_attempts - 1,
            "nj_timeout_ms": spec.timeout_ms,
            "nj_retry_delay_ms": spec.retry_delay_ms,
            "nj_backoff": spec.backoff,
            "nj_delay_ms": spec.delay_ms,
            "nj_progress": 0,
            "nj_account": spec.account,
            "nj_created_ms": now_ms,
        }
        if spec.delay_ms:
            fields["nj_run_at_ms"] = now_ms + spec.delay_ms
        if spec.unique_key:
            fields["nj_unique_key"] = spec.unique_key
        if spec.schedule_id:
            fields["nj_schedule_id"] = spec.schedule_id
            fields["nj_scheduled_for"] = spec.scheduled_for
        return fields

    def _created_event(self, spec, fields, now_ms):
        return json.dumps({
            "e": "created", "id": spec.id, "t": now_ms, "account": spec.account,
            "type": spec.type, "queue": spec.queue, "priority": spec.priority,
            "status": "delayed" if spec.delay_ms else "pending",
            "payload": spec.payload, "options": spec.options(),
            "max_attempts": spec.max_attempts, "delay_ms": spec.delay_ms, "timeout_ms": spec.timeout_ms,
            "run_at": fields.get("nj_run_at_ms"), "unique_key": spec.unique_key,
            "schedule_id": spec.schedule_id, "scheduled_for": spec.scheduled_for,
        }, ensure_ascii=False, allow_nan=False)

    def _enqueue_call(self, spec, client):
        now_s = self.clock()
        now_ms = int(now_s * 1000)
        fields = self._job_fields(spec, now_s, now_ms)
        rq_queue = fields["origin"]
        if spec.delay_ms:
            target = keys.registry_key("scheduled", rq_queue)
            due = str((now_ms + spec.delay_ms) / 1000)
        else:
            target = keys.queue_key(rq_queue)
            due = ""
        job_key = keys.job_key(spec.id)
        unique = keys.unique_key(spec.unique_key) if spec.unique_key else job_key
        flat = [item for pair in fields.items() for item in pair]
        return self._enqueue(
            keys=[job_key, target, keys.HISTORY_KEY, keys.RQ_PREFIX + "queues", keys.WAKEUP_KEY, unique],
            args=[spec.id, "1" if spec.unique_key else "0", due, self._created_event(spec, fields, now_ms),
                  keys.queue_key(rq_queue), keys.WAKEUP_MAX_TOKENS, *flat],
            client=client,
        )

    def enqueue(self, spec):
        """Enqueue one job; return ``(job_id, created)``, where ``created`` is False for a unique-key hit."""
        try:
            created, job_id = self._enqueue_call(spec, self.redis)
        except redis.RedisError as error:
            raise self._translate(error) from error
        return job_id, bool(int(created))

    def enqueue_many(self, specs):
        """Enqueue jobs in one round trip; each job is atomic on its own. Returns ``(id, created)`` pairs."""
        pipeline = self.redis.pipeline(transaction=False)
        try:
            for spec in specs:
                self._enqueue_call(spec, pipeline)
            replies = pipeline.execute()
        except redis.RedisError as error:
            raise self._translate(error) from error
        return [(job_id, bool(int(created))) for created, job_id in replies]

    # ------------------------------------------------------------ reads

    def eviction_warning(self):
        """Return a warning when Redis may evict queue keys, or None under ``noeviction``.

        Reads ``maxmemory-policy`` with CONFIG GET, or from INFO memory where CONFIG
        is disabled (managed Redis services often disable it).
        """
        try:
            try:
                policy = self.redis.config_get("maxmemory-policy").get("maxmemory-policy")
            except redis.ResponseError:
                policy = self.redis.info("memory").get("maxmemory_policy")
        except redis.RedisError as error:
            raise self._translate(error) from error
        if policy in (None, "noeviction"):
            return None
        return (f"Redis maxmemory-policy is {policy}: Redis may evict queued jobs under memory pressure and they "
                "would be lost. Set maxmemory-policy noeviction (redis.conf, or CONFIG SET maxmemory-policy "
                "noeviction) on the Redis that holds the queue.")

    def get_job(self, job_id):
        """Return a job's live state from Redis as a dict, or None once its hash has expired."""
        try:
            raw = self.redis.hgetall(keys.job_key(job_id))
        except redis.RedisError as error:
            raise self._translate(error) from error
        if not raw or "nj_type" not in raw:
            return None
        return job_from_hash(job_id, raw)

    def counts(self, queues=QUEUE_NAMES):
        """Return ``{queue: {waiting, active, delayed, completed, failed, cancelled, paused}}``."""
        now = self.clock()
        pipeline = self.redis.pipeline(transaction=False)
        for queue in queues:
            for rq_queue in keys.rq_queue_names(queue):
                pipeline.llen(keys.queue_key(rq_queue))
                pipeline.zcard(keys.registry_key("wip", rq_queue))
                pipeline.zcard(keys.registry_key("scheduled", rq_queue))
                pipeline.zcount(keys.registry_key("finished", rq_queue), now, "+inf")
                pipeline.zcount(keys.registry_key("failed", rq_queue), now, "+inf")
                pipeline.zcount(keys.registry_key("canceled", rq_queue), now, "+inf")
            pipeline.sismember(keys.PAUSED_KEY, queue)
        try:
            replies = iter(pipeline.execute())
        except redis.RedisError as error:
            raise self._translate(error) from error

        states = ("waiting", "active", "delayed", "completed", "failed", "cancelled")
        result = {}
        for queue in queues:
            totals = dict.fromkeys(states, 0)
            for _ in keys.PRIORITIES:
                for state in states:
                    totals[state] += int(next(replies))
            totals["paused"] = bool(next(replies))
            result[queue] = totals
        return result


_STATUS_NAMES = {
    "queued": "pending", "scheduled": "delayed", "started": "active",
    "finished": "completed", "failed": "failed", "canceled": "cancelled",
}


def _json_field(raw, name, default=None):
    value = raw.get(name)
    return default if value in (None, "") else json.loads(value)


def job_from_hash(job_id, raw):
    """Turn a job hash into the API's job shape."""
    return {
        "id": job_id,
        "type": raw.get("nj_type"),
        "queue": raw.get("nj_queue"),
        "status": _STATUS_NAMES.get(raw.get("status"), raw.get("status")),
        "priority": int(raw.get("nj_priority", 0)),
        "payload": _json_field(raw, "nj_payload", {}),
        "options": _json_field(raw, "nj_options", {}),
        "progress": int(raw.get("nj_progress") or 0),
        "progressMessage": raw.get("nj_progress_message") or None,
        "attempts": int(raw.get("nj_attempts") or 0),
        "maxAttempts": int(raw.get("nj_max_attempts") or 1),
        "result": _json_field(raw, "nj_result"),
        "error": raw.get("nj_error") or None,
        "createdAt": iso_ms(raw.get("nj_created_ms")),
        "startedAt": iso_ms(raw.get("nj_started_ms")),
        "completedAt": iso_ms(raw.get("nj_ended_ms")),
        "runAt": iso_ms(raw.get("nj_run_at_ms")),
        "worker": raw.get("worker_name") or None,
        "account": raw.get("nj_account", "primary"),
    }


__all__ = ["JobQueue", "connect_redis", "job_from_hash", "mask_url", "redis_target"]
