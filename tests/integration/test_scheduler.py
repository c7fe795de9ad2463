"""The scheduler, the schedule CLI and the schedule REST API on real Redis and PostgreSQL.

Most tests drive schedulers through hours with an injected clock. Leases still
expire in real Redis time, so the test of a slow leader scales its lease TTL and
cycle by 1/100. The process tests run in real time with per-second schedules.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from nself_jobs import keys
from nself_jobs.errors import ServiceUnavailable
from nself_jobs.cli.main import cli
from nself_jobs.history.schedules import ScheduleStore
from nself_jobs.queue import JobQueue, connect_redis
from nself_jobs.scheduler import ScheduleService, Scheduler
from nself_jobs.server.app import create_app
from tests.conftest import REPO, drain_history, wait_for
from tests.wsgi import call

UTC = timezone.utc


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(first, last, day="2026-01-05"):
    """Return the UTC datetimes of every minute from ``first`` to ``last`` (HH:MM) on ``day``."""
    start, stop = utc(f"{day}T{first}"), utc(f"{day}T{last}")
    return [start + timedelta(minutes=index) for index in range(int((stop - start).total_seconds()) // 60 + 1)]


class FakeClock:
    """An epoch-seconds clock that moves only when the test moves it."""

    def __init__(self, start):
        self.now = start.timestamp()

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds

    def set(self, moment):
        self.now = moment.timestamp()


@pytest.fixture
def clock():
    return FakeClock(utc("2026-01-05T12:00:00"))


@pytest.fixture
def connection(settings):
    client = connect_redis(settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def service(settings, store, connection, clock):
    return ScheduleService(settings, ScheduleStore(store), JobQueue(connection, settings, clock=clock), clock=clock)


@pytest.fixture
def make_scheduler(settings, store, clock):
    schedulers = []

    def make(**options):
        scheduler = Scheduler(connect_redis(settings.redis_url), settings, ScheduleStore(store, keep_connection=True),
                              clock=clock, **options)
        schedulers.append(scheduler)
        return scheduler

    yield make
    for scheduler in schedulers:
        scheduler.schedules.close()
        scheduler.redis.close()


def create(service, **fields):
    body = {"name": "every-minute", "type": "test-echo", "cron": "* * * * *", "payload": {"value": 1}}
    body.update(fields)
    return service.create(body)


def tick_until(clock, schedulers, end, step_s=1.0):
    """Advance the clock in steps up to ``end``, giving every scheduler one pass per step."""
    while clock.now < end.timestamp():
        clock.advance(step_s)
        for scheduler in schedulers:
            scheduler.run_once()


def redis_runs(connection, schedule_id):
    """Return the scheduled_for times of every job hash of the schedule in Redis, sorted, duplicates kept."""
    times = []
    for key in connection.scan_iter(match=keys.job_key("*"), count=1000):
        fields = connection.hmget(key, "nj_schedule_id", "nj_scheduled_for")
        if fields[0] == schedule_id:
            times.append(fields[1])
    return sorted(times)


def history_runs(connection, store, schedule_id):
    drain_history(connection, store)
    with store.connect(autocommit=True) as database:
        return database.execute("SELECT id, scheduled_for, options FROM jobs WHERE schedule_id = %s "
                                "ORDER BY scheduled_for NULLS LAST", [schedule_id]).fetchall()


def miss_rows(store, schedule_id):
    with store.connect(autocommit=True) as database:
        return database.execute("SELECT * FROM job_schedule_misses WHERE schedule_id = %s ORDER BY recorded_at",
                                [schedule_id]).fetchall()


def schedule_row(store, name):
    return ScheduleStore(store).get(name)


def iso_list(moments):
    return [moment.isoformat().replace("+00:00", "Z") for moment in moments]


# ---------------------------------------------------------------------------
# Firing with an injected clock
# ---------------------------------------------------------------------------


def test_every_minute_fires_three_times(service, make_scheduler, clock, connection, store):
    created = create(service)
    assert created["nextRunAt"] == "2026-01-05T12:01:00Z"
    scheduler = make_scheduler()

    tick_until(clock, [scheduler], utc("2026-01-05T12:03:00"))

    assert redis_runs(connection, created["id"]) == iso_list(minutes("12:01", "12:03"))
    assert [row["scheduled_for"] for row in history_runs(connection, store, created["id"])] == minutes("12:01", "12:03")
    row = schedule_row(store, "every-minute")
    assert row["last_run_at"] == utc("2026-01-05T12:03:00")
    assert row["next_run_at"] == utc("2026-01-05T12:04:00")


def test_two_schedulers_each_minute_once(service, make_scheduler, clock, connection, store):
    created = create(service)
    schedulers = [make_scheduler(), make_scheduler()]

    tick_until(clock, schedulers, utc("2026-01-05T12:10:00"))

    assert redis_runs(connection, created["id"]) == iso_list(minutes("12:01", "12:10"))
    assert sum(scheduler.lease.fence is not None for scheduler in schedulers) == 1


def test_slow_leader_enqueues_each_once(service, make_scheduler, clock, connection, store):
    # Lease TTL 70 s and a forced 80 s cycle, both scaled to real Redis time by 1/100.
    created = create(service)
    leader = make_scheduler(lease_ttl_ms=700, late_after_s=75)
    follower = make_scheduler(lease_ttl_ms=700, late_after_s=75)
    leader.run_once()
    leader_fence = leader.lease.fence
    assert leader_fence is not None

    fire_one = leader._fire_one
    slowed = []

    def slow_fire_one(row, spec, run, result):
        if not slowed:
            slowed.append(run.scheduled_for)
            for _ in range(80):
                clock.advance(1)
                time.sleep(0.01)
                follower.run_once()
        return fire_one(row, spec, run, result)

    leader._fire_one = slow_fire_one
    tick_until(clock, [leader, follower], utc("2026-01-05T12:10:00"))

    assert slowed == [utc("2026-01-05T12:01:00")]
    assert redis_runs(connection, created["id"]) == iso_list(minutes("12:01", "12:10"))
    history = history_runs(connection, store, created["id"])
    assert [row["scheduled_for"] for row in history] == minutes("12:01", "12:10")
    assert leader.lease.fence is None
    assert follower.lease.fence > leader_fence
    assert miss_rows(store, created["id"]) == []


def test_outage_two_hours_one_catch_up_run(service, make_scheduler, clock, connection, store):
    clock.set(utc("2026-01-05T09:59:00"))
    created = create(service)
    before = make_scheduler()
    tick_until(clock, [before], utc("2026-01-05T10:00:30"))
    before.lease.release()

    clock.set(utc("2026-01-05T12:00:30"))
    after = make_scheduler()
    after.run_once()
    tick_until(clock, [after], utc("2026-01-05T12:01:00"))

    history = history_runs(connection, store, created["id"])
    assert [row["scheduled_for"] for row in history] == utc_list("10:00", "12:00", "12:01")
    assert "late run for 2026-01-05T12:00:00Z" in history[1]["options"]["description"]
    assert "late" not in history[2]["options"]["description"]

    [miss] = miss_rows(store, created["id"])
    assert miss["reason"] == "misfire"
    assert miss["missed_count"] == 120
    assert miss["first_scheduled_for"] == utc("2026-01-05T10:01:00")
    assert miss["last_scheduled_for"] == utc("2026-01-05T12:00:00")
    assert miss["late_runs"] == 1
    assert miss["job_id"] == history[1]["id"]
    assert schedule_row(store, "every-minute")["next_run_at"] == utc("2026-01-05T12:02:00")


def utc_list(*times, day="2026-01-05"):
    return [utc(f"{day}T{moment}") for moment in times]


def daily_outage(service, make_scheduler, clock, grace_ms):
    """Create ``0 3 * * *`` at 01:00, run a scheduler until 02:00, restart one at 05:00; return the schedule."""
    clock.set(utc("2026-01-05T01:00:00"))
    created = create(service, name="daily", cron="0 3 * * *", timezone="UTC", misfireGraceMs=grace_ms)
    before = make_scheduler()
    tick_until(clock, [before], utc("2026-01-05T02:00:00"), step_s=60)
    before.lease.release()
    clock.set(utc("2026-01-05T05:00:00"))
    after = make_scheduler()
    after.run_once()
    return created, after


def test_daily_outage_beyond_grace_missed(service, make_scheduler, clock, connection, store):
    created, scheduler = daily_outage(service, make_scheduler, clock, grace_ms=3_600_000)

    assert redis_runs(connection, created["id"]) == []
    [miss] = miss_rows(store, created["id"])
    assert (miss["reason"], miss["missed_count"], miss["late_runs"]) == ("misfire", 1, 0)
    assert miss["first_scheduled_for"] == utc("2026-01-05T03:00:00")
    assert schedule_row(store, "daily")["next_run_at"] == utc("2026-01-06T03:00:00")

    tick_until(clock, [scheduler], utc("2026-01-06T03:00:00"), step_s=300)
    assert redis_runs(connection, created["id"]) == ["2026-01-06T03:00:00Z"]


def test_daily_outage_within_grace_late_run(service, make_scheduler, clock, connection, store):
    created, scheduler = daily_outage(service, make_scheduler, clock, grace_ms=4 * 3_600_000)
    tick_until(clock, [scheduler], utc("2026-01-05T06:00:00"), step_s=60)

    history = history_runs(connection, store, created["id"])
    assert [row["scheduled_for"] for row in history] == [utc("2026-01-05T03:00:00")]
    assert "late run" in history[0]["options"]["description"]
    [miss] = miss_rows(store, created["id"])
    assert (miss["missed_count"], miss["late_runs"], miss["job_id"]) == (1, 1, history[0]["id"])
    assert schedule_row(store, "daily")["next_run_at"] == utc("2026-01-06T03:00:00")


def test_run_all_runs_missed_within_grace(service, make_scheduler, clock, connection, store):
    created = create(service, misfirePolicy="run-all", misfireGraceMs=300_000)
    clock.set(utc("2026-01-05T13:00:30"))
    make_scheduler().run_once()

    assert redis_runs(connection, created["id"]) == iso_list(minutes("12:56", "13:00"))
    [miss] = miss_rows(store, created["id"])
    assert (miss["missed_count"], miss["late_runs"]) == (60, 5)


def test_skip_policy_records_and_runs_nothing(service, make_scheduler, clock, connection, store):
    created = create(service, misfirePolicy="skip")
    clock.set(utc("2026-01-05T13:00:30"))
    make_scheduler().run_once()

    assert redis_runs(connection, created["id"]) == []
    [miss] = miss_rows(store, created["id"])
    assert (miss["missed_count"], miss["late_runs"], miss["job_id"]) == (60, 0, None)
    assert schedule_row(store, "every-minute")["next_run_at"] == utc("2026-01-05T13:01:00")


def test_next_run_no_drift(service, make_scheduler, clock, connection, store):
    clock.set(utc("2019-06-23T06:00:00"))
    created = create(service, name="hourly", cron="30 14 * * * *")
    scheduler = make_scheduler()
    occurrence = utc("2019-06-23T06:14:30")
    for _ in range(25):
        clock.set(occurrence + timedelta(seconds=12.5))  # each pass comes as late as a 12.5 s run
        scheduler.run_once()
        occurrence = schedule_row(store, "hourly")["next_run_at"]

    runs = redis_runs(connection, created["id"])
    assert len(runs) == 25
    assert runs[24] == "2019-06-24T06:14:30Z"
    assert all(run.endswith(":14:30Z") for run in runs)


def test_pass_repeated_after_failed_advance(service, make_scheduler, clock, connection, store):
    created = create(service)
    scheduler = make_scheduler()
    clock.set(utc("2026-01-05T13:00:30"))
    advance = scheduler.schedules.advance

    def fail_once(*args):
        scheduler.schedules.advance = advance
        raise ServiceUnavailable("PostgreSQL", "127.0.0.1:5432/jobs", "connection lost")

    scheduler.schedules.advance = fail_once
    with pytest.raises(ServiceUnavailable):
        scheduler.run_once()
    clock.advance(1)
    scheduler.run_once()

    history = history_runs(connection, store, created["id"])
    assert [row["scheduled_for"] for row in history] == [utc("2026-01-05T13:00:00")]
    [miss] = miss_rows(store, created["id"])
    assert (miss["missed_count"], miss["late_runs"], miss["job_id"]) == (60, 1, history[0]["id"])
    assert schedule_row(store, "every-minute")["next_run_at"] == utc("2026-01-05T13:01:00")


def test_overlap_skip_while_previous_waits(service, make_scheduler, clock, connection, store):
    created = create(service, overlapPolicy="skip")
    scheduler = make_scheduler()
    tick_until(clock, [scheduler], utc("2026-01-05T12:03:00"))

    [first] = redis_runs(connection, created["id"])
    assert first == "2026-01-05T12:01:00Z"
    first_id = connection.get(f"nself:jobs:schedule:{created['id']}:last-job")
    [miss] = miss_rows(store, created["id"])
    assert (miss["reason"], miss["missed_count"], str(miss["job_id"])) == ("overlap", 2, first_id)
    assert miss["last_scheduled_for"] == utc("2026-01-05T12:03:00")

    connection.hset(keys.job_key(first_id), "status", "finished")  # as a worker does when the run completes
    tick_until(clock, [scheduler], utc("2026-01-05T12:04:00"))
    assert redis_runs(connection, created["id"]) == iso_list(minutes("12:01", "12:01") + minutes("12:04", "12:04"))


def test_overlap_allow_fires_while_previous_waits(service, make_scheduler, clock, connection):
    created = create(service)
    tick_until(clock, [make_scheduler()], utc("2026-01-05T12:03:00"))
    assert len(redis_runs(connection, created["id"])) == 3


def test_invalid_stored_payload_rejected(service, make_scheduler, clock, connection, store):
    created = create(service)
    with store.connect(autocommit=True) as database:
        database.execute("""UPDATE job_schedules SET payload = '{"seconds": "ten"}' WHERE id = %s""",
                         [created["id"]])
    tick_until(clock, [make_scheduler()], utc("2026-01-05T12:02:00"))

    assert redis_runs(connection, created["id"]) == []
    misses = miss_rows(store, created["id"])
    assert [miss["reason"] for miss in misses] == ["rejected", "rejected"]
    assert "payload.seconds" in misses[0]["detail"]
    assert schedule_row(store, "every-minute")["next_run_at"] == utc("2026-01-05T12:03:00")


def test_invalid_stored_cron_stops_schedule(service, make_scheduler, clock, connection, store):
    created = create(service)
    with store.connect(autocommit=True) as database:
        database.execute("UPDATE job_schedules SET cron_expression = '61 * * * *' WHERE id = %s", [created["id"]])
    scheduler = make_scheduler()
    clock.advance(90)

    assert scheduler.run_once() == scheduler.poll_s
    assert redis_runs(connection, created["id"]) == []
    assert schedule_row(store, "every-minute")["next_run_at"] is None

    fixed = service.update("every-minute", {"cron": "*/2 * * * *"})
    assert fixed["nextRunAt"] == "2026-01-05T12:02:00Z"


def test_disabled_schedule_fires_after_enable(service, make_scheduler, clock, connection, store):
    created = create(service, enabled=False)
    assert created["nextRunAt"] is None
    scheduler = make_scheduler()
    tick_until(clock, [scheduler], utc("2026-01-05T12:05:30"))
    assert redis_runs(connection, created["id"]) == []

    enabled = service.set_enabled("every-minute", True)
    assert enabled["nextRunAt"] == "2026-01-05T12:06:00Z"
    tick_until(clock, [scheduler], utc("2026-01-05T12:06:00"))
    assert redis_runs(connection, created["id"]) == ["2026-01-05T12:06:00Z"]
    assert miss_rows(store, created["id"]) == []


def test_row_without_next_run_gets_one(service, make_scheduler, clock, connection, store):
    created = create(service)
    with store.connect(autocommit=True) as database:
        database.execute("UPDATE job_schedules SET next_run_at = NULL WHERE id = %s", [created["id"]])
    scheduler = make_scheduler()
    scheduler.run_once()
    assert schedule_row(store, "every-minute")["next_run_at"] == utc("2026-01-05T12:01:00")
    tick_until(clock, [scheduler], utc("2026-01-05T12:01:00"))
    assert redis_runs(connection, created["id"]) == ["2026-01-05T12:01:00Z"]


def test_update_cron_moves_next_run(service):
    create(service)
    updated = service.update("every-minute", {"cron": "0 * * * *"})
    assert updated["cron"] == "0 * * * *"
    assert updated["nextRunAt"] == "2026-01-05T13:00:00Z"
    unchanged = service.update("every-minute", {"payload": {"value": 2}})
    assert unchanged["nextRunAt"] == "2026-01-05T13:00:00Z"
    assert unchanged["payload"] == {"value": 2}


def test_fixed_time_follows_dst_rule(service, make_scheduler, clock, connection):
    clock.set(utc("2026-03-07T12:00:00"))
    created = create(service, name="new-york", cron="30 2 * * *", timezone="America/New_York")
    tick_until(clock, [make_scheduler()], utc("2026-03-09T12:00:00"), step_s=300)
    # 02:30 EST on 03-08 falls into the spring-forward gap and runs at 03:00 EDT; then 02:30 EDT.
    assert redis_runs(connection, created["id"]) == ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]


# ---------------------------------------------------------------------------
# Real processes
# ---------------------------------------------------------------------------

SCHEDULER_PROCESS = """
import logging, signal, sys, threading
from nself_jobs import jobtypes
from nself_jobs.scheduler import Scheduler
from nself_jobs.settings import load_settings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
settings = load_settings()
jobtypes.load_user_modules(settings.env.list("JOBS_HANDLER_MODULES"))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
Scheduler.from_settings(settings, lease_ttl_ms=int(sys.argv[1])).run(stop)
"""


def lease_holder_pid(connection):
    token = connection.get(keys.lease_key("scheduler"))
    if token is None:
        return None
    owner = token.split(" ")[0]
    return int(owner.rsplit(".", 2)[1])


def seconds_between(first, last):
    start, stop = utc(first[:-1]), utc(last[:-1])
    return iso_list(start + timedelta(seconds=index) for index in range(int((stop - start).total_seconds()) + 1))


def test_killed_leader_no_miss_no_duplicate(settings, store, environ, tmp_path, connection):
    service = ScheduleService(settings, ScheduleStore(store), JobQueue(connection, settings))
    created = service.create({"name": "every-second", "type": "test-echo", "cron": "* * * * * *"})
    env = dict(environ, PYTHONPATH=f"{REPO / 'lib'}:{REPO}")
    processes = {}
    try:
        for index in range(2):
            log = open(tmp_path / f"scheduler-{index}.log", "wb")
            process = subprocess.Popen([sys.executable, "-c", SCHEDULER_PROCESS, "2000"], env=env, cwd=tmp_path,
                                       stdout=log, stderr=subprocess.STDOUT)
            processes[process.pid] = process
        leader_pid = wait_for(lambda: lease_holder_pid(connection), message="a scheduler to take the lease")
        assert leader_pid in processes
        wait_for(lambda: len(redis_runs(connection, created["id"])) >= 3, message="three runs")

        time.sleep((0.9 - time.time() % 1.0) % 1.0)  # 100 ms before the next occurrence
        killed_at = time.time()
        os.kill(leader_pid, signal.SIGKILL)
        processes[leader_pid].wait(10)
        [follower_pid] = [pid for pid in processes if pid != leader_pid]
        wait_for(lambda: lease_holder_pid(connection) == follower_pid, timeout_s=10,
                 message="the other scheduler to take the lease")
        next_after_kill = iso_list([datetime.fromtimestamp(int(killed_at) + 1, UTC)])[0]
        three_later = iso_list([datetime.fromtimestamp(int(killed_at) + 4, UTC)])[0]
        wait_for(lambda: three_later in redis_runs(connection, created["id"]), timeout_s=15,
                 message="runs after the takeover")
        processes[follower_pid].terminate()
        processes[follower_pid].wait(15)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    runs = redis_runs(connection, created["id"])
    assert len(runs) == len(set(runs)), "an occurrence was enqueued twice"
    assert runs == seconds_between(runs[0], runs[-1]), "an occurrence was skipped"
    assert next_after_kill in runs
    assert miss_rows(store, created["id"]) == []
    assert len(history_runs(connection, store, created["id"])) == len(runs)


def test_worker_command_runs_schedule(settings, store, connection, start_plugin):
    service = ScheduleService(settings, ScheduleStore(store), JobQueue(connection, settings))
    created = service.create({"name": "every-two-seconds", "type": "test-echo", "cron": "*/2 * * * * *"})
    worker = start_plugin("worker", "-c", "1")

    def completed_runs():
        drain_history(connection, store)
        with store.connect(autocommit=True) as database:
            return database.execute("SELECT scheduled_for FROM jobs WHERE schedule_id = %s AND status = 'completed' "
                                    "ORDER BY scheduled_for", [created["id"]]).fetchall()

    rows = wait_for(lambda: len(completed_runs()) >= 3 and completed_runs(), timeout_s=30,
                    message="three completed runs")
    times = [row["scheduled_for"] for row in rows]
    assert all(moment.second % 2 == 0 for moment in times)
    assert all(later - earlier == timedelta(seconds=2) for earlier, later in zip(times, times[1:]))
    assert "scheduler" in worker.output()


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


@pytest.fixture
def run_cli(environ, store):
    """Run ``nself-jobs ARGS...`` in-process against the test's Redis database and schema."""
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, list(args), env=environ, catch_exceptions=False)
    return run


