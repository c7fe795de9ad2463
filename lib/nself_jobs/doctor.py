"""Invariant checks of the queue, with repairs where they are safe: the ``doctor`` command.

The checks, each named as the command prints it:

    placement   every job id is in exactly one Redis location (a queue list, or the
                scheduled, wip, finished, failed or canceled registry of its RQ queue),
                once, and its hash status names that location
    workers     no running job belongs to a worker whose heartbeat key has expired
    history     PostgreSQL has the same status as Redis for every job still in
                Redis, and no job that PostgreSQL shows as pending, delayed or active
                has lost its Redis data
    schedules   every enabled schedule has a next run time

The placement check reads every location and every job hash in one MULTI
transaction, so it sees one instant and never reports a job that was only moving.
Redis serves no other client while it runs the transaction, which grows with the
number of jobs kept in Redis (docs/fault-runs.md has the time measured with 10,000).

The history check compares only jobs whose history is written: a job with an
event still waiting in ``nself:jobs:history`` is counted as pending, not compared.
It reads Redis, then PostgreSQL, then Redis again, and reports a job only when
its Redis fields did not change between the two reads, so no event can have
reached PostgreSQL in between.

Repairs treat the job hash as the truth, because every Lua script changes a job's
status in the same atomic step as its location. Each placement repair runs in a
WATCH transaction on the job hash, so it is dropped when a worker or operator
changes the job meanwhile.
"""

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import redis

from . import cron, keys
from .errors import ValidationError
from .maintenance import Maintenance
from .settings import QUEUE_NAMES

log = logging.getLogger(__name__)

CHECKS = ("placement", "workers", "history", "schedules")

# Location kinds: the queue list and the five RQ registries of one RQ queue.
KINDS = ("queue", "scheduled", "wip", "finished", "failed", "canceled")
TERMINAL_KINDS = ("finished", "failed", "canceled")
STATUS_OF_KIND = {"queue": "queued", "scheduled": "scheduled", "wip": "started",
                  "finished": "finished", "failed": "failed", "canceled": "canceled"}
KIND_OF_STATUS = {status: kind for kind, status in STATUS_OF_KIND.items()}
# Job hash status (RQ's names) to the status the history and the API use.
HISTORY_STATUS = {"queued": "pending", "scheduled": "delayed", "started": "active",
                  "finished": "completed", "failed": "failed", "canceled": "cancelled"}
UNFINISHED_HISTORY_STATUSES = ("pending", "delayed", "active")

# Hash fields read for every job. The last six change with every history event
# of the job, so equal values in two reads mean that no event came in between.
JOB_FIELDS = ("status", "origin", "nj_type", "worker_name", "nj_timeout_ms",
              "nj_attempts", "nj_progress", "nj_ended_ms", "enqueued_at", "nj_started_ms", "nj_run_at_ms")
VERSION_FIELDS = ("status", "nj_attempts", "nj_progress", "nj_ended_ms", "enqueued_at", "nj_started_ms")

# A finished, failed or cancelled job leaves its registry when its removal time
# passes, and its hash expires at the same moment. So a hash with less time than
# this left and no registry entry is leaving Redis, not misplaced.
LEAVING_MS = 2000
# The history check reads the whole backlog; above this many events it is skipped.
MAX_BACKLOG_EVENTS = 100_000
# Jobs the history check looks up in PostgreSQL per query.
HISTORY_BATCH = 5000
# Unfinished history rows examined for lost Redis data, oldest first.
MAX_UNFINISHED_ROWS = 50_000
SNAPSHOT_ROUNDS = 3
REPAIR_ATTEMPTS = 5
DATA_MISSING_ERROR = "job data missing from Redis (evicted or deleted); check maxmemory-policy"


@dataclass
class Problem:
    """One broken invariant. ``code`` selects the repair, and ``subject`` is a job or schedule id."""

    check: str
    code: str
    subject: str
    message: str
    details: dict = field(default_factory=dict)
    repaired: bool = False
    repair: str | None = None

    def as_dict(self):
        return {"check": self.check, "code": self.code, "subject": self.subject, "message": self.message,
                "repaired": self.repaired, "repair": self.repair}


