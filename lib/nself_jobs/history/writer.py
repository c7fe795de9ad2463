"""The history writer: drains job events from Redis into PostgreSQL in batches.

Every state change pushes one JSON event onto ``nself:jobs:history`` in the
same Lua script that changes the job, so the list holds each job's creation,
start and end in order. One process at a time holds the writer lease; it reads
a batch from the head of the list, folds it into a few multi-row statements,
commits, and only then trims the batch from the list. A crash between commit
and trim replays the batch, which the statements absorb: inserts are keyed by
ids derived from the job and attempt, and updates converge to the same state.

While PostgreSQL is down the events stay in Redis and nothing is lost; the
writer retries with backoff and logs the outage once, then its end.
"""

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
import redis

from .. import keys
from ..errors import ServiceUnavailable

log = logging.getLogger(__name__)

LEASE_ROLE = "history"
LEASE_TTL_MS = 10_000
BATCH_SIZE = 2000
IDLE_SLEEP_S = 0.1
MAX_BACKOFF_S = 5.0
DEAD_LETTER_KEY = keys.HISTORY_KEY + ":rejected"
# Backlog size at which the writer logs a warning (at most once a minute): PostgreSQL is down or too slow.
BACKLOG_WARNING = 100_000
BACKLOG_WARNING_INTERVAL_S = 60
_ID_NAMESPACE = uuid.UUID("5b0c3f39-6f55-4c4b-9f2b-1f4a5c2e7d10")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_TRIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('LTRIM', KEYS[2], ARGV[2], -1)
return 1
"""


def attempt_id(job_id, attempt, kind):
    """Return the stable id of a job_results or job_failures row."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{job_id}:{attempt}:{kind}"))


def _timestamp(epoch_ms):
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc) if epoch_ms else None


@dataclass
class Changes:
    """One batch of events folded into rows: inserts, per-job updates, results and failures."""

    created: list = field(default_factory=list)
    updates: dict = field(default_factory=dict)
    results: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    accounts: dict = field(default_factory=dict)

    def _update(self, job_id, at_ms):
        row = self.updates.get(job_id)
        if row is None:
            row = dict.fromkeys(("status", "attempts", "started_at", "completed_at", "progress",
                                 "progress_message", "worker_name", "last_error", "run_at"))
            row.update(id=job_id, reopened=False)
            self.updates[job_id] = row
        row["updated_at"] = _timestamp(at_ms)
        return row


def fold_events(events):
    """Fold events, in list order, into a :class:`Changes` batch."""
    changes = Changes()
    for event in events:
        handler = _FOLDERS.get(event.get("e"))
        if handler is not None:
            handler(changes, event)
    return changes


def _fold_created(changes, event):
    changes.accounts[event["id"]] = event.get("account", "primary")
    changes.created.append({
        "id": event["id"], "account": event.get("account", "primary"), "type": event["type"],
        "queue": event["queue"], "status": event["status"], "priority": event["priority"],
        "payload": event["payload"], "options": event.get("options") or {},
        "max_attempts": event["max_attempts"], "delay_ms": event["delay_ms"],
        "timeout_ms": event["timeout_ms"], "created_at": _timestamp(event["t"]),
        "run_at": _timestamp(event.get("run_at")), "unique_key": event.get("unique_key"),
        "schedule_id": event.get("schedule_id"), "scheduled_for": event.get("scheduled_for"),
    })


def _fold_queued(changes, event):
    row = changes._update(event["id"], event["t"])
    row["status"] = "pending"


def _fold_started(changes, event):
    row = changes._update(event["id"], event["t"])
    row.update(status="active", attempts=event["attempt"], started_at=_timestamp(event["t"]),
               worker_name=event.get("worker"), progress=0)
    if row["completed_at"] is None:
        row["reopened"] = True


def _fold_progress(changes, event):
    row = changes._update(event["id"], event["t"])
    row.update(progress=event["progress"], progress_message=event.get("message"))


