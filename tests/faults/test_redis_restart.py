"""Redis shut down and started again while clients submit jobs and workers run them."""

import threading
import time

import pytest

from nself_jobs.queue import JobQueue, connect_redis
from nself_jobs.settings import load_settings
from tests.conftest import drain_history, wait_for
from tests.faults.conftest import Client, assert_doctor_clean, wait_for_server

pytestmark = pytest.mark.faults

CLIENTS = 4
LOAD_BEFORE_S = 4
DOWN_S = 3
LOAD_AFTER_S = 8


class Submitter(threading.Thread):
    """POST test-echo jobs in a loop; keep the ids the server acknowledged with 201."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.client = Client(port, timeout_s=10)
        self.stop = stop
        self.acknowledged = []
        self.refused = []
        self.errors = []

    def run(self):
        body = {"type": "test-echo", "payload": {"value": "x"}, "options": {"maxRetries": 0}}
        while not self.stop.is_set():
            try:
                status, data = self.client.json("POST", "/api/jobs", body)
            except OSError as error:
                self.errors.append((time.monotonic(), repr(error)))
                time.sleep(0.1)
                continue
            if status == 201:
                self.acknowledged.append((time.monotonic(), data["id"]))
            else:
                self.refused.append((time.monotonic(), status, data))
                time.sleep(0.1)
        self.client.close()


def test_redis_restart_loses_no_acknowledged_job(own_redis, fault_environ, store, start_plugin, tmp_path):
    environ = dict(fault_environ, JOBS_REDIS_URL=own_redis.url)
    settings = load_settings(environ=environ, project_dir=tmp_path)
    port = int(environ["JOBS_DASHBOARD_PORT"])
    server = start_plugin("server", extra_env=environ)
    worker = start_plugin("worker", "-c", "3", extra_env=environ)
    wait_for_server(port)

    stop = threading.Event()
    submitters = [Submitter(port, stop) for _ in range(CLIENTS)]
    for submitter in submitters:
        submitter.start()
    time.sleep(LOAD_BEFORE_S)
    own_redis.stop()
    stopped_at = time.monotonic()
    time.sleep(DOWN_S)
    own_redis.start()
    restarted_at = time.monotonic()
    time.sleep(LOAD_AFTER_S)
    stop.set()
    for submitter in submitters:
        submitter.join(30)

    acknowledged = [entry for submitter in submitters for entry in submitter.acknowledged]
    refused = [entry for submitter in submitters for entry in submitter.refused]
    errors = [entry for submitter in submitters for entry in submitter.errors]
    ids = [job_id for _, job_id in acknowledged]
    first_after = min(at for at, _ in acknowledged if at > restarted_at) - restarted_at
    queue = JobQueue(connect_redis(own_redis.url), settings)

    def every_job_ended():
        pipeline = queue.redis.pipeline(transaction=False)
        for job_id in ids:
            pipeline.hget(f"rq:job:{job_id}", "status")
        return all(status in ("finished", "failed") for status in pipeline.execute())

    wait_for(every_job_ended, timeout_s=120, interval_s=0.5, message="every acknowledged job to end")
    pipeline = queue.redis.pipeline(transaction=False)
    for job_id in ids:
        pipeline.hget(f"rq:job:{job_id}", "status")
    statuses = dict(zip(ids, pipeline.execute()))
    not_completed = {job_id: status for job_id, status in statuses.items() if status != "finished"}

    print(f"{len(ids)} jobs acknowledged, {len(refused)} requests refused while Redis was down "
          f"(statuses {sorted({status for _, status, _ in refused})}), {len(errors)} connection errors; "
          f"Redis down for {restarted_at - stopped_at:.1f} s; first 201 {first_after:.2f} s after the restart")
    assert len(set(ids)) == len(ids)
    assert not_completed == {}
    assert {status for _, status, _ in refused} <= {503}
    assert errors == []
    assert first_after < 5
    assert server.process.poll() is None
    assert worker.process.poll() is None
    assert "exited with code" not in worker.output()
    assert "Traceback" not in worker.output()

    drain_history(queue.redis, store)
    rows = store.fetch_all("doctor_job_statuses", {"ids": ids})
    assert len(rows) == len(ids)
    assert {row["status"] for row in rows} == {"completed"}
    assert_doctor_clean(environ, tmp_path, queue.redis, store)
