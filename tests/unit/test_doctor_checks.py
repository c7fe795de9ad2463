"""The doctor's checks and Redis repairs on fakeredis, with the job state written by hand.

Repairs that run the plugin's Lua scripts (recovery of a lost worker's job) and
the comparison with a real PostgreSQL are in tests/integration/test_doctor.py.
"""

import json
import time
import uuid
from datetime import datetime, timezone

import fakeredis
import pytest

from nself_jobs import doctor as doctor_module
from nself_jobs import keys
from nself_jobs.doctor import Doctor, PlacementRepair, take_snapshot
from nself_jobs.settings import load_settings

ORIGIN = "default:normal"


@pytest.fixture
def connection():
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path)


def new_id():
    return str(uuid.uuid4())


def write_hash(connection, job_id, status, origin=ORIGIN, **fields):
    now_ms = int(time.time() * 1000)
    values = {"status": status, "origin": origin, "nj_type": "test-echo", "nj_queue": origin.split(":")[0],
              "nj_priority": 3, "nj_payload": "{}", "nj_options": "{}", "nj_attempts": 0,
              "nj_max_attempts": 1, "nj_timeout_ms": 60000, "nj_created_ms": now_ms}
    values.update(fields)
    connection.hset(keys.job_key(job_id), mapping=values)


def place(connection, job_id, kind, origin=ORIGIN, score=None):
    if kind == "queue":
        connection.rpush(keys.queue_key(origin), job_id)
    else:
        connection.zadd(keys.registry_key(kind, origin), {job_id: score if score is not None else time.time() + 3600})


def add_job(connection, status, kind=None, **fields):
    """Write a job whose hash and location agree, as the Lua scripts leave it."""
    job_id = new_id()
    write_hash(connection, job_id, status, **fields)
    place(connection, job_id, kind or doctor_module.KIND_OF_STATUS[status])
    return job_id


def problems(connection, settings):
    return Doctor(connection, settings).check().problems


def test_every_state_placed_right_is_clean(connection, settings):
    for status in ("queued", "scheduled", "finished", "failed", "canceled"):
        add_job(connection, status)
    worker = "host.1.abc"
    add_job(connection, "started", worker_name=worker, nj_attempts=1)
    connection.set(keys.worker_key(worker), "{}", ex=15)

    report = Doctor(connection, settings).check()

    assert report.problems == []
    assert report.jobs == 6
    assert report.skipped == {"history": "no PostgreSQL configured", "schedules": "no PostgreSQL configured"}


def test_job_in_two_states_found_and_repaired(connection, settings):
    job_id = add_job(connection, "queued")
    place(connection, job_id, "failed")

    report = Doctor(connection, settings).check()

    assert [(problem.code, problem.subject) for problem in report.problems] == [("misplaced", job_id)]
    assert "in 2 places" in report.problems[0].message
    Doctor(connection, settings).repair(report)
    assert report.problems[0].repaired
    assert connection.lrange(keys.queue_key(ORIGIN), 0, -1) == [job_id]
    assert connection.zscore(keys.registry_key("failed", ORIGIN), job_id) is None
    assert problems(connection, settings) == []


def test_duplicate_queue_entry_keeps_first_place(connection, settings):
    first = add_job(connection, "queued")
    second = add_job(connection, "queued")
    place(connection, first, "queue")

    report = Doctor(connection, settings).check()
    Doctor(connection, settings).repair(report)

    assert [problem.subject for problem in report.problems] == [first]
    assert connection.lrange(keys.queue_key(ORIGIN), 0, -1) == [first, second]


def test_queued_job_in_no_list_is_queued_again(connection, settings):
    job_id = new_id()
    write_hash(connection, job_id, "queued")

    report = Doctor(connection, settings).check()

    assert "in no queue or registry" in report.problems[0].message
    Doctor(connection, settings).repair(report)
    assert connection.lrange(keys.queue_key(ORIGIN), 0, -1) == [job_id]
    assert connection.llen(keys.WAKEUP_KEY) == 1


