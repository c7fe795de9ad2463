"""Recurring jobs: schedule requests, the schedule service, and the scheduler loop.

Schedules live in PostgreSQL (``job_schedules``). Each schedule keeps a cursor,
``next_run_at``: the first occurrence that no scheduler has handled yet. Every
worker command and ``up`` runs a scheduler thread, and the one that holds the
Redis lease ``nself:jobs:lease:scheduler`` fires due occurrences. Three guards
make each occurrence fire at most once:

1. The lease is taken with ``SET NX PX`` and a random token and renewed by a
   compare-and-set script. Taking it increments the fencing counter
   ``nself:jobs:lease:scheduler:fence``, and the new holder keeps that number
   as its fence.
2. One Lua script fires an occurrence. It checks that the lease still holds
   this scheduler's token and that the fencing counter still equals its fence,
   claims ``nself:jobs:occurrence:<schedule id>:<epoch s>`` with SET NX, and
   enqueues the job. A scheduler that lost its lease in the middle of a pass
   cannot enqueue anything, and a claimed occurrence is never enqueued again.
3. The unique index on ``jobs(schedule_id, scheduled_for)`` keeps a second
   history row for one occurrence out of PostgreSQL.

After a pass has enqueued a schedule's runs, it moves ``next_run_at`` on with a
compare-and-set update and records misses in the same transaction. A crash in
between repeats the pass, and the claims turn the repeated fires into no-ops.

Other Redis keys: ``nself:jobs:schedule:<schedule id>:last-job`` holds the job
id of the schedule's latest run, for the overlap policy.

An occurrence is on time when a scheduler fires it within ``late_after`` of
its time: the lease TTL plus 5 s, so 20 s by default. That covers the takeover
after a scheduler dies. Older occurrences were missed while no scheduler ran
(a misfire), and the schedule's misfire policy decides whether they still run.
"""

import dataclasses
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import redis

from . import cron, keys
from .errors import ConfigError, NotFound, ServiceUnavailable, ValidationError
from .history import HistoryStore
from .history.schedules import ScheduleStore
from .jobspec import MAX_DELAY_MS, parse_job_request
from .queue import JobQueue, connect_redis, load_script

log = logging.getLogger(__name__)

UTC = timezone.utc

LEASE_ROLE = "scheduler"
FENCE_KEY = keys.lease_key(LEASE_ROLE) + ":fence"
LEASE_TTL_MS = 15_000
# Added to the lease TTL to get late_after: one poll interval plus slack for a slow pass.
LATE_MARGIN_S = 5
POLL_S = 1.0
# Longest wait between failed passes, kept short because occurrences become misses after late_after.
MAX_BACKOFF_S = 5.0
# An occurrence claim only has to outlive the pass that made it and a repeat of that pass.
CLAIM_TTL_MS = 3 * 86_400_000
# Longer than the maximum job timeout of 7 days, so a run that is still active keeps blocking.
LAST_JOB_TTL_MS = 8 * 86_400_000
# Occurrences that one pass looks at per schedule, so that a long outage of a
# per-second schedule is worked through in several short passes (about 0.1 s each).
# NOTE: every missed occurrence is counted one by one, so a per-second schedule
# that missed a year takes about 3,000 passes and writes as many miss records.
MAX_OCCURRENCES_PER_PASS = 10_000
DUE_BATCH_SIZE = 100
RECENT_LIMIT = 10

MISFIRE_POLICIES = ("skip", "run-once", "run-all")
OVERLAP_POLICIES = ("allow", "skip")
SCHEDULE_FIELDS = ("name", "type", "cron", "timezone", "queue", "payload", "options", "description", "enabled",
                   "misfirePolicy", "misfireGraceMs", "overlapPolicy")
# Job options that do not apply to the runs of a schedule, with the reason.
_REJECTED_JOB_OPTIONS = {
    "delay": "a schedule's runs start at their cron times",
    "jobId": "every run of a schedule is a new job",
    "uniqueKey": "every run of a schedule is a new job",
    "description": "use the schedule's description field",
}
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# GET /api/schedules/preview previews an expression, so no schedule may take that name.
RESERVED_NAMES = ("preview",)
MAX_DESCRIPTION_LENGTH = 1000
DEFAULT_PREVIEW_COUNT = 5

_ONE_SECOND = timedelta(seconds=1)


def occurrence_key(schedule_id, scheduled_for):
    return f"nself:jobs:occurrence:{schedule_id}:{int(scheduled_for.timestamp())}"


