"""The doctor command on a real Redis and PostgreSQL, with the queue corrupted on purpose."""

import json
import threading
import uuid

import psycopg
import pytest

from nself_jobs import keys
from nself_jobs.doctor import Doctor
from nself_jobs.history.schedules import ScheduleStore
from nself_jobs.queue import JobQueue
from nself_jobs.worker import Worker
from tests.conftest import drain_history, job_status, run_plugin, submit_job, wait_for

ORIGIN = "default:normal"


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def doctor_json(environ, tmp_path, *args):
    completed = run_plugin(["doctor", "--json", *args], environ, tmp_path)
    return completed.returncode, json.loads(completed.stdout) if completed.stdout.strip() else None, completed.stderr


def problem_codes(data, key="report"):
    return sorted((problem["check"], problem["code"]) for problem in data[key]["problems"])


def execute_sql(settings, statement, parameters=None):
    with psycopg.connect(settings.database_url, autocommit=True,
                         options=f"-c search_path={settings.db_schema}") as connection:
        return connection.execute(statement, parameters).rowcount


def test_clean_queue_exits_zero(queue, settings, store, environ, tmp_path):
    submit_job(queue, settings)
    drain_history(queue.redis, store)

    code, data, _ = doctor_json(environ, tmp_path)

    assert code == 0
    assert data["clean"] is True
    assert data["report"]["jobs"] == 1
    assert data["report"]["historyCompared"] == 1


def test_corruptions_found_and_repaired(queue, settings, store, environ, tmp_path):
    twice_listed = submit_job(queue, settings, "test-echo")
    wrong_status = submit_job(queue, settings, "test-echo")
    claimed = submit_job(queue, settings, "test-echo", queue_name="high-priority", maxRetries=1, retryDelay=0)
    history_behind = submit_job(queue, settings, "test-echo", queue_name="low-priority")
    data_lost = submit_job(queue, settings, "test-echo", queue_name="low-priority")
    drain_history(queue.redis, store)

    # A job id in two lists: its own queue and a second priority level.
    queue.redis.rpush(keys.queue_key("default:high"), twice_listed)
    # A queued job whose hash status is failed.
    queue.redis.hset(keys.job_key(wrong_status), "status", "failed")
    # A running job of a worker that died: claimed by the claim script, no heartbeat ever written.
    ghost = Worker(settings, ["high-priority"], name="ghost.1.dead")
    assert ghost.claim()[0] == claimed
    # PostgreSQL missed a write.
    execute_sql(settings, "UPDATE jobs SET status = 'active' WHERE id = %s", [history_behind])
    # Redis lost a job that PostgreSQL still shows as pending.
    queue.redis.lrem(keys.queue_key("low-priority:normal"), 0, data_lost)
    queue.redis.delete(keys.job_key(data_lost))
    drain_history(queue.redis, store)

    code, data, _ = doctor_json(environ, tmp_path)

    assert code == 11
    # The hash status changed to failed disagrees with its location and with the history status, pending.
    assert problem_codes(data) == [("history", "data-lost"), ("history", "history-mismatch"),
                                   ("history", "history-mismatch"), ("placement", "misplaced"),
                                   ("placement", "misplaced"), ("workers", "worker-lost")]
    subjects = {problem["subject"] for problem in data["report"]["problems"]}
    assert subjects == {twice_listed, wrong_status, claimed, history_behind, data_lost}

    code, data, _ = doctor_json(environ, tmp_path, "--repair")

    assert code == 0
    assert all(problem["repaired"] for problem in data["report"]["problems"])
    assert data["afterRepair"]["clean"] is True
    assert queue.redis.lrange(keys.queue_key("default:high"), 0, -1) == []
    assert queue.redis.zscore(keys.registry_key("failed", ORIGIN), wrong_status) is not None
    assert job_status(queue, claimed) == "pending"
    drain_history(queue.redis, store)
    assert store.job_history(history_behind)[0]["status"] == "pending"
    row, _, _ = store.job_history(data_lost)
    assert row["status"] == "failed"
    assert "missing from Redis" in row["last_error"]
    _, _, failures = store.job_history(claimed)
    assert [failure["error_message"] for failure in failures] == ["worker lost"]

    code, data, _ = doctor_json(environ, tmp_path)
    assert code == 0