@dataclass
class Report:
    """The result of one run of every check."""

    problems: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    jobs: int = 0
    compared: int = 0
    pending_history: int = 0
    backlog: int = 0
    schedules: int = 0

    @property
    def clean(self):
        return not self.problems

    def problems_of(self, check):
        return [problem for problem in self.problems if problem.check == check]

    def as_dict(self):
        return {
            "clean": self.clean, "jobs": self.jobs, "historyCompared": self.compared,
            "historyPending": self.pending_history, "historyBacklog": self.backlog,
            "schedulesWithoutNextRun": self.schedules,
            "checks": {name: ("skipped" if name in self.skipped else
                              "ok" if not self.problems_of(name) else "violated") for name in CHECKS},
            "skipped": self.skipped,
            "problems": [problem.as_dict() for problem in self.problems],
        }


def all_locations():
    """Return every (kind, rq_queue) location of the plugin's queues."""
    return [(kind, rq_queue) for queue in QUEUE_NAMES for rq_queue in keys.rq_queue_names(queue) for kind in KINDS]


def location_key(kind, rq_queue):
    return keys.queue_key(rq_queue) if kind == "queue" else keys.registry_key(kind, rq_queue)


def describe_location(location):
    kind, rq_queue = location
    return f"queue list {rq_queue}" if kind == "queue" else f"{kind} registry of {rq_queue}"


@dataclass
class Snapshot:
    """Every location and job hash of the queue, read in one transaction."""

    taken_at: float
    locations: dict
    jobs: dict
    ttl_ms: dict
    backlog: int
    pending_ids: set | None

    def version(self, job_id):
        fields = self.jobs.get(job_id)
        return None if fields is None else tuple(fields.get(name) for name in VERSION_FIELDS)


def _scan_job_ids(connection):
    ids = set()
    for key in connection.scan_iter(match=keys.job_key("*"), count=1000):
        job_id = key[len(keys.job_key("")):]
        if ":" not in job_id:
            ids.add(job_id)
    return ids


def _event_ids(raw_events):
    ids = set()
    for raw in raw_events:
        try:
            job_id = json.loads(raw).get("id")
        except (ValueError, AttributeError):
            continue
        if job_id:
            ids.add(job_id)
    return ids


def take_snapshot(connection, clock=time.time, read_backlog=True):
    """Read every location, job hash and (optionally) the history backlog in one MULTI transaction.

    Job ids come from a SCAN first, which is not atomic, so a job enqueued after
    the SCAN is found only in its location. Such ids are read in a further round,
    up to SNAPSHOT_ROUNDS rounds, and ids still unread after that are left out.
    """
    locations = all_locations()
    job_ids = _scan_job_ids(connection)
    for _ in range(SNAPSHOT_ROUNDS):
        ordered_ids = sorted(job_ids)
        pipeline = connection.pipeline(transaction=True)
        pipeline.time()
        for kind, rq_queue in locations:
            if kind == "queue":
                pipeline.lrange(location_key(kind, rq_queue), 0, -1)
            else:
                pipeline.zrange(location_key(kind, rq_queue), 0, -1, withscores=True)
        for job_id in ordered_ids:
            pipeline.hmget(keys.job_key(job_id), *JOB_FIELDS)
            pipeline.pttl(keys.job_key(job_id))
        pipeline.llen(keys.HISTORY_KEY)
        if read_backlog:
            pipeline.lrange(keys.HISTORY_KEY, 0, MAX_BACKLOG_EVENTS - 1)
        replies = iter(pipeline.execute())

        seconds, microseconds = next(replies)
        taken_at = int(seconds) + int(microseconds) / 1_000_000
        found = {}
        for kind, rq_queue in locations:
            reply = next(replies)
            if kind == "queue":
                members = reply
            else:
                # A terminal entry whose removal time has passed is waiting for the trim, with its hash expired.
                members = [member for member, score in reply if kind not in TERMINAL_KINDS or score > taken_at]
            for job_id in members:
                found.setdefault(job_id, []).append((kind, rq_queue))
        jobs, ttl_ms = {}, {}
        for job_id in ordered_ids:
            values = next(replies)
            ttl_ms[job_id] = next(replies)
            fields = dict(zip(JOB_FIELDS, values))
            jobs[job_id] = fields if fields["nj_type"] is not None else None
        backlog = next(replies)
        pending_ids = None
        if read_backlog:
            raw_events = next(replies)
            if backlog <= MAX_BACKLOG_EVENTS:
                pending_ids = _event_ids(raw_events)

        unread = set(found) - job_ids
        if not unread:
            break
        job_ids |= unread
    for job_id in set(found) - set(jobs):
        del found[job_id]
    return Snapshot(taken_at, found, jobs, ttl_ms, backlog, pending_ids)