def last_job_key(schedule_id):
    return f"nself:jobs:schedule:{schedule_id}:last-job"


def iso(moment):
    """Format an aware datetime as ISO 8601 UTC with a ``Z``, or return None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_datetime(epoch_s):
    return datetime.fromtimestamp(epoch_s, UTC)


# ---------------------------------------------------------------------------
# Schedule requests
# ---------------------------------------------------------------------------


def default_timezone(settings):
    """Return JOBS_SCHEDULE_TIMEZONE, or UTC when it is unset. Raise ConfigError for an unknown zone."""
    name = settings.env.str("JOBS_SCHEDULE_TIMEZONE", "UTC")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("JOBS_SCHEDULE_TIMEZONE", name, "an IANA time zone name such as Europe/Berlin") from None
    return name


def _parse_name(value):
    if not isinstance(value, str) or not value:
        raise ValidationError("name", "missing: give the schedule a name such as nightly-backup")
    if not _NAME_PATTERN.fullmatch(value):
        raise ValidationError("name", f"invalid name {value!r}: use letters, digits, '.', '_' and '-', "
                                      "starting with a letter or digit, at most 255 characters")
    if value in RESERVED_NAMES:
        raise ValidationError("name", f"{value!r} is reserved by the REST API; choose another name")
    return value


def _parse_job_options(options):
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValidationError("options", "expected a JSON object")
    for name, reason in _REJECTED_JOB_OPTIONS.items():
        if name in options:
            raise ValidationError(f"options.{name}", f"not supported for schedules: {reason}")
    return dict(options)


def _parse_choice(body, name, allowed, default):
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise ValidationError(name, f"unknown value {value!r}: expected one of {', '.join(allowed)}")
    return value


def _parse_grace(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DELAY_MS:
        raise ValidationError("misfireGraceMs", f"expected a whole number of ms from 0 to {MAX_DELAY_MS}, "
                                                f"or null for no limit, got {value!r}")
    return value


def _parse_description(value):
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LENGTH:
        raise ValidationError("description", f"expected a string of at most {MAX_DESCRIPTION_LENGTH} characters")
    return value or None


def parse_schedule_request(body, settings, account="primary"):
    """Validate a schedule request and return the row to store, or raise ValidationError naming the field.

    The job part (type, queue, payload, options) is validated as a job request,
    so the payload passes the job type's own validator. The cron expression is
    checked by ``cron.parse``, whose errors name the field (``cron.minute``).
    """
    if not isinstance(body, dict):
        raise ValidationError("body", "expected a JSON object with name, type, cron and payload")
    unknown = sorted(set(body) - set(SCHEDULE_FIELDS))
    if unknown:
        raise ValidationError(unknown[0], "unknown field; expected " + ", ".join(SCHEDULE_FIELDS))

    name = _parse_name(body.get("name"))
    timezone_name = body.get("timezone")
    if timezone_name is None:
        timezone_name = default_timezone(settings)
    if body.get("cron") is None:
        raise ValidationError("cron", "missing: give a cron expression such as '0 3 * * *'")
    schedule = cron.parse(body["cron"], timezone_name)

    options = _parse_job_options(body.get("options"))
    job = parse_job_request({"type": body.get("type"), "queue": body.get("queue", "default"),
                             "payload": body.get("payload", {}), "options": options}, settings, account)

    misfire_policy = _parse_choice(body, "misfirePolicy", MISFIRE_POLICIES, "run-once")
    misfire_grace_ms = _parse_grace(body.get("misfireGraceMs"))
    if misfire_policy == "run-all" and misfire_grace_ms is None:
        raise ValidationError("misfireGraceMs", "required with misfirePolicy run-all: give the window in ms "
                                                "within which missed occurrences still run")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError("enabled", f"expected true or false, got {enabled!r}")

    return {
        "name": name, "type": job.type, "queue": job.queue, "cron": schedule.expression,
        "timezone": schedule.timezone, "payload": job.payload, "options": options,
        "description": _parse_description(body.get("description")), "enabled": enabled,
        "misfire_policy": misfire_policy, "misfire_grace_ms": misfire_grace_ms,
        "overlap_policy": _parse_choice(body, "overlapPolicy", OVERLAP_POLICIES, "allow"),
        "account": account,
    }


def parse_count(value, default=DEFAULT_PREVIEW_COUNT):
    """Validate a preview count from JSON, a query string or the CLI, or raise ValidationError naming ``count``."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cron.PREVIEW_MAX_COUNT:
        raise ValidationError("count", f"expected a whole number from 1 to {cron.PREVIEW_MAX_COUNT}, got {value!r}")
    return value


