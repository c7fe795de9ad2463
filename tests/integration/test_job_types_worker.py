"""The built-in job types run end to end by a real worker command.

Jobs go in through the in-process REST app, a ``nself-jobs worker`` subprocess runs
them, and the tests check what arrived at local stubs: an HTTP server and an SMTP
server (aiosmtpd) on 127.0.0.1, the test PostgreSQL for backups and history cleanup.
No test connects anywhere but loopback.
"""

import gzip
import hashlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from _http_fixtures import LocalHttpServer, Reply
from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from nself_jobs.settings import load_settings
from tests.conftest import drain_history, free_port, run_plugin, wait_for
from tests.wsgi import call

EXIT_CONFLICT = 10


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


@pytest.fixture
def http_server():
    server = LocalHttpServer()
    yield server
    server.close()


@pytest.fixture
def start_smtp_server():
    """Start aiosmtpd servers on 127.0.0.1. Each one is stopped after the test."""
    controllers = []

    def start(handler, port):
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)

    yield start
    for controller in controllers:
        controller.stop()


class RecordingSmtpHandler:
    """An aiosmtpd handler that stores every accepted message, or replies to each RCPT with ``rcpt_reply``."""

    def __init__(self, rcpt_reply=None):
        self.rcpt_reply = rcpt_reply
        self.rcpt_attempts = []
        self.envelopes = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_attempts.append(address)
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def smtp_environment(port):
    return {
        "JOBS_SMTP_HOST": "127.0.0.1",
        "JOBS_SMTP_PORT": str(port),
        "JOBS_SMTP_SECURITY": "none",
        "JOBS_SMTP_FROM": "Billing <billing@example.test>",
        "JOBS_SMTP_TIMEOUT": "5000",
    }


def submit(app, job_type, payload, **options):
    response = call(app, "POST", "/api/jobs", {"type": job_type, "payload": payload, "options": options})
    assert response.status == 201, response.body
    return response.json()["id"]


def job(app, job_id):
    response = call(app, "GET", f"/api/jobs/{job_id}")
    assert response.status == 200, response.body
    return response.json()


def status_of(queue, job_id):
    live = queue.get_job(job_id)
    return live and live["status"]


def wait_ended(queue, job_ids, timeout_s=30):
    wait_for(lambda: all(status_of(queue, job_id) in ("completed", "failed") for job_id in job_ids),
             timeout_s=timeout_s, message=f"{len(job_ids)} jobs to end")


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------ http-request: retries and deadline


@pytest.mark.parametrize("max_retries, executions", [(0, 1), (1, 2), (3, 4)])
def test_failing_request_runs_retries_plus_one(app, queue, store, start_plugin, http_server, max_retries,
                                               executions):
    http_server.reply("/always-500", Reply(500, body=b"internal error"))
    payload = {"url": http_server.url("/always-500"), "retryOn": [500]}
    job_id = submit(app, "http-request", payload, maxRetries=max_retries, retryDelay=0)

    start_plugin("worker", "-c", "2")
    wait_ended(queue, [job_id])
    drain_history(queue.redis, store)
    details = job(app, job_id)

    assert len(http_server.requests_to("/always-500")) == executions
    assert details["status"] == "failed"
    assert [failure["attempt"] for failure in details["failures"]] == list(range(1, executions + 1))
    assert all("returned 500" in failure["error"] for failure in details["failures"])
    assert details["attempts"] == executions
    assert details["attemptLabel"] == f"{executions}/{max_retries + 1}"


def test_unlisted_status_fails_at_once(app, queue, store, start_plugin, http_server):
    http_server.reply("/always-500", Reply(500, body=b"internal error"))
    job_id = submit(app, "http-request", {"url": http_server.url("/always-500")}, maxRetries=3, retryDelay=0)

    start_plugin("worker", "-c", "2")
    wait_ended(queue, [job_id])
    drain_history(queue.redis, store)
    details = job(app, job_id)

    assert len(http_server.requests_to("/always-500")) == 1
    assert details["status"] == "failed"
    assert len(details["failures"]) == 1
    assert "internal error" in details["failures"][0]["error"]
    assert details["attemptLabel"] == "1/4"