# ---------------------------------------------------------------------------- checks


def check_placement(snapshot):
    """Return a Problem for every job that is not in exactly the one location its status names."""
    problems = []
    for job_id in sorted(set(snapshot.jobs) | set(snapshot.locations)):
        fields = snapshot.jobs.get(job_id)
        found = snapshot.locations.get(job_id, [])
        if fields is None:
            if found:
                places = ", ".join(describe_location(place) for place in found)
                problems.append(Problem("placement", "data-missing", job_id,
                                        f"listed in {places} but its job hash is missing", {"found": found}))
            continue
        status, origin = fields["status"], fields["origin"]
        kind = KIND_OF_STATUS.get(status)
        if kind is None or origin is None:
            problems.append(Problem("placement", "unknown-status", job_id,
                                    f"job hash has status {status!r} and origin {origin!r}, which name no location",
                                    {"found": found}))
            continue
        expected = (kind, origin)
        if found == [expected]:
            continue
        ttl = snapshot.ttl_ms.get(job_id, -1)
        if not found and kind in TERMINAL_KINDS and 0 <= ttl <= LEAVING_MS:
            continue
        if not found:
            message = f"status {status} but in no queue or registry, so nothing will run, list or clean it"
        elif len(found) > 1:
            places = ", ".join(describe_location(place) for place in found)
            message = f"in {len(found)} places ({places}); its status {status} names the {describe_location(expected)}"
        else:
            message = f"status {status} but it is in the {describe_location(found[0])}"
        problems.append(Problem("placement", "misplaced", job_id, message, {"found": found}))
    return problems


def check_workers(connection, snapshot):
    """Return a Problem for every running job whose worker's heartbeat key has expired.

    Reads the jobs and heartbeat keys again in one transaction, so a job that
    ended after the snapshot is not reported.
    """
    running = {job_id: fields for job_id, fields in snapshot.jobs.items()
               if fields is not None and fields["status"] == "started"}
    if not running:
        return []
    ordered = sorted(running)
    workers = sorted({fields["worker_name"] or "" for fields in running.values()})
    pipeline = connection.pipeline(transaction=True)
    for job_id in ordered:
        pipeline.hmget(keys.job_key(job_id), "status", "worker_name", "nj_attempts")
    for name in workers:
        pipeline.exists(keys.worker_key(name))
    replies = pipeline.execute()
    alive = {name for name, exists in zip(workers, replies[len(ordered):]) if exists}

    problems = []
    for job_id, (status, worker, attempt) in zip(ordered, replies[:len(ordered)]):
        before = running[job_id]
        if status != "started" or worker != before["worker_name"] or attempt != before["nj_attempts"]:
            continue
        if worker and worker in alive:
            continue
        problems.append(Problem("workers", "worker-lost", job_id,
                                f"running (attempt {attempt}) on worker {worker or '(none)'}, "
                                "whose heartbeat key has expired",
                                {"worker": worker, "attempt": attempt}))
    return problems


def _is_uuid(text):
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