# ---------------------------------------------------------------------------
# API shapes
# ---------------------------------------------------------------------------


def schedule_to_api(row):
    """Turn a ``job_schedules`` row into the shape of the REST API and ``--json``."""
    return {
        "id": str(row["id"]), "name": row["name"], "type": row["type"], "queue": row["queue"],
        "cron": row["cron_expression"], "timezone": row["timezone"], "payload": row["payload"],
        "options": row["options"], "description": row["description"], "enabled": row["enabled"],
        "misfirePolicy": row["misfire_policy"], "misfireGraceMs": row["misfire_grace_ms"],
        "overlapPolicy": row["overlap_policy"], "lastRunAt": iso(row["last_run_at"]),
        "nextRunAt": iso(row["next_run_at"]), "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]), "account": row["source_account_id"],
    }


def _request_body(row):
    """Return the request that would create ``row``, the base that an update changes."""
    shape = schedule_to_api(row)
    return {name: shape[name] for name in SCHEDULE_FIELDS}


def _run_to_api(row):
    return {"id": str(row["id"]), "status": row["status"], "scheduledFor": iso(row["scheduled_for"]),
            "createdAt": iso(row["created_at"]), "completedAt": iso(row["completed_at"])}


def _miss_to_api(row):
    return {
        "reason": row["reason"], "firstScheduledFor": iso(row["first_scheduled_for"]),
        "lastScheduledFor": iso(row["last_scheduled_for"]), "missedCount": row["missed_count"],
        "lateRuns": row["late_runs"], "jobId": str(row["job_id"]) if row["job_id"] else None,
        "detail": row["detail"], "recordedAt": iso(row["recorded_at"]),
    }


def build_job_spec(row, settings, scheduled_for, late=False, manual=False):
    """Build the JobSpec of one run of a schedule, or raise ValidationError when the stored job is invalid now.

    For a run-now (``manual``), ``scheduled_for`` is the time of the request.
    The description names the schedule and marks late and manual runs.
    """
    body = {"type": row["type"], "queue": row["queue"], "payload": row["payload"], "options": row["options"]}
    spec = parse_job_request(body, settings, account=row["source_account_id"])
    spec.schedule_id = str(row["id"])
    spec.scheduled_for = iso(scheduled_for)
    spec.description = _run_description(row["name"], scheduled_for, late, manual)
    return spec


def _run_description(name, scheduled_for, late, manual=False):
    if manual:
        return f"schedule {name} (run now)"
    if late:
        return f"schedule {name} (late run for {iso(scheduled_for)})"
    return f"schedule {name}"


# ---------------------------------------------------------------------------
# Schedule service: the operations behind the CLI and the REST API
# ---------------------------------------------------------------------------


def _first_run(row, now):
    """Return the first occurrence after ``now`` of an enabled schedule, or None when disabled."""
    if not row["enabled"]:
        return None
    return cron.parse(row["cron"], row["timezone"]).next(now)


def _next_run_after_update(current, row, now):
    """Keep the stored next_run_at unless the update changed the timing or enabled the schedule."""
    if not row["enabled"]:
        return None
    timing_changed = (row["cron"], row["timezone"]) != (current["cron_expression"], current["timezone"])
    if timing_changed or not current["enabled"] or current["next_run_at"] is None:
        return _first_run(row, now)
    return current["next_run_at"]


def _stored_definition(row):
    """Return a stored row in the shape that ScheduleStore.update takes, without validating it again."""
    return {
        "type": row["type"], "queue": row["queue"], "cron": row["cron_expression"], "timezone": row["timezone"],
        "payload": row["payload"], "options": row["options"], "description": row["description"],
        "enabled": row["enabled"], "misfire_policy": row["misfire_policy"],
        "misfire_grace_ms": row["misfire_grace_ms"], "overlap_policy": row["overlap_policy"],
    }


