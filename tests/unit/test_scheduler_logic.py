"""Tests for nself_jobs.scheduler without PostgreSQL: planning, request validation, and the Redis lease and fire script.

Planning runs on an injected ``now``. The lease and fire script need Lua, which
fakeredis lacks here, so those tests use the session's real Redis.
"""

from datetime import datetime, timedelta, timezone

import pytest
import redis

from nself_jobs import cron, keys
from nself_jobs.errors import ConfigError, ValidationError
from nself_jobs.scheduler import (ALREADY_CLAIMED, FENCE_KEY, FIRED, LEASE_LOST, OVERLAP_SKIPPED, PlannedRun,
                                  Scheduler, SchedulerLease, build_job_spec, default_timezone, last_job_key,
                                  occurrence_key, parse_count, parse_schedule_request, plan_occurrences)
from nself_jobs.settings import load_settings

UTC = timezone.utc
LATE_AFTER = timedelta(seconds=20)


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def plan(expression, next_run_at, now, policy="run-once", grace=None, zone="UTC", **options):
    return plan_occurrences(cron.parse(expression, zone), utc(next_run_at), utc(now), policy, grace, LATE_AFTER,
                            **options)


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def test_plan_on_time_occurrence_runs():
    result = plan("* * * * *", "2026-01-05T12:01:00", "2026-01-05T12:01:00.400")
    assert result.runs == [PlannedRun(utc("2026-01-05T12:01:00"), late=False)]
    assert result.missed_count == 0
    assert result.next_run_at == utc("2026-01-05T12:02:00")


def test_plan_nothing_due_keeps_cursor():
    result = plan("* * * * *", "2026-01-05T12:01:00", "2026-01-05T12:00:59")
    assert result.runs == []
    assert result.next_run_at == utc("2026-01-05T12:01:00")


def test_plan_failover_gap_runs_every_occurrence_on_time():
    # A scheduler taking over 15 s after the old one died fires what it finds.
    result = plan("* * * * * *", "2026-01-05T12:00:01", "2026-01-05T12:00:16")
    assert [run.scheduled_for.second for run in result.runs] == list(range(1, 17))
    assert not any(run.late for run in result.runs)
    assert result.missed_count == 0


def test_plan_two_hour_outage_run_once_coalesces():
    result = plan("* * * * *", "2026-01-05T10:01:00", "2026-01-05T12:00:30", policy="run-once")
    assert result.missed_count == 120
    assert result.first_missed == utc("2026-01-05T10:01:00")
    assert result.last_missed == utc("2026-01-05T12:00:00")
    assert result.runs == [PlannedRun(utc("2026-01-05T12:00:00"), late=True)]
    assert result.next_run_at == utc("2026-01-05T12:01:00")


def test_plan_two_hour_outage_skip_runs_nothing():
    result = plan("* * * * *", "2026-01-05T10:01:00", "2026-01-05T12:00:30", policy="skip")
    assert result.missed_count == 120
    assert result.runs == []
    assert result.next_run_at == utc("2026-01-05T12:01:00")


def test_plan_run_all_runs_missed_within_grace():
    result = plan("* * * * *", "2026-01-05T10:01:00", "2026-01-05T12:00:30", policy="run-all",
                  grace=timedelta(minutes=10))
    assert result.missed_count == 120
    assert [run.scheduled_for for run in result.runs] == [utc(f"2026-01-05T11:{minute}:00") for minute in
                                                          range(51, 60)] + [utc("2026-01-05T12:00:00")]
    assert all(run.late for run in result.runs)


def test_plan_daily_outage_beyond_grace_misses():
    result = plan("0 3 * * *", "2026-01-05T03:00:00", "2026-01-05T05:00:00", grace=timedelta(hours=1))
    assert result.runs == []
    assert result.missed_count == 1
    assert result.next_run_at == utc("2026-01-06T03:00:00")