class HistoryCheck:
    """Compare PostgreSQL's job statuses with Redis; see the module docstring for the read order."""

    def __init__(self, connection, store):
        self.redis = connection
        self.store = store

    def _statuses(self, query_name, ids):
        statuses = {}
        for start in range(0, len(ids), HISTORY_BATCH):
            rows = self.store.fetch_all(query_name, {"ids": ids[start:start + HISTORY_BATCH]})
            statuses.update({row["id"]: row["status"] for row in rows})
        return statuses

    def run(self, snapshot, report):
        if snapshot.pending_ids is None:
            report.skipped["history"] = (f"the history backlog holds {snapshot.backlog} events, more than "
                                         f"{MAX_BACKLOG_EVENTS}; compare again once the writer has caught up")
            return []
        pending = snapshot.pending_ids
        in_redis = [job_id for job_id, fields in snapshot.jobs.items() if fields is not None and _is_uuid(job_id)]
        comparable = sorted(job_id for job_id in in_redis if job_id not in pending)
        report.pending_history = len(in_redis) - len(comparable)
        stored = self._statuses("doctor_job_statuses", comparable)
        unfinished = self.store.fetch_all("doctor_unfinished_jobs", {"limit": MAX_UNFINISHED_ROWS})

        mismatched = [job_id for job_id in comparable
                      if stored.get(job_id) != HISTORY_STATUS.get(snapshot.jobs[job_id]["status"])]
        orphaned = [row["id"] for row in unfinished
                    if row["id"] not in snapshot.jobs and row["id"] not in pending]
        if not mismatched and not orphaned:
            report.compared = len(comparable)
            return []

        again = take_snapshot(self.redis, read_backlog=True)
        if again.pending_ids is None:
            report.skipped["history"] = "the history backlog grew past the limit while checking"
            return []
        problems = []
        for job_id in mismatched:
            if job_id in again.pending_ids or again.version(job_id) != snapshot.version(job_id):
                continue  # the job moved on between the reads; it is compared in a later run
            redis_status = HISTORY_STATUS.get(snapshot.jobs[job_id]["status"])
            if job_id in stored:
                message = f"status {stored[job_id]} in PostgreSQL but {redis_status} in Redis"
                code = "history-mismatch"
            else:
                message = f"{redis_status} in Redis but missing from the history in PostgreSQL"
                code = "history-missing"
            problems.append(Problem("history", code, job_id, message,
                                    {"stored": stored.get(job_id), "status": redis_status}))

        candidates = [job_id for job_id in orphaned if again.jobs.get(job_id) is None
                      and job_id not in again.pending_ids]
        # Read PostgreSQL once more: an event written between the first read and the second
        # snapshot may have ended the job, and by now every such event is in PostgreSQL.
        current = self._statuses("doctor_job_statuses", candidates)
        for job_id in candidates:
            status = current.get(job_id)
            if status in UNFINISHED_HISTORY_STATUSES:
                problems.append(Problem("history", "data-lost", job_id,
                                        f"status {status} in PostgreSQL but no data in Redis, "
                                        "so the job will never run or end",
                                        {"stored": status}))
        report.compared = len(comparable)
        return problems


# ---------------------------------------------------------------------------- repairs