class ScheduleService:
    """Create, change, list, preview and run schedules."""

    def __init__(self, settings, schedules, queue, clock=time.time):
        self.settings = settings
        self.schedules = schedules
        self.queue = queue
        self.clock = clock

    @classmethod
    def from_settings(cls, settings):
        store = ScheduleStore(HistoryStore.from_settings(settings))
        return cls(settings, store, JobQueue.from_settings(settings))

    def _now(self):
        return _to_datetime(self.clock())

    def _row(self, name):
        row = self.schedules.get(name)
        if row is None:
            raise NotFound(f"schedule {name!r} not found")
        return row

    def list_schedules(self):
        return [schedule_to_api(row) for row in self.schedules.list_all()]

    def get(self, name):
        return schedule_to_api(self._row(name))

    def details(self, name):
        """Return a schedule with its latest runs and miss records."""
        row = self._row(name)
        result = schedule_to_api(row)
        result["recentRuns"] = [_run_to_api(run) for run in self.schedules.recent_runs(row["id"], RECENT_LIMIT)]
        result["misses"] = [_miss_to_api(miss) for miss in self.schedules.misses(row["id"], RECENT_LIMIT)]
        return result

    def create(self, body, account="primary"):
        """Validate and store a new schedule, or raise Conflict when the name is taken."""
        row = parse_schedule_request(body, self.settings, account)
        now = self._now()
        row["id"] = str(uuid.uuid4())
        row["next_run_at"] = _first_run(row, now)
        stored = self.schedules.insert(row, now)
        log.info("schedule %s created: %r in %s, next run %s", row["name"], row["cron"], row["timezone"],
                 iso(row["next_run_at"]))
        return schedule_to_api(stored)

    def update(self, name, changes):
        """Apply the fields in ``changes`` to schedule ``name`` and validate the whole result again."""
        if not isinstance(changes, dict):
            raise ValidationError("body", "expected a JSON object with the fields to change")
        if "name" in changes and changes["name"] != name:
            raise ValidationError("name", "a schedule cannot be renamed: create one under the new name "
                                          "and delete this one")
        current = self._row(name)
        body = _request_body(current)
        body.update(changes)
        row = parse_schedule_request(body, self.settings, current["source_account_id"])
        now = self._now()
        row["next_run_at"] = _next_run_after_update(current, row, now)
        return self._store_update(name, row, now)

    def set_enabled(self, name, enabled):
        """Enable or disable a schedule. Enabling validates it again and fires from the next occurrence on."""
        if enabled:
            return self.update(name, {"enabled": True})
        row = _stored_definition(self._row(name))
        row.update(enabled=False, next_run_at=None)
        return self._store_update(name, row, self._now())

    def _store_update(self, name, row, now):
        stored = self.schedules.update(name, row, now)
        if stored is None:
            raise NotFound(f"schedule {name!r} not found")
        log.info("schedule %s updated: %r in %s, %s, next run %s", name, row["cron"], row["timezone"],
                 "enabled" if row["enabled"] else "disabled", iso(row["next_run_at"]))
        return schedule_to_api(stored)

    def delete(self, name):
        schedule_id = self.schedules.delete(name)
        if schedule_id is None:
            raise NotFound(f"schedule {name!r} not found")
        log.info("schedule %s deleted", name)
        return {"name": name, "id": str(schedule_id), "deleted": True}

    def run_now(self, name):
        """Enqueue one run of a schedule now, outside its cron times, and return the job id."""
        row = self._row(name)
        now = self._now()
        # scheduled_for keeps its microseconds, so it cannot take the unique
        # (schedule_id, scheduled_for) slot of a cron occurrence, which is a whole second.
        job_id, _ = self.queue.enqueue(build_job_spec(row, self.settings, now, manual=True))
        self.schedules.mark_run(row["id"], now)
        log.info("schedule %s: job %s enqueued by run-now", name, job_id)
        return {"id": job_id, "schedule": name, "type": row["type"], "queue": row["queue"]}

    def preview(self, name, count=None):
        """Return the next fire times of a stored schedule."""
        row = self._row(name)
        return self.preview_expression(row["cron_expression"], row["timezone"], count)

    def preview_expression(self, expression, timezone_name=None, count=None):
        """Return the next ``count`` fire times of an expression, in UTC and in its time zone."""
        count = parse_count(count)
        if timezone_name is None:
            timezone_name = default_timezone(self.settings)
        schedule = cron.parse(expression, timezone_name)
        times = schedule.next_n(self._now(), count)
        zone = ZoneInfo(schedule.timezone)
        return {"cron": schedule.expression, "timezone": schedule.timezone, "count": count,
                "times": [iso(moment) for moment in times],
                "localTimes": [moment.astimezone(zone).isoformat() for moment in times]}


