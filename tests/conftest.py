"""Shared fixtures: one real Redis and one real PostgreSQL for the whole session.

Set JOBS_TEST_REDIS_URL and JOBS_TEST_DATABASE_URL to use running servers;
otherwise the session starts private ones with the plugin's own embedded-server
code in a temporary directory. Each test gets an empty Redis database and its
own PostgreSQL schema, so tests never see each other's jobs.
"""

import os
import shutil
import subprocess
import tempfile
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

from nself_jobs.history import HistoryStore
from nself_jobs.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
TEST_REDIS_DB = 9


@pytest.fixture(scope="session")
def service_urls():
    redis_url = os.environ.get("JOBS_TEST_REDIS_URL")
    database_url = os.environ.get("JOBS_TEST_DATABASE_URL")
    started = []
    if not redis_url or not database_url:
        from nself_jobs.embedded import EmbeddedPostgres, EmbeddedRedis
        # Not under pytest's own temporary directory: a later pytest session run as
        # root resets that to mode 0700, which would lock out the PostgreSQL user.
        base = Path(tempfile.mkdtemp(prefix="nself-jobs-tests-"))
        os.chmod(base, 0o755)
        if not redis_url:
            server = EmbeddedRedis(base / "redis", preferred_port=16390, appendonly=False)
            redis_url = server.start()
            started.append(server)
        if not database_url:
            server = EmbeddedPostgres(base / "postgres", preferred_port=15440)
            database_url = server.start()
            started.append(server)
    yield redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url, database_url
    for server in started:
        server.stop()
    if started:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def redis_url(service_urls):
    url = f"{service_urls[0]}/{TEST_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def db_schema(service_urls):
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(service_urls[1], autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def environ(redis_url, service_urls, db_schema, tmp_path):
    """The environment a test's plugin processes see."""
    return {
        "JOBS_REDIS_URL": redis_url,
        "DATABASE_URL": service_urls[1],
        "JOBS_DB_SCHEMA": db_schema,
        "JOBS_HOME": str(tmp_path / "home"),
        "JOBS_HANDLER_MODULES": "tests.fixtures.sample_jobs",
        "JOBS_RETRY_DELAY": "0",
        "JOBS_DASHBOARD_PORT": str(free_port()),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
    }


@pytest.fixture
def settings(environ, tmp_path):
    from nself_jobs import jobtypes
    loaded = load_settings(environ=environ, project_dir=tmp_path)
    jobtypes.load_user_modules(["tests.fixtures.sample_jobs"])
    return loaded


@pytest.fixture
def store(settings):
    history = HistoryStore.from_settings(settings)
    history.apply_schema()
    return history


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PluginProcess:
    """A plugin command running as a subprocess, stopped with SIGTERM at teardown."""

    def __init__(self, args, environ, cwd, log_path):
        env = dict(environ, PYTHONPATH=f"{REPO / 'lib'}:{REPO}")
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "nself_jobs.cli.main", *args], env=env, cwd=cwd,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        self.log.flush()
        return Path(self.log_path).read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s=30):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def run_plugin(args, environ, cwd, timeout_s=60):
    """Run ``nself-jobs ARGS...`` to completion and return the CompletedProcess."""
    env = dict(environ, PYTHONPATH=f"{REPO / 'lib'}:{REPO}")
    return subprocess.run([sys.executable, "-m", "nself_jobs.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def start_plugin(environ, tmp_path):
    """Start ``nself-jobs ARGS...`` in the background; every process is stopped at teardown."""
    processes = []

    def start(*args, extra_env=None):
        log_path = tmp_path / f"process-{len(processes)}.log"
        process = PluginProcess(args, dict(environ, **(extra_env or {})), tmp_path, log_path)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


def wait_for(predicate, timeout_s=15, interval_s=0.05, message="condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {message}")


def drain_history(redis_client, store):
    """Wait until every history event is in PostgreSQL, written here or by a running process's writer."""
    from nself_jobs.history import HistoryWriter
    from nself_jobs.keys import HISTORY_KEY
    writer = HistoryWriter(redis_client, store)

    def backlog_written():
        writer.drain_all()
        return redis_client.llen(HISTORY_KEY) == 0

    wait_for(backlog_written, message="the history backlog to be written")


def submit_job(queue, settings, job_type="test-echo", payload=None, queue_name="default", **options):
    """Validate and enqueue one job the way the REST API does; return its id."""
    from nself_jobs.jobspec import parse_job_request
    body = {"type": job_type, "queue": queue_name, "payload": payload or {}, "options": options}
    return queue.enqueue(parse_job_request(body, settings))[0]


def job_status(queue, job_id):
    """Return the job's status from Redis, or None once its hash is gone."""
    job = queue.get_job(job_id)
    return job and job["status"]