def test_plan_daily_outage_within_grace_runs_late():
    result = plan("0 3 * * *", "2026-01-05T03:00:00", "2026-01-05T05:00:00", grace=timedelta(hours=4))
    assert result.runs == [PlannedRun(utc("2026-01-05T03:00:00"), late=True)]
    assert result.missed_count == 1
    assert result.next_run_at == utc("2026-01-06T03:00:00")


def test_plan_on_time_runs_follow_late_run():
    # With late_after 20 s, 12:00:00 to 12:00:09 were missed and 12:00:10 to 12:00:30 are on time.
    # A grace of 25 s lets the latest missed one, 12:00:09, run late.
    result = plan("*/1 * * * * *", "2026-01-05T12:00:00", "2026-01-05T12:00:30", policy="run-once",
                  grace=timedelta(seconds=25), limit=100)
    late = [run for run in result.runs if run.late]
    on_time = [run for run in result.runs if not run.late]
    assert late == [PlannedRun(utc("2026-01-05T12:00:09"), late=True)]
    assert on_time[0].scheduled_for == utc("2026-01-05T12:00:10")
    assert on_time[-1].scheduled_for == utc("2026-01-05T12:00:30")
    assert result.missed_count == 10


def test_plan_long_outage_split_into_passes_runs_once():
    expression = cron.parse("* * * * * *", "UTC")
    cursor = utc("2026-01-05T10:00:00")
    now = utc("2026-01-05T11:00:00")
    runs, missed, passes = [], 0, 0
    while cursor is not None and cursor <= now:
        result = plan_occurrences(expression, cursor, now, "run-once", None, LATE_AFTER, limit=1000)
        runs += result.runs
        missed += result.missed_count
        cursor = result.next_run_at
        passes += 1
    assert passes == 4
    # 10:00:00 to 10:59:39 are older than late_after; 10:59:40 to 11:00:00 (21) run on time.
    assert missed == 3580
    assert [run for run in runs if run.late] == [PlannedRun(utc("2026-01-05T10:59:39"), late=True)]
    assert len([run for run in runs if not run.late]) == 21


def test_plan_no_drift_from_late_passes():
    # Hourly at :14:30; every pass happens 12.5 s late, as if each run took 12.5 s.
    expression = cron.parse("30 14 * * * *", "UTC")
    cursor = utc("2019-06-23T06:14:30")
    fired = []
    for _ in range(25):
        result = plan_occurrences(expression, cursor, cursor + timedelta(seconds=12.5), "run-once", None, LATE_AFTER)
        fired += [run.scheduled_for for run in result.runs]
        cursor = result.next_run_at
    assert fired[24] == utc("2019-06-24T06:14:30")
    assert all(moment.minute == 14 and moment.second == 30 for moment in fired)
    assert cursor == utc("2019-06-24T07:14:30")


def test_plan_dst_gap_fires_after_gap():
    # 02:30 does not exist in New York on 2026-03-08; the run fires at 03:00 EDT.
    result = plan("30 2 * * *", "2026-03-08T07:00:00", "2026-03-08T07:00:01", zone="America/New_York")
    assert result.runs == [PlannedRun(utc("2026-03-08T07:00:00"), late=False)]
    assert result.next_run_at == utc("2026-03-09T06:30:00")


# ---------------------------------------------------------------------------
# Schedule requests
# ---------------------------------------------------------------------------


@pytest.fixture
def plain_settings(tmp_path):
    from nself_jobs import jobtypes
    jobtypes.load_user_modules(["tests.fixtures.sample_jobs"])
    return load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path)


def request(**fields):
    body = {"name": "every-minute", "type": "test-echo", "cron": "* * * * *", "payload": {"value": 1}}
    body.update(fields)
    return {name: value for name, value in body.items() if value is not None}


def test_request_defaults(plain_settings):
    row = parse_schedule_request(request(), plain_settings)
    assert row["timezone"] == "UTC"
    assert row["queue"] == "default"
    assert row["misfire_policy"] == "run-once"
    assert row["misfire_grace_ms"] is None
    assert row["overlap_policy"] == "allow"
    assert row["enabled"] is True
    assert row["options"] == {}