class PlacementRepair:
    """Put one job back into exactly the location its hash status names."""

    def __init__(self, connection, settings, clock=time.time):
        self.redis = connection
        self.settings = settings
        self.clock = clock

    def _positions(self, job_id, locations):
        pipeline = self.redis.pipeline(transaction=False)
        for kind, rq_queue in locations:
            if kind == "queue":
                pipeline.lpos(location_key(kind, rq_queue), job_id, count=0)
            else:
                pipeline.zscore(location_key(kind, rq_queue), job_id)
        counts = {}
        for location, reply in zip(locations, pipeline.execute()):
            count = len(reply) if location[0] == "queue" else int(reply is not None)
            if count:
                counts[location] = count
        return counts

    def _score(self, kind, fields, ttl_ms, now):
        """Return the registry score the job would have if the Lua scripts had put it there."""
        if kind == "scheduled":
            return int(fields["nj_run_at_ms"]) / 1000 if fields["nj_run_at_ms"] else now
        if kind == "wip":
            started_s = int(fields["nj_started_ms"]) / 1000 if fields["nj_started_ms"] else now
            return started_s + int(fields["nj_timeout_ms"] or 0) / 1000 + keys.LEASE_GRACE_S
        if ttl_ms is not None and ttl_ms > 0:
            return now + ttl_ms / 1000
        age_ms = self.settings.clean_completed_after_ms if kind == "finished" else self.settings.clean_failed_after_ms
        return now + age_ms / 1000

    def repair(self, job_id):
        """Return a note on what changed, or None when the job changed during every attempt."""
        job_key = keys.job_key(job_id)
        locations = all_locations()
        for _ in range(REPAIR_ATTEMPTS):
            with self.redis.pipeline(transaction=True) as pipeline:
                try:
                    pipeline.watch(job_key)
                    fields = dict(zip(JOB_FIELDS, pipeline.hmget(job_key, *JOB_FIELDS)))
                    ttl_ms = pipeline.pttl(job_key)
                    counts = self._positions(job_id, locations)
                    pipeline.multi()
                    note = self._queue_fixes(pipeline, job_id, fields, ttl_ms, counts)
                    pipeline.execute()
                    return note
                except redis.WatchError:
                    continue
        return None

    def _queue_fixes(self, pipeline, job_id, fields, ttl_ms, counts):
        if fields["nj_type"] is None:
            return self._remove_dangling(pipeline, job_id, counts)
        kind = KIND_OF_STATUS.get(fields["status"])
        if kind is None or fields["origin"] is None:
            return None
        expected = (kind, fields["origin"])
        changes = []
        for location, count in counts.items():
            if location != expected:
                if location[0] == "queue":
                    pipeline.lrem(location_key(*location), 0, job_id)
                else:
                    pipeline.zrem(location_key(*location), job_id)
                changes.append(f"removed from the {describe_location(location)}")
        count = counts.get(expected, 0)
        if kind == "queue" and count > 1:
            # A negative count removes from the tail, so the job keeps its first place in line.
            pipeline.lrem(location_key(*expected), -(count - 1), job_id)
            changes.append(f"removed {count - 1} extra entries from the {describe_location(expected)}")
        elif count == 0:
            if kind == "queue":
                pipeline.rpush(location_key(*expected), job_id)
                pipeline.lpush(keys.WAKEUP_KEY, "1")
                pipeline.ltrim(keys.WAKEUP_KEY, 0, keys.WAKEUP_MAX_TOKENS - 1)
            else:
                pipeline.zadd(location_key(*expected), {job_id: self._score(kind, fields, ttl_ms, self.clock())})
            changes.append(f"added to the {describe_location(expected)}")
        return "; ".join(changes) or "nothing to change any more"

    def _remove_dangling(self, pipeline, job_id, counts):
        for location in counts:
            if location[0] == "queue":
                pipeline.lrem(location_key(*location), 0, job_id)
            else:
                pipeline.zrem(location_key(*location), job_id)
        if any(kind in ("queue", "scheduled", "wip") for kind, _ in counts):
            # The job was accepted but can never run: the history writer records it as failed.
            event = {"e": "data_missing", "id": job_id, "t": int(self.clock() * 1000)}
            pipeline.rpush(keys.HISTORY_KEY, json.dumps(event))
            return "removed the entries; the history records the job as failed (data missing)"
        return "removed the entries"