def _fold_completed(changes, event):
    row = changes._update(event["id"], event["t"])
    row.update(status="completed", completed_at=_timestamp(event["t"]), progress=100, reopened=False)
    changes.results.append({
        "id": attempt_id(event["id"], event["attempt"], "result"), "job_id": event["id"],
        "account": event.get("account", "primary"), "result": event.get("result"),
        "duration_ms": event.get("duration_ms"), "completed_at": _timestamp(event["t"]),
        "attempt": event["attempt"],
    })


def _fold_attempt_failed(changes, event):
    row = changes._update(event["id"], event["t"])
    next_status = event["next"]
    row.update(status=next_status, last_error=event["error"], attempts=event["attempt"])
    if next_status == "failed":
        row.update(completed_at=_timestamp(event["t"]), reopened=False)
    else:
        row.update(run_at=_timestamp(event.get("run_at")))
    changes.failures.append({
        "id": attempt_id(event["id"], event["attempt"], "failure"), "job_id": event["id"],
        "account": event.get("account", "primary"), "attempt": event["attempt"],
        "error": event["error"], "stack": event.get("stack"), "failed_at": _timestamp(event["t"]),
    })


def _fold_cancelled(changes, event):
    row = changes._update(event["id"], event["t"])
    row.update(status="cancelled", completed_at=_timestamp(event["t"]), reopened=False)


def _fold_data_missing(changes, event):
    row = changes._update(event["id"], event["t"])
    row.update(status="failed", completed_at=_timestamp(event["t"]), reopened=False,
               last_error="job data missing from Redis (evicted or deleted); check maxmemory-policy")


def _fold_retried(changes, event):
    row = changes._update(event["id"], event["t"])
    row.update(status="pending", completed_at=None, reopened=True, last_error=None)


_FOLDERS = {
    "created": _fold_created,
    "queued": _fold_queued,
    "started": _fold_started,
    "progress": _fold_progress,
    "completed": _fold_completed,
    "attempt_failed": _fold_attempt_failed,
    "cancelled": _fold_cancelled,
    "retried": _fold_retried,
    "data_missing": _fold_data_missing,
}