def test_recovered_job_runs_after_repair(queue, settings, store, start_plugin, environ, tmp_path):
    job_id = submit_job(queue, settings, "test-echo", maxRetries=1, retryDelay=0)
    Worker(settings, ["default"], name="ghost.2.dead").claim()

    assert doctor_json(environ, tmp_path, "--repair")[0] == 0
    start_plugin("worker", "-c", "1")

    wait_for(lambda: job_status(queue, job_id) == "completed", message="the recovered job to run")
    drain_history(queue.redis, store)
    assert doctor_json(environ, tmp_path)[0] == 0


def test_history_row_missing_is_inserted(queue, settings, store, environ, tmp_path):
    job_id = submit_job(queue, settings, "test-echo", payload={"value": "中文 ✓"})
    drain_history(queue.redis, store)
    execute_sql(settings, "DELETE FROM jobs WHERE id = %s", [job_id])

    code, data, _ = doctor_json(environ, tmp_path, "--repair")

    assert problem_codes(data) == [("history", "history-missing")]
    assert code == 0
    row, _, _ = store.job_history(job_id)
    assert row["status"] == "pending"
    assert row["payload"] == {"value": "中文 ✓"}


def test_schedule_without_next_run_repaired(queue, settings, store, environ, tmp_path):
    schedule_id = str(uuid.uuid4())
    execute_sql(settings, "INSERT INTO job_schedules (id, name, type, cron_expression, payload, enabled) "
                          "VALUES (%s, 'nightly', 'test-echo', '0 3 * * *', '{}', true)", [schedule_id])

    code, data, _ = doctor_json(environ, tmp_path)
    assert code == 11
    assert problem_codes(data) == [("schedules", "no-next-run")]

    code, data, _ = doctor_json(environ, tmp_path, "--repair")
    assert code == 0
    assert ScheduleStore(store).without_next_run() == []


def test_postgres_down_still_checks_redis(queue, settings, environ, tmp_path):
    job_id = submit_job(queue, settings)
    queue.redis.rpush(keys.queue_key(ORIGIN), job_id)
    down = dict(environ, DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/none")

    code, data, _ = doctor_json(down, tmp_path)

    assert code == 11
    assert problem_codes(data) == [("placement", "misplaced")]
    assert "PostgreSQL unreachable" in data["report"]["skipped"]["history"]

    queue.redis.lrem(keys.queue_key(ORIGIN), 1, job_id)
    code, data, _ = doctor_json(down, tmp_path)
    assert code == 5
    assert data["clean"] is True


def test_redis_down_exits_4(environ, tmp_path):
    completed = run_plugin(["doctor"], dict(environ, JOBS_REDIS_URL="redis://127.0.0.1:1/0"), tmp_path)

    assert completed.returncode == 4
    assert "Redis connection to 127.0.0.1:1 failed" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_no_false_alarm_while_workers_run(queue, settings, store, start_plugin):
    ids = [submit_job(queue, settings, "test-echo") for _ in range(300)]
    ids += [submit_job(queue, settings, "test-fail", maxRetries=1, retryDelay=0) for _ in range(50)]
    ids += [submit_job(queue, settings, "test-echo", delay=300) for _ in range(50)]
    start_plugin("worker", "-c", "2")
    checker = Doctor(queue.redis, settings, store=store, schedules=ScheduleStore(store))
    reports = []
    done = threading.Event()

    def check_until_done():
        while not done.is_set():
            reports.append(checker.check())

    thread = threading.Thread(target=check_until_done)
    thread.start()
    try:
        wait_for(lambda: all(job_status(queue, job_id) in ("completed", "failed") for job_id in ids),
                 timeout_s=120, interval_s=0.5, message="every job to end")
    finally:
        done.set()
        thread.join()
    drain_history(queue.redis, store)
    reports.append(checker.check())

    assert len(reports) >= 3
    assert [problem.as_dict() for report in reports for problem in report.problems] == []
    assert reports[-1].compared == len(ids)