@pytest.fixture
def trickle_stop():
    """An event that ends every trickling response when the test is over."""
    stop = threading.Event()
    yield stop
    stop.set()


def trickle_forever(stop):
    """Return a route that sends a response head, then one body byte per second until ``stop`` or a closed socket."""

    def respond(_request, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        try:
            while not stop.is_set():
                handler.wfile.write(b"x")
                handler.wfile.flush()
                stop.wait(1.0)
        except OSError:
            pass  # the job gave up and closed the connection
        return None

    return respond


def test_trickling_server_hits_job_deadline(app, queue, store, start_plugin, http_server, trickle_stop):
    http_server.route("/trickle", trickle_forever(trickle_stop))
    http_server.reply("/ok", Reply(200, json_body={"ok": True}))
    slow = submit(app, "http-request", {"url": http_server.url("/trickle")}, timeout=3000, maxRetries=0)
    after = submit(app, "http-request", {"url": http_server.url("/ok")}, maxRetries=0)

    # One worker process, so the second job runs in the process whose job timed out.
    start_plugin("worker", "-c", "1")
    wait_ended(queue, [slow, after])
    time.sleep(1)
    drain_history(queue.redis, store)
    slow_details = job(app, slow)
    after_details = job(app, after)
    run_s = (parse_time(slow_details["completedAt"]) - parse_time(slow_details["startedAt"])).total_seconds()

    assert slow_details["status"] == "failed"
    assert slow_details["error"] == "timed out after 3000 ms"
    assert [failure["error"] for failure in slow_details["failures"]] == ["timed out after 3000 ms"]
    assert 2.9 <= run_s <= 4.5
    assert len(http_server.requests_to("/trickle")) == 1
    assert after_details["status"] == "completed"
    assert after_details["attempts"] == 1
    assert after_details["result"]["status"] == 200
    assert len(http_server.requests_to("/ok")) == 1


# ------------------------------------------------------------------ send-email: bulk retry and SMTP replies


def sample_failed_counts(queue, stop, samples):
    while not stop.is_set():
        samples.append(queue.counts()["default"]["failed"])
        time.sleep(0.01)


def test_bulk_retry_sends_each_email_once(environ, tmp_path, store, start_plugin, start_smtp_server):
    smtp_port = free_port()
    smtp_env = smtp_environment(smtp_port)
    email_environ = dict(environ, **smtp_env)
    email_settings = load_settings(environ=email_environ, project_dir=tmp_path)
    queue = JobQueue.from_settings(email_settings)
    app = create_app(email_settings, store=store)
    recipients = [f"customer{index:02d}@example.test" for index in range(20)]
    ids = [submit(app, "send-email", {"to": recipient, "subject": "Your invoice", "text": "Attached."},
                  maxRetries=0)
           for recipient in recipients]

    # Nothing listens on smtp_port yet, so every attempt fails with a refused connection.
    first_worker = start_plugin("worker", "-c", "2", extra_env=smtp_env)
    wait_for(lambda: all(status_of(queue, job_id) == "failed" for job_id in ids), timeout_s=60,
             message="the e-mails to fail")
    assert queue.counts()["default"]["failed"] == 20
    # The worker is stopped while both retries run, as if it were busy with other work: a job
    # retried, run and failed again in between would be a new failure that a retry may take.
    first_worker.stop()

    samples = []
    stop_sampling = threading.Event()
    sampler = threading.Thread(target=sample_failed_counts, args=(queue, stop_sampling, samples))
    sampler.start()
    results = []

    def bulk_retry():
        results.append(run_plugin(["retry", "--limit", "100", "--json"], email_environ, tmp_path))

    retry_threads = [threading.Thread(target=bulk_retry) for _ in range(2)]
    for thread in retry_threads:
        thread.start()
    for thread in retry_threads:
        thread.join()
    start_plugin("worker", "-c", "2", extra_env=smtp_env)
    wait_for(lambda: all(status_of(queue, job_id) == "failed" and queue.get_job(job_id)["attempts"] >= 2
                         for job_id in ids), timeout_s=60, message="the retried e-mails to fail again")
    time.sleep(1)
    stop_sampling.set()
    sampler.join()
    drain_history(queue.redis, store)
    retried = [job_id for result in results if result.returncode == 0 for job_id in json.loads(result.stdout)["jobs"]]
    retried_counts = Counter(retried)

    assert sorted(result.returncode for result in results) in ([0, 0], [0, 7])
    assert [job_id for job_id, count in retried_counts.items() if count > 1] == []
    assert sorted(retried_counts) == sorted(ids)
    assert max(samples) == 20
    assert queue.counts()["default"]["failed"] == 20
    for job_id in ids:
        _, _, failures = store.job_history(job_id)
        assert [failure["attempt_number"] for failure in failures] == [1, 2], job_id

    handler = RecordingSmtpHandler()
    start_smtp_server(handler, smtp_port)
    result = run_plugin(["retry", "--limit", "100", "--json"], email_environ, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["retried"] == 20
    wait_for(lambda: all(status_of(queue, job_id) == "completed" for job_id in ids), timeout_s=60,
             message="the e-mails to be sent")
    delivered = Counter(address for envelope in handler.envelopes for address in envelope.rcpt_tos)

    assert delivered == Counter(recipients)
    assert len(handler.envelopes) == 20

    result = run_plugin(["retry", "--id", ids[0]], email_environ, tmp_path)
    time.sleep(1.5)

    assert result.returncode == EXIT_CONFLICT
    assert "not failed" in result.stderr
    assert status_of(queue, ids[0]) == "completed"
    assert len(handler.envelopes) == 20


@pytest.mark.parametrize("rcpt_reply, max_retries, executions", [
    pytest.param("550 5.1.1 No such user", 2, 1, id="permanent-5xx"),
    pytest.param("451 4.3.0 Try again later", 1, 2, id="temporary-4xx"),
])
def test_smtp_reply_class_decides_retry(environ, tmp_path, store, start_plugin, start_smtp_server, rcpt_reply,
                                        max_retries, executions):
    smtp_port = free_port()
    smtp_env = smtp_environment(smtp_port)
    email_settings = load_settings(environ=dict(environ, **smtp_env), project_dir=tmp_path)
    queue = JobQueue.from_settings(email_settings)
    app = create_app(email_settings, store=store)
    handler = RecordingSmtpHandler(rcpt_reply=rcpt_reply)
    start_smtp_server(handler, smtp_port)
    job_id = submit(app, "send-email", {"to": "gone@example.test", "subject": "Hello", "text": "Hi"},
                    maxRetries=max_retries, retryDelay=0)

    start_plugin("worker", "-c", "2", extra_env=smtp_env)
    wait_ended(queue, [job_id])
    time.sleep(1)
    drain_history(queue.redis, store)
    details = job(app, job_id)

    assert handler.rcpt_attempts == ["gone@example.test"] * executions
    assert handler.envelopes == []
    assert details["status"] == "failed"
    assert len(details["failures"]) == executions
    assert rcpt_reply in details["failures"][-1]["error"]


# ------------------------------------------------------------------ database-backup


def test_database_backup_through_worker(app, queue, settings, start_plugin):
    job_id = submit(app, "database-backup", {}, maxRetries=0)

    start_plugin("worker", "-c", "2")
    wait_ended(queue, [job_id], timeout_s=90)
    details = job(app, job_id)

    assert details["status"] == "completed", details["error"]
    result = details["result"]
    path = Path(result["path"])
    data = path.read_bytes()
    text = gzip.decompress(data).decode("utf-8")
    assert path.parent == Path(os.path.realpath(settings.home_dir / "backups" / "jobs"))
    assert path.name.endswith(".sql.gz")
    assert path.stat().st_mode & 0o777 == 0o600
    assert result["sizeBytes"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["format"] == "plain"
    assert result["compressed"] is True
    assert result["encrypted"] is False
    assert result["removedBackups"] == []
    assert "PostgreSQL database dump" in text
    assert f"CREATE TABLE {settings.db_schema}.jobs" in text


# ------------------------------------------------------------------ file-cleanup of job history


def insert_history_job(connection, status, created_at, completed_at=None, results=0, failures=0):
    job_id = uuid.uuid4()
    connection.execute(
        "INSERT INTO jobs (id, type, queue, status, payload, created_at, started_at, completed_at) "
        "VALUES (%s, 'test-echo', 'default', %s, '{}', %s, %s, %s)",
        [job_id, status, created_at, completed_at, completed_at])
    for attempt in range(1, results + 1):
        connection.execute(
            "INSERT INTO job_results (id, job_id, result, duration_ms, completed_at, attempt_number) "
            "VALUES (%s, %s, '{}', 5, %s, %s)", [uuid.uuid4(), job_id, completed_at, attempt])
    for attempt in range(1, failures + 1):
        connection.execute(
            "INSERT INTO job_failures (id, job_id, attempt_number, error_message, failed_at) "
            "VALUES (%s, %s, %s, 'expected failure', %s)", [uuid.uuid4(), job_id, attempt, completed_at])
    return str(job_id)


def count_rows(store, table, job_ids):
    column = "id" if table == "jobs" else "job_id"
    with store.connect(autocommit=True) as connection:
        row = connection.execute(f"SELECT count(*) AS n FROM {table} WHERE {column}::text = ANY(%s)",
                                 [list(job_ids)]).fetchone()
    return row["n"]


def test_history_cleanup_removes_old_rows(app, queue, store, start_plugin):
    now = datetime.now(timezone.utc)
    with store.connect() as connection:
        expired = [
            insert_history_job(connection, "completed", now - timedelta(days=3), now - timedelta(days=2), results=1),
            insert_history_job(connection, "failed", now - timedelta(days=9), now - timedelta(days=8), failures=2),
            insert_history_job(connection, "completed", now - timedelta(days=2)),
        ]
        unexpired = [
            insert_history_job(connection, "completed", now - timedelta(hours=2), now - timedelta(hours=1),
                               results=1),
            insert_history_job(connection, "failed", now - timedelta(days=3), now - timedelta(days=2), failures=1),
            insert_history_job(connection, "pending", now - timedelta(days=30)),
        ]
    start_plugin("worker", "-c", "2")

    dry_run = submit(app, "file-cleanup", {"target": "jobs", "dryRun": True}, maxRetries=0)
    wait_ended(queue, [dry_run])
    dry_result = job(app, dry_run)["result"]

    assert dry_result["matched"] == {"jobs": 3, "job_results": 1, "job_failures": 2}
    assert dry_result["deleted"] == {"jobs": 0, "job_results": 0, "job_failures": 0}
    assert count_rows(store, "jobs", expired) == 3

    cleanup = submit(app, "file-cleanup", {"target": "jobs"}, maxRetries=0)
    wait_ended(queue, [cleanup])
    details = job(app, cleanup)
    result = details["result"]
    # Without ages in the payload, JOBS_CLEAN_COMPLETED_AFTER (1 day) and JOBS_CLEAN_FAILED_AFTER (7 days) apply.
    default_gap = parse_time(result["completedBefore"]) - parse_time(result["failedBefore"])

    assert details["status"] == "completed", details["error"]
    assert result["deleted"] == {"jobs": 3, "job_results": 1, "job_failures": 2}
    assert default_gap == timedelta(days=6)
    assert count_rows(store, "jobs", expired) == 0
    assert count_rows(store, "job_results", expired) == 0
    assert count_rows(store, "job_failures", expired) == 0
    assert count_rows(store, "jobs", unexpired) == 3
    assert count_rows(store, "job_results", unexpired) == 1
    assert count_rows(store, "job_failures", unexpired) == 1