def test_status_mismatch_moves_job_to_status_location(connection, settings):
    job_id = add_job(connection, "finished", kind="wip")
    connection.pexpire(keys.job_key(job_id), 60_000)

    report = Doctor(connection, settings).check()

    assert report.problems[0].message == f"status finished but it is in the wip registry of {ORIGIN}"
    Doctor(connection, settings).repair(report)
    assert connection.zscore(keys.registry_key("wip", ORIGIN), job_id) is None
    removal = connection.zscore(keys.registry_key("finished", ORIGIN), job_id)
    assert time.time() + 50 < removal < time.time() + 61


def test_running_job_without_lease_repaired(connection, settings):
    started_ms = int(time.time() * 1000)
    job_id = new_id()
    write_hash(connection, job_id, "started", worker_name="host.1.abc", nj_started_ms=started_ms,
               nj_timeout_ms=10_000, nj_attempts=1)
    connection.set(keys.worker_key("host.1.abc"), "{}", ex=15)

    report = Doctor(connection, settings).check()
    Doctor(connection, settings).repair(report)

    lease = connection.zscore(keys.registry_key("wip", ORIGIN), job_id)
    assert lease == pytest.approx(started_ms / 1000 + 10 + keys.LEASE_GRACE_S)


def test_listed_id_without_hash_is_removed_and_recorded(connection, settings):
    job_id = new_id()
    place(connection, job_id, "queue")
    place(connection, job_id, "scheduled")

    report = Doctor(connection, settings).check()

    assert [problem.code for problem in report.problems] == ["data-missing"]
    Doctor(connection, settings).repair(report)
    assert connection.llen(keys.queue_key(ORIGIN)) == 0
    assert connection.zcard(keys.registry_key("scheduled", ORIGIN)) == 0
    event = json.loads(connection.lindex(keys.HISTORY_KEY, -1))
    assert (event["e"], event["id"]) == ("data_missing", job_id)


def test_finished_job_leaving_redis_is_not_a_problem(connection, settings):
    job_id = new_id()
    write_hash(connection, job_id, "finished")
    connection.pexpire(keys.job_key(job_id), 500)

    assert problems(connection, settings) == []


def test_expired_registry_entry_ignored(connection, settings):
    place(connection, new_id(), "finished", score=time.time() - 10)

    assert problems(connection, settings) == []


def test_unknown_status_reported_not_repaired(connection, settings):
    job_id = add_job(connection, "queued")
    connection.hset(keys.job_key(job_id), "status", "deferred")

    report = Doctor(connection, settings).check()
    Doctor(connection, settings).repair(report)

    assert report.problems[0].code == "unknown-status"
    assert not report.problems[0].repaired
    assert connection.lrange(keys.queue_key(ORIGIN), 0, -1) == [job_id]


def test_running_job_of_dead_worker_found(connection, settings):
    alive = add_job(connection, "started", worker_name="host.1.alive", nj_attempts=1)
    dead = add_job(connection, "started", worker_name="host.2.dead", nj_attempts=2)
    connection.set(keys.worker_key("host.1.alive"), "{}", ex=15)

    found = problems(connection, settings)

    assert [(problem.check, problem.subject) for problem in found] == [("workers", dead)]
    assert "host.2.dead" in found[0].message
    assert alive != dead


def test_job_ended_after_snapshot_not_lost(connection, settings, monkeypatch):
    job_id = add_job(connection, "started", worker_name="host.2.dead", nj_attempts=1)
    snapshot = take_snapshot(connection)
    connection.zrem(keys.registry_key("wip", ORIGIN), job_id)
    connection.hset(keys.job_key(job_id), "status", "finished")
    place(connection, job_id, "finished")

    assert doctor_module.check_workers(connection, snapshot) == []


def test_repair_respects_change_made_meanwhile(connection, settings, monkeypatch):
    job_id = new_id()
    write_hash(connection, job_id, "queued")
    report = Doctor(connection, settings).check()
    original = PlacementRepair._positions
    calls = []

    def finish_job_first(self, checked_id, locations):
        if not calls:
            # A worker ends the job between the doctor's read and its write.
            connection.hset(keys.job_key(checked_id), "status", "finished")
            place(connection, checked_id, "finished")
        calls.append(checked_id)
        return original(self, checked_id, locations)

    monkeypatch.setattr(PlacementRepair, "_positions", finish_job_first)
    Doctor(connection, settings).repair(report)

    assert len(calls) == 2
    assert connection.llen(keys.queue_key(ORIGIN)) == 0
    assert connection.zscore(keys.registry_key("finished", ORIGIN), job_id) is not None