# ---------------------------------------------------------------------------
# Planning one pass over one schedule
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One occurrence to enqueue; ``late`` marks a run after a misfire."""

    scheduled_for: datetime
    late: bool


@dataclass
class Plan:
    """The outcome of one pass over one schedule: runs, missed occurrences and the new cursor."""

    runs: list = field(default_factory=list)
    missed_count: int = 0
    first_missed: datetime | None = None
    last_missed: datetime | None = None
    # The first occurrence this pass leaves for later, or None when the schedule never fires again.
    next_run_at: datetime | None = None


def _due_occurrences(schedule, next_run_at, now, limit):
    """Return the occurrences from ``next_run_at`` up to ``now`` (at most ``limit``) and the one after them."""
    due = []
    try:
        moment = schedule.next(next_run_at - _ONE_SECOND)
        while moment <= now and len(due) < limit:
            due.append(moment)
            moment = schedule.next(moment)
    except cron.NoOccurrence:
        moment = None
    return due, moment


def _late_runs(missed, now, misfire_policy, grace, more_missed_follow):
    """Pick the missed occurrences that still run: none, the latest within grace, or all within grace."""
    within_grace = [moment for moment in missed if grace is None or now - moment <= grace]
    if misfire_policy == "run-all":
        return within_grace
    # The coalesced run belongs to the latest missed occurrence, so a pass that
    # leaves missed occurrences for the next pass does not run one.
    if misfire_policy == "run-once" and within_grace and not more_missed_follow:
        return within_grace[-1:]
    return []


def plan_occurrences(schedule, next_run_at, now, misfire_policy, grace, late_after,
                     limit=MAX_OCCURRENCES_PER_PASS):
    """Decide which due occurrences of a schedule run in this pass and which were missed.

    ``next_run_at`` is the first occurrence not handled yet, so the next run is
    always computed from the previous occurrence, never from when a run
    finished. Occurrences older than ``now - late_after`` were missed. Of those,
    ``skip`` runs none, ``run-once`` runs the latest one within ``grace`` and
    ``run-all`` runs every one within ``grace`` (a timedelta, or None for no
    limit). Every missed occurrence is counted in the plan, including those that
    run late. Occurrences newer than ``now - late_after`` run on time.
    """
    due, following = _due_occurrences(schedule, next_run_at, now, limit)
    late_before = now - late_after
    missed = [moment for moment in due if moment < late_before]
    on_time = due[len(missed):]

    plan = Plan(next_run_at=following)
    if missed:
        plan.missed_count = len(missed)
        plan.first_missed = missed[0]
        plan.last_missed = missed[-1]
        more_missed_follow = following is not None and following < late_before
        late = _late_runs(missed, now, misfire_policy, grace, more_missed_follow)
        plan.runs = [PlannedRun(moment, late=True) for moment in late]
    plan.runs += [PlannedRun(moment, late=False) for moment in on_time]
    return plan


@dataclass
class MissRecord:
    """Occurrences that did not run on time: one future ``job_schedule_misses`` row."""

    reason: str
    first_scheduled_for: datetime
    last_scheduled_for: datetime
    missed_count: int
    late_runs: int = 0
    job_id: str | None = None
    detail: str | None = None


# ---------------------------------------------------------------------------
# The lease
# ---------------------------------------------------------------------------

_ACQUIRE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SchedulerLease:
    """The scheduler lease in Redis and this process's fencing token while it holds it."""

    def __init__(self, connection, owner, ttl_ms):
        self.key = keys.lease_key(LEASE_ROLE)
        self.owner = owner
        self.token = f"{owner} {uuid.uuid4().hex}"
        self.ttl_ms = ttl_ms
        # The fencing counter's value when this process took the lease, or None while it does not hold it.
        self.fence = None
        self._acquire = connection.register_script(_ACQUIRE_SCRIPT)
        self._renew = connection.register_script(_RENEW_SCRIPT)
        self._release = connection.register_script(_RELEASE_SCRIPT)

    def hold(self):
        """Renew the lease, or take it when it is free, and return whether this process holds it."""
        if self.fence is not None:
            if self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
                return True
            self.mark_lost()
        fence = self._acquire(keys=[self.key, FENCE_KEY], args=[self.token, self.ttl_ms])
        if not fence:
            return False
        self.fence = int(fence)
        log.info("scheduler %s took the scheduler lease (fence %d)", self.owner, self.fence)
        return True

    def mark_lost(self):
        if self.fence is not None:
            log.warning("scheduler %s lost the scheduler lease (fence %d); another scheduler fires "
                        "occurrences now", self.owner, self.fence)
        self.fence = None

    def release(self):
        if self.fence is None:
            return
        self._release(keys=[self.key], args=[self.token])
        log.info("scheduler %s released the scheduler lease (fence %d)", self.owner, self.fence)
        self.fence = None