def test_request_timezone_default_from_setting(tmp_path):
    settings = load_settings(environ={"HOME": str(tmp_path), "JOBS_SCHEDULE_TIMEZONE": "Europe/Berlin"},
                             project_dir=tmp_path)
    assert parse_schedule_request(request(), settings)["timezone"] == "Europe/Berlin"


def test_request_invalid_timezone_setting_names_variable(tmp_path):
    settings = load_settings(environ={"HOME": str(tmp_path), "JOBS_SCHEDULE_TIMEZONE": "Mars/Base"},
                             project_dir=tmp_path)
    with pytest.raises(ConfigError) as raised:
        default_timezone(settings)
    assert raised.value.variable == "JOBS_SCHEDULE_TIMEZONE"


@pytest.mark.parametrize("fields, field", [
    ({"cron": "61 * * * *"}, "cron.minute"),
    ({"cron": "0 24 * * *"}, "cron.hour"),
    ({"cron": "* * * *"}, "cron"),
    ({"cron": None}, "cron"),
    ({"timezone": "Nowhere/City"}, "timezone"),
    ({"name": None}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "preview"}, "name"),
    ({"type": "no-such-type"}, "type"),
    ({"queue": "urgent"}, "queue"),
    ({"payload": {"seconds": "ten"}}, "payload.seconds"),
    ({"options": {"priority": "asap"}}, "options.priority"),
    ({"options": {"delay": 1000}}, "options.delay"),
    ({"options": {"uniqueKey": "k"}}, "options.uniqueKey"),
    ({"misfirePolicy": "sometimes"}, "misfirePolicy"),
    ({"misfirePolicy": "run-all"}, "misfireGraceMs"),
    ({"misfireGraceMs": -1}, "misfireGraceMs"),
    ({"overlapPolicy": "queue"}, "overlapPolicy"),
    ({"enabled": "yes"}, "enabled"),
    ({"every": "minute"}, "every"),
])
def test_request_invalid_field_named(plain_settings, fields, field):
    with pytest.raises(ValidationError) as raised:
        parse_schedule_request(request(**fields), plain_settings)
    assert raised.value.field == field


def test_request_normalises_cron_and_keeps_options(plain_settings):
    row = parse_schedule_request(request(cron="0  3 * * MON", options={"priority": "high", "maxRetries": 1}),
                                 plain_settings)
    assert row["cron"] == "0 3 * * mon"
    assert row["options"] == {"priority": "high", "maxRetries": 1}


@pytest.mark.parametrize("value, expected", [(None, 5), ("", 5), ("3", 3), (1000, 1000)])
def test_count_valid(value, expected):
    assert parse_count(value) == expected


@pytest.mark.parametrize("value", ["0", "1001", "x", -1, True, 2.5])
def test_count_invalid_names_count(value):
    with pytest.raises(ValidationError) as raised:
        parse_count(value)
    assert raised.value.field == "count"


# ---------------------------------------------------------------------------
# Lease and fire script, on real Redis
# ---------------------------------------------------------------------------