def test_cli_create_show_list(run_cli):
    created = run_cli("schedule", "create", "--name", "nightly", "--type", "test-echo", "--cron", "0 3 * * *",
                      "--payload", '{"value": 7}', "--timezone", "Europe/Berlin", "--misfire", "run-all",
                      "--misfire-grace", "3600000", "--overlap", "skip", "--priority", "high", "--desc", "Nightly",
                      "--json")
    assert created.exit_code == 0, created.output
    data = json.loads(created.output)
    assert (data["name"], data["cron"], data["timezone"]) == ("nightly", "0 3 * * *", "Europe/Berlin")
    assert (data["misfirePolicy"], data["misfireGraceMs"], data["overlapPolicy"]) == ("run-all", 3600000, "skip")
    assert data["options"] == {"priority": "high"}
    assert data["payload"] == {"value": 7}
    assert data["nextRunAt"].endswith("T02:00:00Z")

    details = run_cli("schedule", "show", "nightly", "--json")
    assert details.exit_code == 0
    assert json.loads(details.output)["recentRuns"] == []
    listed = run_cli("schedule", "list", "--json")
    assert [item["name"] for item in json.loads(listed.output)["schedules"]] == ["nightly"]
    human = run_cli("schedule", "list")
    assert "nightly  enabled  '0 3 * * *' Europe/Berlin" in human.output