# ---------------------------------------------------------------------------
# Firing an occurrence
# ---------------------------------------------------------------------------

# Prepended to enqueue.lua, so that the lease check, the claim and the enqueue are one atomic step.
_FIRE_SCRIPT_PREFIX = """
-- Fire one occurrence of a schedule.
--
-- KEYS[1..6] as in enqueue.lua   KEYS[7] scheduler lease   KEYS[8] fencing counter
-- KEYS[9] occurrence claim       KEYS[10] the schedule's last job id
-- ARGV as in enqueue.lua, followed by: lease token, fence, claim TTL ms,
-- last-job TTL ms, overlap policy. These five are removed here, so that the
-- enqueue.lua part sees its own arguments only.
--
-- Returns {1, job id} when enqueued, {-1, ''} when the lease is lost,
-- {-2, claim} when the occurrence is already claimed, and {-3, job id} when
-- overlap policy 'skip' finds that job of an earlier run still waiting or active.
local overlap_policy = table.remove(ARGV)
local last_job_ttl = table.remove(ARGV)
local claim_ttl = table.remove(ARGV)
local fence = table.remove(ARGV)
local token = table.remove(ARGV)

if redis.call('GET', KEYS[7]) ~= token or redis.call('GET', KEYS[8]) ~= fence then
  return {-1, ''}
end
local claim = redis.call('GET', KEYS[9])
if claim then
  return {-2, claim}
end
if overlap_policy == 'skip' then
  local previous = redis.call('GET', KEYS[10])
  if previous then
    local state = redis.call('HGET', 'rq:job:' .. previous, 'status')
    if state == 'queued' or state == 'scheduled' or state == 'started' then
      redis.call('SET', KEYS[9], 'skipped for ' .. previous, 'PX', claim_ttl)
      return {-3, previous}
    end
  end
end
redis.call('SET', KEYS[9], ARGV[1], 'PX', claim_ttl)
redis.call('SET', KEYS[10], ARGV[1], 'PX', last_job_ttl)

"""
FIRED, LEASE_LOST, ALREADY_CLAIMED, OVERLAP_SKIPPED = 1, -1, -2, -3
# Start of the claim value of an occurrence that overlap policy skip skipped; other claims are job ids.
_SKIPPED_CLAIM_PREFIX = "skipped for "


def _enqueue_arguments(queue, spec):
    """Return the KEYS and ARGV of enqueue.lua for a job that starts now, as JobQueue.enqueue builds them."""
    now_s = queue.clock()
    now_ms = int(now_s * 1000)
    fields = queue._job_fields(spec, now_s, now_ms)
    rq_queue = fields["origin"]
    job_key = keys.job_key(spec.id)
    script_keys = [job_key, keys.queue_key(rq_queue), keys.HISTORY_KEY, keys.RQ_PREFIX + "queues",
                   keys.WAKEUP_KEY, job_key]
    flat_fields = [item for pair in fields.items() for item in pair]
    script_args = [spec.id, "0", "", queue._created_event(spec, fields, now_ms), keys.queue_key(rq_queue),
                   keys.WAKEUP_MAX_TOKENS, *flat_fields]
    return script_keys, script_args


class _LeaseLost(Exception):
    """Raised inside a pass when the fire script finds that another scheduler holds the lease."""


@dataclass
class _PassResult:
    enqueued: list = field(default_factory=list)
    late_job_ids: list = field(default_factory=list)
    misses: list = field(default_factory=list)


# ---------------------------------------------------------------------------
# The scheduler
# ---------------------------------------------------------------------------


def scheduler_name():
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


