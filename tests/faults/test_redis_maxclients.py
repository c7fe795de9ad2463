"""Redis at its client limit (maxclients) while a worker command starts."""

import re
import socket
import time

import pytest

from nself_jobs.doctor import Doctor
from nself_jobs.queue import JobQueue, connect_redis
from nself_jobs.settings import load_settings
from tests.conftest import run_plugin, submit_job, wait_for
from tests.faults.conftest import assert_doctor_clean

JOBS = 30
CONCURRENCY = 4
# Free client slots when the worker command starts: fewer than the command and its
# worker processes need together. The test checks that Redis refused a connection.
FREE_SLOTS = 6


def connected_clients(connection):
    return int(connection.info("clients")["connected_clients"])


def open_idle_clients(port, count):
    """Open ``count`` TCP connections that Redis counts as clients and that never send a command."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    time.sleep(0.2)
    return sockets


def test_workers_start_when_client_slots_free(own_redis, fault_environ, store, start_plugin, tmp_path):
    environ = dict(fault_environ, JOBS_REDIS_URL=own_redis.url)
    settings = load_settings(environ=environ, project_dir=tmp_path)
    queue = JobQueue(connect_redis(own_redis.url), settings)
    log = tmp_path / "executions.log"
    ids = [submit_job(queue, settings, "test-echo", {"log": str(log)}) for _ in range(JOBS)]
    checker = Doctor(queue.redis, settings)
    assert checker.check().clean

    limit = connected_clients(queue.redis) + 40
    queue.redis.config_set("maxclients", limit)
    fillers = open_idle_clients(own_redis.port, limit - connected_clients(queue.redis))
    assert connected_clients(queue.redis) == limit

    refused = run_plugin(["worker", "-c", str(CONCURRENCY)], environ, tmp_path)
    assert refused.returncode == 4
    assert "max number of clients reached" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    assert checker.check().clean
    assert queue.counts()["default"]["waiting"] == JOBS

    for filler in fillers[:FREE_SLOTS]:
        filler.close()
    del fillers[:FREE_SLOTS]
    worker = start_plugin("worker", "-c", str(CONCURRENCY), extra_env=environ)
    wait_for(lambda: "max number of clients reached" in worker.output(), timeout_s=30,
             message="a worker process to be refused by Redis")
    report = checker.check()
    assert report.problems == []
    time.sleep(3)
    assert checker.check().problems == []
    released_at = time.monotonic()
    for filler in fillers:
        filler.close()

    wait_for(lambda: queue.redis.zcard("nself:jobs:workers") == CONCURRENCY, timeout_s=30, interval_s=0.2,
             message="every worker process to register")
    print(f"all {CONCURRENCY} worker processes registered {time.monotonic() - released_at:.2f} s "
          "after the client slots were freed")
    wait_for(lambda: queue.counts()["default"]["completed"] == JOBS, timeout_s=60,
             message="every job to complete")
    executions = re.findall(r"^echo (\S+) ", log.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(executions) == sorted(ids)
    assert worker.process.poll() is None
    assert "exited with code" not in worker.output()
    assert "Traceback" not in worker.output()
    assert_doctor_clean(environ, tmp_path, queue.redis, store)