def test_cli_update_enable_disable(run_cli):
    run_cli("schedule", "create", "--name", "job", "--type", "test-echo", "--cron", "* * * * *", "--priority", "low")
    updated = run_cli("schedule", "update", "job", "--cron", "*/5 * * * *", "--max-retries", "2", "--json")
    assert updated.exit_code == 0, updated.output
    data = json.loads(updated.output)
    assert data["cron"] == "*/5 * * * *"
    assert data["options"] == {"priority": "low", "maxRetries": 2}

    disabled = json.loads(run_cli("schedule", "disable", "job", "--json").output)
    assert (disabled["enabled"], disabled["nextRunAt"]) == (False, None)
    enabled = json.loads(run_cli("schedule", "enable", "job", "--json").output)
    assert enabled["enabled"] is True
    assert enabled["nextRunAt"] is not None


def test_cli_run_now_enqueues_job(run_cli, connection):
    run_cli("schedule", "create", "--name", "job", "--type", "test-echo", "--cron", "0 0 1 1 *")
    result = run_cli("schedule", "run-now", "job", "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.output)["id"]
    job = connection.hgetall(keys.job_key(job_id))
    assert job["nj_type"] == "test-echo"
    assert job["description"] == "schedule job (run now)"
    assert job["nj_schedule_id"] == json.loads(run_cli("schedule", "show", "job", "--json").output)["id"]


def test_cli_preview_expression_and_name(run_cli):
    result = run_cli("schedule", "preview", "30 2 * * *", "--timezone", "America/New_York", "--count", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["count"] == 2
    assert all(time_text.endswith("T07:30:00Z") or time_text.endswith("T06:30:00Z") for time_text in data["times"])

    run_cli("schedule", "create", "--name", "job", "--type", "test-echo", "--cron", "@hourly")
    named = json.loads(run_cli("schedule", "preview", "job", "--count", "3", "--json").output)
    assert named["cron"] == "@hourly"
    assert len(named["times"]) == 3


@pytest.mark.parametrize("args, code, message", [
    (("schedule", "create", "--name", "bad", "--type", "test-echo", "--cron", "61 * * * *"), 8, "cron.minute"),
    (("schedule", "create", "--name", "bad", "--type", "test-echo", "--cron", "* * * * *", "--timezone", "Moon/Base"),
     8, "timezone"),
    (("schedule", "create", "--name", "bad", "--type", "test-echo", "--cron", "* * * * *", "--payload", "{"),
     8, "payload"),
    (("schedule", "create", "--name", "bad", "--type", "test-echo", "--cron", "* * * * *", "--misfire", "run-all"),
     8, "misfireGraceMs"),
    (("schedule", "show", "missing"), 9, "not found"),
    (("schedule", "delete", "missing", "--yes"), 9, "not found"),
    (("schedule", "run-now", "missing"), 9, "not found"),
    (("schedule", "preview", "missing"), 9, "not found"),
    (("schedule", "delete", "missing"), 2, "--yes"),
    (("schedule", "preview", "0 25 * * *"), 8, "cron.hour"),
])
def test_cli_errors_exit_codes(run_cli, args, code, message):
    result = run_cli(*args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_cli_duplicate_name_exit_10(run_cli):
    args = ("schedule", "create", "--name", "job", "--type", "test-echo", "--cron", "* * * * *")
    assert run_cli(*args).exit_code == 0
    result = run_cli(*args)
    assert result.exit_code == 10
    assert "already exists" in result.output


def test_cli_delete_with_yes(run_cli):
    run_cli("schedule", "create", "--name", "job", "--type", "test-echo", "--cron", "* * * * *")
    result = run_cli("schedule", "delete", "job", "--yes", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["deleted"] is True
    assert run_cli("schedule", "show", "job").exit_code == 9


# ---------------------------------------------------------------------------
# REST API
# ---------------------------------------------------------------------------


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


BODY = {"name": "nightly", "type": "test-echo", "cron": "0 3 * * *", "payload": {"value": 1}}


def test_rest_create_get_list(app):
    created = call(app, "POST", "/api/schedules", BODY, headers={"X-App-Name": "shop"})
    assert created.status == 201
    assert created.json()["account"] == "shop"
    assert created.json()["nextRunAt"].endswith("T03:00:00Z")

    fetched = call(app, "GET", "/api/schedules/nightly")
    assert fetched.status == 200
    assert fetched.json()["misses"] == []
    assert fetched.json()["recentRuns"] == []
    listed = call(app, "GET", "/api/schedules")
    assert [item["name"] for item in listed.json()["schedules"]] == ["nightly"]


def test_rest_patch_enable_disable_delete(app):
    call(app, "POST", "/api/schedules", BODY)
    patched = call(app, "PATCH", "/api/schedules/nightly", {"cron": "15 4 * * *", "overlapPolicy": "skip"})
    assert patched.status == 200
    assert (patched.json()["cron"], patched.json()["overlapPolicy"]) == ("15 4 * * *", "skip")

    assert call(app, "POST", "/api/schedules/nightly/disable").json()["enabled"] is False
    assert call(app, "POST", "/api/schedules/nightly/enable").json()["enabled"] is True

    deleted = call(app, "DELETE", "/api/schedules/nightly")
    assert deleted.status == 200
    assert call(app, "GET", "/api/schedules/nightly").status == 404


def test_rest_run_now(app, connection):
    call(app, "POST", "/api/schedules", BODY)
    response = call(app, "POST", "/api/schedules/nightly/run-now")
    assert response.status == 201
    assert connection.hget(keys.job_key(response.json()["id"]), "nj_type") == "test-echo"


def test_rest_preview_expression_and_schedule(app):
    response = call(app, "GET", "/api/schedules/preview?cron=0%203%20*%20*%20*&timezone=Europe/Berlin&count=2")
    assert response.status == 200
    assert [moment[11:] for moment in response.json()["times"]] == ["02:00:00Z", "02:00:00Z"]
    assert response.json()["localTimes"][0].endswith("T03:00:00+01:00")

    call(app, "POST", "/api/schedules", BODY)
    named = call(app, "GET", "/api/schedules/nightly/preview?count=4")
    assert named.status == 200
    assert len(named.json()["times"]) == 4


@pytest.mark.parametrize("body, field", [
    (dict(BODY, cron="0 3 * * 8"), "cron.day_of_week"),
    (dict(BODY, cron="*/90 * * * *"), "cron.minute"),
    (dict(BODY, timezone="Europe/Atlantis"), "timezone"),
    (dict(BODY, payload={"seconds": "x"}), "payload.seconds"),
    (dict(BODY, name="preview"), "name"),
    (dict(BODY, misfirePolicy="run-all"), "misfireGraceMs"),
    (dict(BODY, options={"delay": 5}), "options.delay"),
])
def test_rest_invalid_schedule_422_field(app, body, field):
    response = call(app, "POST", "/api/schedules", body)
    assert response.status == 422
    assert response.json()["field"] == field


def test_rest_preview_invalid_count_422(app):
    response = call(app, "GET", "/api/schedules/preview?cron=@daily&count=0")
    assert response.status == 422
    assert response.json()["field"] == "count"


def test_rest_duplicate_name_409(app):
    assert call(app, "POST", "/api/schedules", BODY).status == 201
    response = call(app, "POST", "/api/schedules", BODY)
    assert response.status == 409
    assert "already exists" in response.json()["error"]


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/schedules/missing"), ("PATCH", "/api/schedules/missing"), ("DELETE", "/api/schedules/missing"),
    ("POST", "/api/schedules/missing/enable"), ("POST", "/api/schedules/missing/disable"),
    ("POST", "/api/schedules/missing/run-now"), ("GET", "/api/schedules/missing/preview"),
])
def test_rest_unknown_schedule_404(app, method, path):
    body = {"cron": "* * * * *"} if method == "PATCH" else None
    assert call(app, method, path, body).status == 404