class Scheduler:
    """Fire due schedule occurrences while this process holds the scheduler lease.

    ``clock`` returns epoch seconds and decides every time-based choice, so
    tests drive the scheduler through hours without waiting. ``late_after_s``
    defaults to the lease TTL plus LATE_MARGIN_S.
    """

    def __init__(self, connection, settings, schedules, clock=time.time, name=None, lease_ttl_ms=LEASE_TTL_MS,
                 late_after_s=None, poll_s=POLL_S):
        self.redis = connection
        self.settings = settings
        self.schedules = schedules
        self.clock = clock
        self.name = name or scheduler_name()
        self.poll_s = poll_s
        if late_after_s is None:
            late_after_s = lease_ttl_ms / 1000 + LATE_MARGIN_S
        self.late_after = timedelta(seconds=late_after_s)
        self.lease = SchedulerLease(connection, self.name, lease_ttl_ms)
        self.queue = JobQueue(connection, settings, clock=clock)
        self._fire_script = connection.register_script(_FIRE_SCRIPT_PREFIX + load_script("enqueue"))
        self._first_runs_set_for_fence = None
        self._invalid_schedules = set()

    @classmethod
    def from_settings(cls, settings, **options):
        store = ScheduleStore(HistoryStore.from_settings(settings), keep_connection=True)
        return cls(connect_redis(settings.redis_url), settings, store, **options)

    # ------------------------------------------------------------ one pass

    def run_once(self, now=None):
        """Fire every due occurrence if this process holds the lease, and return the seconds until the next pass.

        ``now`` is epoch seconds and defaults to the clock.
        """
        now = _to_datetime(self.clock() if now is None else now)
        if not self.lease.hold():
            return self.poll_s
        if self._first_runs_set_for_fence != self.lease.fence:
            self._set_missing_first_runs(now)
            self._first_runs_set_for_fence = self.lease.fence

        due = self.schedules.due(now, DUE_BATCH_SIZE)
        for row in due:
            if not self.lease.hold():
                return self.poll_s
            try:
                self._run_schedule(row, now)
            except _LeaseLost:
                return self.poll_s
        if len(due) == DUE_BATCH_SIZE:
            return 0.0
        return self._seconds_until_next_due(now)

    def _seconds_until_next_due(self, now):
        next_due = self.schedules.next_due_at()
        if next_due is None:
            return self.poll_s
        return min(self.poll_s, max(0.0, (next_due - now).total_seconds()))

    def _set_missing_first_runs(self, now):
        """Give enabled schedules without next_run_at their first occurrence after ``now``."""
        for row in self.schedules.without_next_run():
            schedule = self._parse(row)
            if schedule is None:
                continue
            try:
                self.schedules.set_first_run(row["id"], schedule.next(now))
            except cron.NoOccurrence:
                log.warning("schedule %s has no future fire time and does not fire", row["name"])

    def _parse(self, row):
        """Return the schedule's CronSchedule, or None (logged once) when the stored expression is invalid."""
        try:
            return cron.parse(row["cron_expression"], row["timezone"])
        except ValidationError as error:
            if row["id"] not in self._invalid_schedules:
                self._invalid_schedules.add(row["id"])
                log.error("schedule %s does not fire: invalid stored %s (%s); fix it with "
                          "`nself-jobs schedule update`", row["name"], error.field, error.message)
            return None

    def _run_schedule(self, row, now):
        schedule = self._parse(row)
        if schedule is None:
            # Clearing next_run_at takes the schedule out of the due list until an update fixes it.
            self.schedules.advance(row, row["next_run_at"], None, None, [], now)
            return
        grace = row["misfire_grace_ms"]
        plan = plan_occurrences(schedule, row["next_run_at"], now, row["misfire_policy"],
                                None if grace is None else timedelta(milliseconds=grace), self.late_after)
        result = self._fire_runs(row, plan)
        misses = result.misses
        if plan.missed_count:
            misses.insert(0, self._misfire_record(row, plan, result))
        last_run_at = now if result.enqueued else None
        if not self.schedules.advance(row, row["next_run_at"], plan.next_run_at, last_run_at, misses, now):
            log.info("schedule %s changed during the pass (edited, or advanced by another scheduler); "
                     "the next pass reads it again", row["name"])
        elif plan.next_run_at is None:
            log.warning("schedule %s has no future fire time and stops firing", row["name"])

    def _misfire_record(self, row, plan, result):
        late_runs = len(result.late_job_ids)
        log.warning("schedule %s missed %d occurrences from %s to %s while no scheduler fired them; "
                    "misfire policy %s ran %d late", row["name"], plan.missed_count, iso(plan.first_missed),
                    iso(plan.last_missed), row["misfire_policy"], late_runs)
        return MissRecord("misfire", plan.first_missed, plan.last_missed, plan.missed_count, late_runs=late_runs,
                          job_id=result.late_job_ids[-1] if result.late_job_ids else None,
                          detail=f"misfire policy {row['misfire_policy']}")

    def _fire_runs(self, row, plan):
        """Enqueue the planned runs and return what was enqueued and the misses found on the way."""
        result = _PassResult()
        if not plan.runs:
            return result
        try:
            template = build_job_spec(row, self.settings, plan.runs[0].scheduled_for)
        except ValidationError as error:
            log.error("schedule %s: %d runs rejected because the job request is invalid: %s; fix it with "
                      "`nself-jobs schedule update`", row["name"], len(plan.runs), error)
            result.misses.append(MissRecord("rejected", plan.runs[0].scheduled_for, plan.runs[-1].scheduled_for,
                                            len(plan.runs), detail=str(error)))
            return result

        for run in plan.runs:
            spec = dataclasses.replace(template, id=str(uuid.uuid4()), scheduled_for=iso(run.scheduled_for),
                                       description=_run_description(row["name"], run.scheduled_for, run.late))
            self._fire_one(row, spec, run, result)
        return result

    def _fire_one(self, row, spec, run, result):
        code, value = self._call_fire_script(row, spec, run)
        moment = iso(run.scheduled_for)
        if code == FIRED:
            result.enqueued.append(value)
            if run.late:
                result.late_job_ids.append(value)
            log.info("schedule %s: enqueued job %s for %s%s", row["name"], value, moment,
                     " (late)" if run.late else "")
        elif code == ALREADY_CLAIMED:
            # A pass that lost its lease after firing left this claim, and its job still counts as the late run.
            if run.late and not value.startswith(_SKIPPED_CLAIM_PREFIX):
                result.late_job_ids.append(value)
            log.debug("schedule %s: occurrence %s was already fired (%s)", row["name"], moment, value)
        elif code == OVERLAP_SKIPPED:
            log.info("schedule %s: skipped the run for %s because job %s of an earlier run is still waiting "
                     "or active (overlap policy skip)", row["name"], moment, value)
            result.misses.append(MissRecord("overlap", run.scheduled_for, run.scheduled_for, 1, job_id=value,
                                            detail="previous run still waiting or active"))
        else:
            log.warning("scheduler %s: lease lost before firing %s of schedule %s; the lease holder fires it",
                        self.name, moment, row["name"])
            self.lease.mark_lost()
            raise _LeaseLost()

    def _call_fire_script(self, row, spec, run):
        if self.lease.fence is None:
            return LEASE_LOST, ""
        script_keys, script_args = _enqueue_arguments(self.queue, spec)
        schedule_id = str(row["id"])
        script_keys += [self.lease.key, FENCE_KEY, occurrence_key(schedule_id, run.scheduled_for),
                        last_job_key(schedule_id)]
        script_args += [self.lease.token, self.lease.fence, CLAIM_TTL_MS, LAST_JOB_TTL_MS, row["overlap_policy"]]
        code, value = self._fire_script(keys=script_keys, args=script_args)
        return int(code), value

    # ------------------------------------------------------------ loop

    def run(self, stop_event):
        """Run passes about once a second, sooner when an occurrence is due, until ``stop_event`` is set."""
        log.info("scheduler %s started", self.name)
        failures = 0
        while not stop_event.is_set():
            try:
                wait_s = self.run_once()
                if failures:
                    log.info("scheduler %s recovered after %d failed passes", self.name, failures)
                failures = 0
            except (ServiceUnavailable, redis.RedisError, psycopg.Error, OSError) as error:
                failures += 1
                wait_s = min(MAX_BACKOFF_S, self.poll_s * 2 ** min(failures, 5))
                if failures == 1 or failures % 100 == 0:
                    log.warning("scheduler %s: pass failed %d times in a row (%s); retrying in %.0f s",
                                self.name, failures, error, wait_s)
            except Exception:
                failures += 1
                wait_s = min(MAX_BACKOFF_S, self.poll_s * 2 ** min(failures, 5))
                if failures == 1 or failures % 100 == 0:
                    log.exception("scheduler %s: pass failed %d times in a row; retrying in %.0f s",
                                  self.name, failures, wait_s)
            stop_event.wait(wait_s)
        self._stop()

    def _stop(self):
        try:
            self.lease.release()
        except redis.RedisError as error:
            log.warning("scheduler %s could not release the lease (%s); it expires in %d ms",
                        self.name, error, self.lease.ttl_ms)
        self.schedules.close()
        log.info("scheduler %s stopped", self.name)

    def start_thread(self, stop_event):
        thread = threading.Thread(target=self.run, args=(stop_event,), name="scheduler", daemon=True)
        thread.start()
        return thread