class Doctor:
    """Run the checks, and with :meth:`repair` fix what is safe to fix.

    ``store`` is a HistoryStore, or None to skip the history check; ``schedules``
    is a ScheduleStore, or None to skip the schedules check.
    """

    def __init__(self, connection, settings, store=None, schedules=None, clock=time.time):
        self.redis = connection
        self.settings = settings
        self.store = store
        self.schedules = schedules
        self.clock = clock

    def check(self, skipped=None):
        """Run every check and return a :class:`Report`; ``skipped`` maps checks to skip to the reason."""
        report = Report(skipped=dict(skipped or {}))
        run_history = self.store is not None and "history" not in report.skipped
        snapshot = take_snapshot(self.redis, self.clock, read_backlog=run_history)
        report.jobs = sum(1 for fields in snapshot.jobs.values() if fields is not None)
        report.backlog = snapshot.backlog
        report.problems += check_placement(snapshot)
        report.problems += check_workers(self.redis, snapshot)
        if run_history:
            report.problems += HistoryCheck(self.redis, self.store).run(snapshot, report)
        elif "history" not in report.skipped:
            report.skipped["history"] = "no PostgreSQL configured"
        if self.schedules is not None and "schedules" not in report.skipped:
            report.problems += self._check_schedules(report)
        elif "schedules" not in report.skipped:
            report.skipped["schedules"] = "no PostgreSQL configured"
        return report

    def _check_schedules(self, report):
        rows = self.schedules.without_next_run()
        report.schedules = len(rows)
        return [Problem("schedules", "no-next-run", str(row["id"]),
                        f"schedule {row['name']} is enabled but has no next run time, so it never fires",
                        {"cron": row["cron_expression"], "timezone": row["timezone"], "name": row["name"]})
                for row in rows]

    def repair(self, report):
        """Repair the problems of ``report`` in place: set ``repaired`` and ``repair`` on each."""
        placement = PlacementRepair(self.redis, self.settings, self.clock)
        for problem in report.problems_of("placement"):
            if problem.code == "unknown-status":
                problem.repair = "not repaired: the status names no location, so the right one is unknown"
                continue
            note = placement.repair(problem.subject)
            problem.repaired = note is not None
            problem.repair = note or "not repaired: the job kept changing; run doctor again"

        lost = report.problems_of("workers")
        if lost:
            recovered = set(Maintenance(self.redis, self.settings, self.clock).recover_lost_jobs())
            for problem in lost:
                problem.repaired = problem.subject in recovered
                problem.repair = ("attempt ended as \"worker lost\"; the retry rules queue it again or fail it"
                                  if problem.repaired else "not repaired: the job ended or moved meanwhile")

        for problem in report.problems_of("history"):
            self._repair_history(problem)
        for problem in report.problems_of("schedules"):
            self._repair_schedule(problem)
        for problem in report.problems:
            log.info("doctor: %s %s: %s; %s", problem.check, problem.subject, problem.message, problem.repair)

    def _update_status(self, job_id, seen, status, last_error=None):
        rows = self.store.fetch_all("doctor_correct_status",
                                    {"id": job_id, "seen": seen, "status": status, "last_error": last_error})
        return bool(rows)

    def _repair_history(self, problem):
        job_id = problem.subject
        if problem.code == "history-mismatch":
            problem.repaired = self._update_status(job_id, problem.details["stored"], problem.details["status"])
            problem.repair = (f"set the history status to {problem.details['status']}" if problem.repaired
                              else "not repaired: the history writer changed the row meanwhile")
        elif problem.code == "history-missing":
            problem.repaired = self._insert_history_row(job_id)
            problem.repair = ("inserted the history row from the Redis data; earlier attempts are not in it"
                              if problem.repaired else "not repaired: the job left Redis meanwhile")
        elif problem.code == "data-lost":
            problem.repaired = self._update_status(job_id, problem.details["stored"], "failed", DATA_MISSING_ERROR)
            problem.repair = ("marked failed in the history: " + DATA_MISSING_ERROR if problem.repaired
                              else "not repaired: the history writer changed the row meanwhile")

    def _insert_history_row(self, job_id):
        from .history.writer import fold_events
        raw = self.redis.hgetall(keys.job_key(job_id))
        if not raw.get("nj_type"):
            return False
        event = created_event_from_hash(job_id, raw)
        with self.store.connect() as connection:
            with connection.transaction():
                self.store.apply_changes(connection, fold_events([event]))
        return True

    def _repair_schedule(self, problem):
        try:
            schedule = cron.parse(problem.details["cron"], problem.details["timezone"])
            next_run = schedule.next(datetime.fromtimestamp(self.clock(), timezone.utc))
        except ValidationError as error:
            problem.repair = (f"not repaired: the stored cron expression is invalid ({error.field}: {error.message}); "
                              f"fix it with `nself-jobs schedule update {problem.details['name']}`")
            return
        self.schedules.set_first_run(problem.subject, next_run)
        problem.repaired = True
        problem.repair = f"next run set to {next_run.isoformat().replace('+00:00', 'Z')}"


def created_event_from_hash(job_id, raw):
    """Rebuild a job's ``created`` history event from its Redis hash, with its current status."""
    def number(name, default=0):
        value = raw.get(name)
        return int(value) if value not in (None, "") else default

    options = json.loads(raw["nj_options"]) if raw.get("nj_options") else {}
    return {
        "e": "created", "id": job_id, "t": number("nj_created_ms", int(time.time() * 1000)),
        "account": raw.get("nj_account") or "primary", "type": raw["nj_type"], "queue": raw.get("nj_queue"),
        "priority": number("nj_priority", 3), "status": HISTORY_STATUS.get(raw.get("status"), "pending"),
        "payload": json.loads(raw["nj_payload"]) if raw.get("nj_payload") else {}, "options": options,
        "max_attempts": number("nj_max_attempts", 1), "delay_ms": number("nj_delay_ms"),
        "timeout_ms": number("nj_timeout_ms"), "run_at": number("nj_run_at_ms", None),
        "unique_key": raw.get("nj_unique_key") or None, "schedule_id": raw.get("nj_schedule_id") or None,
        "scheduled_for": raw.get("nj_scheduled_for") or None,
    }


__all__ = ["CHECKS", "Doctor", "Problem", "Report", "take_snapshot"]
