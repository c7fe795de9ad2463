"""Fixtures of the fault tests: private servers to break, an HTTP client and the doctor check.

Every fault is caused on servers and processes that the test itself started, on
127.0.0.1. Tests that break the shared Redis or PostgreSQL of the run would break
the other tests, so those tests start their own with the plugin's embedded-server
code in a directory under /tmp.
"""

import http.client
import json
import os
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import pytest

from nself_jobs.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import drain_history, free_port, run_plugin, wait_for

HANDLER_MODULES = "tests.fixtures.sample_jobs,tests.faults.fault_jobs"


@pytest.fixture
def fault_environ(environ):
    """The test environment with the fault job types registered."""
    return dict(environ, JOBS_HANDLER_MODULES=HANDLER_MODULES)


@pytest.fixture
def settings(fault_environ, tmp_path):
    from nself_jobs import jobtypes
    from nself_jobs.settings import load_settings
    loaded = load_settings(environ=fault_environ, project_dir=tmp_path)
    jobtypes.load_user_modules(HANDLER_MODULES.split(","))
    return loaded


@pytest.fixture
def start_plugin(fault_environ, tmp_path):
    """Like the suite's start_plugin, with the fault job types and a per-test environment override."""
    from tests.conftest import PluginProcess
    processes = []

    def start(*args, extra_env=None):
        log_path = tmp_path / f"process-{len(processes)}.log"
        process = PluginProcess(args, dict(fault_environ, **(extra_env or {})), tmp_path, log_path)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


def private_base(prefix):
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    # PostgreSQL runs as another user under root and must be able to enter the directory.
    os.chmod(base, 0o755)
    return base


@pytest.fixture
def own_redis():
    """A Redis for this test alone, with append-only persistence, stopped at teardown."""
    base = private_base("nself-jobs-fault-redis-")
    server = EmbeddedRedis(base / "redis", preferred_port=free_port(), appendonly=True)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster for this test alone, stopped at teardown."""
    base = private_base("nself-jobs-fault-postgres-")
    server = EmbeddedPostgres(base / "postgres", preferred_port=free_port())
    server.start(timeout_s=60)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


class Client:
    """A keep-alive HTTP/1.1 client for the plugin's server on 127.0.0.1."""

    def __init__(self, port, timeout_s=30):
        self.port = port
        self.timeout_s = timeout_s
        self.connection = None

    def request(self, method, path, body=None, headers=None):
        """Send one request and return ``(status, headers, body bytes)``; reconnect once on a dropped connection."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
            try:
                self.connection.request(method, path, body=body, headers=sent_headers)
                response = self.connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, dict(response.getheaders()), data
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, headers=None):
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data) if data else None

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def wait_for_server(port, timeout_s=30):
    def healthy():
        client = Client(port, timeout_s=2)
        try:
            return client.request("GET", "/health")[0] == 200
        except OSError:
            return False
        finally:
            client.close()

    wait_for(healthy, timeout_s=timeout_s, interval_s=0.2, message=f"the server on port {port} to answer /health")


def doctor_report(environ, cwd):
    """Run ``nself-jobs doctor --json`` and return ``(exit code, parsed output)``."""
    completed = run_plugin(["doctor", "--json"], environ, cwd)
    data = json.loads(completed.stdout) if completed.stdout.strip() else None
    return completed.returncode, data, completed.stderr


def assert_doctor_clean(environ, cwd, redis_client=None, store=None):
    """Write the history backlog when a store is given, then require a clean doctor run."""
    if redis_client is not None and store is not None:
        drain_history(redis_client, store)
    code, data, stderr = doctor_report(environ, cwd)
    assert data is not None, f"doctor printed no JSON (exit {code}): {stderr}"
    assert data["report"]["problems"] == [], "doctor found problems"
    assert code == 0, stderr
    return data["report"]


def current_memory_cgroup():
    """Return this process's cgroup v1 memory directory, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            return directory if directory.is_dir() else None
    return None


@pytest.fixture
def memory_cgroup():
    """Make a child memory cgroup of this process's own cgroup; skip where that is not possible.

    Yields ``(directory, set_limit)``. The cgroup is removed at teardown, once the
    processes moved into it have been killed.
    """
    parent = current_memory_cgroup()
    if parent is None:
        pytest.skip("no cgroup v1 memory controller at /sys/fs/cgroup/memory")
    directory = parent / f"nself-jobs-oom-{uuid.uuid4().hex[:8]}"
    try:
        directory.mkdir()
    except OSError as error:
        pytest.skip(f"cannot create a memory cgroup under {parent}: {error}")

    def set_limit(limit_bytes):
        (directory / "memory.limit_in_bytes").write_text(str(limit_bytes), encoding="ascii")

    yield directory, set_limit
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            directory.rmdir()
            return
        except OSError:
            time.sleep(0.2)
    warnings.warn(f"memory cgroup {directory} still has processes after 10 s; it was not removed")