class HistoryWriter:
    """Drain history events into PostgreSQL while this process holds the writer lease."""

    def __init__(self, connection, store, name=None, clock=time.time):
        self.redis = connection
        self.store = store
        self.name = name or f"history-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.token = uuid.uuid4().hex
        self._renew = connection.register_script(_RENEW)
        self._trim = connection.register_script(_TRIM)
        self._db = None
        self._outage_since = None
        self._backlog_warned_at = 0.0
        self.last_lag_ms = 0

    # ------------------------------------------------------------ lease

    def acquire_lease(self):
        """Take or renew the writer lease; return True while this writer holds it."""
        lease = keys.lease_key(LEASE_ROLE)
        if self._renew(keys=[lease], args=[self.token, LEASE_TTL_MS]):
            return True
        return bool(self.redis.set(lease, self.token, nx=True, px=LEASE_TTL_MS))

    def release_lease(self):
        lease = keys.lease_key(LEASE_ROLE)
        self.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                        1, lease, self.token)

    # ------------------------------------------------------------ one batch

    def _connection(self):
        if self._db is None or self._db.closed:
            self._db = self.store.connect()
        return self._db

    def drain_once(self):
        """Write one batch; return the number of events written.

        Returns 0 when the list is empty or another writer holds the lease.
        """
        if not self.acquire_lease():
            return 0
        raw_events = self.redis.lrange(keys.HISTORY_KEY, 0, BATCH_SIZE - 1)
        if not raw_events:
            return 0
        events = [json.loads(raw) for raw in raw_events]
        connection = self._connection()
        try:
            with connection.transaction():
                self.store.apply_changes(connection, fold_events(events))
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as error:
            log.error("history batch of %d events rejected by PostgreSQL (%s); writing them one by one",
                      len(events), error)
            self._apply_one_by_one(connection, raw_events, events)
        if self._trim(keys=[keys.lease_key(LEASE_ROLE), keys.HISTORY_KEY], args=[self.token, len(raw_events)]) < 0:
            log.warning("history writer %s lost its lease after a batch; another writer replays it", self.name)
            return 0
        self.last_lag_ms = max(0, int(self.clock() * 1000) - int(events[-1].get("t", 0)))
        return len(events)

    def _apply_one_by_one(self, connection, raw_events, events):
        for raw, event in zip(raw_events, events):
            try:
                with connection.transaction():
                    self.store.apply_changes(connection, fold_events([event]))
            except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as error:
                log.error("history event for job %s rejected (%s); kept in %s", event.get("id"), error, DEAD_LETTER_KEY)
                self.redis.rpush(DEAD_LETTER_KEY, raw)

    def drain_all(self, max_batches=None):
        """Write batches until the list is empty; return the number of events written."""
        written = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            count = self.drain_once()
            if count == 0:
                break
            written += count
            batches += 1
        return written

    # ------------------------------------------------------------ loop

    def _warn_on_backlog(self):
        if self.clock() - self._backlog_warned_at < BACKLOG_WARNING_INTERVAL_S:
            return
        try:
            backlog = self.redis.llen(keys.HISTORY_KEY)
        except redis.RedisError:
            return
        if backlog >= BACKLOG_WARNING:
            self._backlog_warned_at = self.clock()
            log.warning("history backlog is %d events in %s: PostgreSQL is down or slower than the queue; "
                        "the events are kept and written when it catches up", backlog, keys.HISTORY_KEY)

    def _note_outage(self, error):
        if self._outage_since is None:
            self._outage_since = self.clock()
            log.warning("history writer cannot reach PostgreSQL (%s); events stay in Redis until it is back", error)
        if self._db is not None:
            self._db.close()
            self._db = None

    def _note_recovery(self):
        if self._outage_since is not None:
            log.info("history writer reconnected to PostgreSQL after %.1f s", self.clock() - self._outage_since)
            self._outage_since = None

    def run(self, stop_event):
        """Drain until ``stop_event`` is set, then write what is left if this writer holds the lease."""
        backoff_s = IDLE_SLEEP_S
        leader = False
        while not stop_event.is_set():
            try:
                written = self.drain_once()
                leader = written > 0 or self.redis.get(keys.lease_key(LEASE_ROLE)) == self.token
                if not leader:
                    stop_event.wait(1.0)
                    continue
                self._note_recovery()
                backoff_s = IDLE_SLEEP_S
                if written < BATCH_SIZE:
                    stop_event.wait(IDLE_SLEEP_S)
                else:
                    self._warn_on_backlog()
            except (psycopg.Error, ServiceUnavailable, OSError) as error:
                self._note_outage(error)
                self._warn_on_backlog()
                stop_event.wait(backoff_s)
                backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)
            except redis.RedisError as error:
                log.warning("history writer cannot reach Redis (%s); retrying", error)
                stop_event.wait(backoff_s)
                backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)
            except Exception:
                log.exception("history writer failed; retrying in %.1f s", backoff_s)
                stop_event.wait(backoff_s)
                backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)
        self._finish(leader)

    def _finish(self, leader):
        try:
            if leader and self.acquire_lease():
                self.drain_all(max_batches=50)
                self.release_lease()
        except (psycopg.Error, redis.RedisError, ServiceUnavailable, OSError) as error:
            log.warning("history writer stopped with events left in Redis (%s); the next writer writes them", error)
        if self._db is not None:
            self._db.close()

    def start_thread(self, stop_event):
        thread = threading.Thread(target=self.run, args=(stop_event,), name="history-writer", daemon=True)
        thread.start()
        return thread