@pytest.fixture
def connection(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_lease_single_holder_and_fence_increments(connection):
    first = SchedulerLease(connection, "first", 10_000)
    second = SchedulerLease(connection, "second", 10_000)
    assert first.hold()
    assert not second.hold()
    assert first.hold()
    first_fence = first.fence

    first.release()
    assert second.hold()
    assert second.fence == first_fence + 1
    assert connection.get(FENCE_KEY) == str(second.fence)


def test_lease_expiry_hands_over(connection):
    first = SchedulerLease(connection, "first", 10_000)
    second = SchedulerLease(connection, "second", 10_000)
    assert first.hold()
    connection.delete(keys.lease_key("scheduler"))  # as if the TTL ran out
    assert second.hold()
    assert not first.hold()
    assert first.fence is None


class StubSchedules:
    """Stands in for ScheduleStore where a test fires occurrences directly."""

    def close(self):
        pass


SCHEDULE_ROW = {
    "id": "6f1c1a52-2f5e-4b1a-9a53-0f1c7a6e2b10", "name": "every-minute", "type": "test-echo",
    "queue": "default", "payload": {"value": 1}, "options": {}, "source_account_id": "primary",
    "overlap_policy": "allow",
}


def fire(scheduler, moment, row=SCHEDULE_ROW):
    spec = build_job_spec(row, scheduler.settings, moment)
    return scheduler._call_fire_script(row, spec, PlannedRun(moment, late=False))


@pytest.fixture
def scheduler_pair(connection, settings):
    first = Scheduler(connection, settings, StubSchedules(), name="first")
    second = Scheduler(connection, settings, StubSchedules(), name="second")
    return first, second


def test_fire_enqueues_and_claims(scheduler_pair, connection):
    first, _ = scheduler_pair
    assert first.lease.hold()
    moment = utc("2026-01-05T12:01:00")
    code, job_id = fire(first, moment)
    assert code == FIRED
    job = connection.hgetall(keys.job_key(job_id))
    assert job["nj_schedule_id"] == SCHEDULE_ROW["id"]
    assert job["nj_scheduled_for"] == "2026-01-05T12:01:00Z"
    assert connection.lrange(keys.queue_key("default:normal"), 0, -1) == [job_id]
    assert connection.get(occurrence_key(SCHEDULE_ROW["id"], moment)) == job_id
    assert 0 < connection.pttl(occurrence_key(SCHEDULE_ROW["id"], moment)) <= 3 * 86_400_000


def test_fire_same_occurrence_twice_enqueues_once(scheduler_pair, connection):
    first, _ = scheduler_pair
    assert first.lease.hold()
    moment = utc("2026-01-05T12:01:00")
    code, job_id = fire(first, moment)
    assert code == FIRED
    assert fire(first, moment) == (ALREADY_CLAIMED, job_id)
    assert connection.llen(keys.queue_key("default:normal")) == 1


def test_fire_after_lease_lost_enqueues_nothing(scheduler_pair, connection):
    first, second = scheduler_pair
    assert first.lease.hold()
    connection.delete(keys.lease_key("scheduler"))
    assert second.lease.hold()

    code, _ = fire(first, utc("2026-01-05T12:01:00"))
    assert code == LEASE_LOST
    assert connection.llen(keys.queue_key("default:normal")) == 0
    assert connection.llen(keys.HISTORY_KEY) == 0


def test_fire_with_outdated_fence_enqueues_nothing(scheduler_pair, connection):
    first, _ = scheduler_pair
    assert first.lease.hold()
    connection.incr(FENCE_KEY)  # another scheduler took the lease since, whatever the lease key contains now
    code, _ = fire(first, utc("2026-01-05T12:01:00"))
    assert code == LEASE_LOST
    assert connection.llen(keys.queue_key("default:normal")) == 0


def test_fire_overlap_skip_while_previous_waits(scheduler_pair, connection):
    first, _ = scheduler_pair
    assert first.lease.hold()
    row = dict(SCHEDULE_ROW, overlap_policy="skip")
    code, previous = fire(first, utc("2026-01-05T12:01:00"), row)
    assert code == FIRED
    assert connection.get(last_job_key(row["id"])) == previous

    assert fire(first, utc("2026-01-05T12:02:00"), row) == (OVERLAP_SKIPPED, previous)
    # Mark the previous run finished, as a worker would.
    connection.hset(keys.job_key(previous), "status", "finished")
    code, following = fire(first, utc("2026-01-05T12:03:00"), row)
    assert code == FIRED
    assert following != previous


def test_fire_overlap_allow_ignores_previous(scheduler_pair, connection):
    first, _ = scheduler_pair
    assert first.lease.hold()
    assert fire(first, utc("2026-01-05T12:01:00"))[0] == FIRED
    assert fire(first, utc("2026-01-05T12:02:00"))[0] == FIRED
    assert connection.llen(keys.queue_key("default:normal")) == 2