def test_snapshot_reads_job_enqueued_after_scan(connection, monkeypatch):
    early = add_job(connection, "queued")
    late = add_job(connection, "queued")
    monkeypatch.setattr(doctor_module, "_scan_job_ids", lambda _: {early})

    snapshot = take_snapshot(connection)

    assert set(snapshot.jobs) == {early, late}
    assert snapshot.locations[late] == [("queue", ORIGIN)]


class FakeHistory:
    """The two read queries and the status correction of the history store, over a dict of rows."""

    def __init__(self, rows):
        self.rows = dict(rows)

    def fetch_all(self, name, parameters):
        if name == "doctor_job_statuses":
            return [{"id": job_id, "status": self.rows[job_id]} for job_id in parameters["ids"] if job_id in self.rows]
        if name == "doctor_unfinished_jobs":
            return [{"id": job_id, "status": status} for job_id, status in self.rows.items()
                    if status in ("pending", "delayed", "active")]
        if name == "doctor_correct_status":
            if self.rows.get(parameters["id"]) != parameters["seen"]:
                return []
            self.rows[parameters["id"]] = parameters["status"]
            return [{"id": parameters["id"]}]
        raise AssertionError(f"unexpected query {name}")


def test_history_mismatch_found_and_corrected(connection, settings):
    agreeing = add_job(connection, "queued")
    differing = add_job(connection, "failed")
    history = FakeHistory({agreeing: "pending", differing: "active"})

    checker = Doctor(connection, settings, store=history)
    report = checker.check()

    assert [(problem.code, problem.subject) for problem in report.problems] == [("history-mismatch", differing)]
    assert report.problems[0].message == "status active in PostgreSQL but failed in Redis"
    assert report.compared == 2
    checker.repair(report)
    assert history.rows[differing] == "failed"
    assert checker.check().problems == []


def test_history_not_compared_while_events_pending(connection, settings):
    job_id = add_job(connection, "finished")
    connection.rpush(keys.HISTORY_KEY, json.dumps({"e": "completed", "id": job_id, "t": 1}))

    report = Doctor(connection, settings, store=FakeHistory({job_id: "active"})).check()

    assert report.problems == []
    assert report.pending_history == 1


def test_unfinished_history_row_without_redis_data(connection, settings):
    lost = new_id()
    history = FakeHistory({lost: "active", new_id(): "completed"})

    checker = Doctor(connection, settings, store=history)
    report = checker.check()

    assert [(problem.code, problem.subject) for problem in report.problems] == [("data-lost", lost)]
    checker.repair(report)
    assert history.rows[lost] == "failed"


def test_huge_backlog_skips_history_check(connection, settings, monkeypatch):
    monkeypatch.setattr(doctor_module, "MAX_BACKLOG_EVENTS", 2)
    connection.rpush(keys.HISTORY_KEY, *["{}"] * 3)

    report = Doctor(connection, settings, store=FakeHistory({})).check()

    assert "3 events" in report.skipped["history"]


class FakeSchedules:
    def __init__(self, rows):
        self.rows = rows
        self.first_runs = {}

    def without_next_run(self, limit=1000):
        return [row for row in self.rows if row["id"] not in self.first_runs]

    def set_first_run(self, schedule_id, next_run_at):
        self.first_runs[schedule_id] = next_run_at


def test_schedule_without_next_run_gets_one(connection, settings):
    valid = {"id": new_id(), "name": "nightly", "cron_expression": "0 3 * * *", "timezone": "UTC"}
    invalid = {"id": new_id(), "name": "broken", "cron_expression": "90 * * * *", "timezone": "UTC"}
    schedules = FakeSchedules([valid, invalid])
    now = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc).timestamp()

    checker = Doctor(connection, settings, schedules=schedules, clock=lambda: now)
    report = checker.check()
    checker.repair(report)

    assert [problem.subject for problem in report.problems] == [valid["id"], invalid["id"]]
    assert schedules.first_runs == {valid["id"]: datetime(2026, 1, 6, 3, 0, tzinfo=timezone.utc)}
    assert not report.problems[1].repaired
    assert "schedule update broken" in report.problems[1].repair
