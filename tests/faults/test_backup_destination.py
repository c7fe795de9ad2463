"""database-backup jobs run by a worker into a full and a read-only destination, then a good one."""

import os
import sys
from pathlib import Path

import pytest

from nself_jobs.queue import JobQueue
from nself_jobs.settings import load_settings
from tests.conftest import drain_history, job_status, submit_job, wait_for
from tests.faults.conftest import assert_doctor_clean

# test_database_backup imports its helpers as the top-level module _backup_fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_database_backup import mount_tmpfs  # noqa: E402,F401  (a fixture, used by name)


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def run_backup(queue, settings, destination):
    job_id = submit_job(queue, settings, "database-backup",
                        {"destination": str(destination), "compress": "none", "encrypt": False}, maxRetries=0)
    wait_for(lambda: job_status(queue, job_id) in ("completed", "failed"), timeout_s=60,
             message=f"the backup into {destination} to end")
    return job_id


def test_backup_fails_cleanly_then_next_one_works(queue, settings, store, start_plugin, fault_environ,
                                                  tmp_path, mount_tmpfs):
    full = mount_tmpfs("full", "size=64k,mode=0700")
    read_only = mount_tmpfs("read-only", "size=1m,ro")
    good = tmp_path / "good"
    good.mkdir()
    environ = dict(fault_environ, JOBS_BACKUP_ALLOWED_DIRS=f"{full},{read_only},{good}")
    settings = load_settings(environ=environ, project_dir=tmp_path)
    # About 1 MB of rows in the test's own schema, so the dump cannot fit the 64 KiB file system.
    with store.connect(autocommit=True) as connection:
        connection.execute("CREATE TABLE ballast AS SELECT g AS id, md5(g::text) AS text "
                           "FROM generate_series(1, 20000) AS g")
    worker = start_plugin("worker", "-c", "1", extra_env=environ)

    outcomes = {}
    for name, destination in (("full", full), ("read-only", read_only), ("good", good)):
        job_id = run_backup(queue, settings, destination)
        outcomes[name] = (job_id, job_status(queue, job_id), queue.get_job(job_id))

    assert outcomes["full"][1] == "failed"
    assert "No space left on device" in outcomes["full"][2]["error"]
    assert outcomes["read-only"][1] == "failed"
    assert "Read-only file system" in outcomes["read-only"][2]["error"]
    assert os.listdir(full) == []
    assert os.listdir(read_only) == []

    assert outcomes["good"][1] == "completed"
    result = outcomes["good"][2]["result"]
    backup = Path(result["path"])
    assert backup.parent == good
    assert backup.stat().st_size == result["sizeBytes"] > 0
    assert b"PostgreSQL database dump" in backup.read_bytes()[:4096]
    assert "exited with code" not in worker.output()
    drain_history(queue.redis, store)
    assert_doctor_clean(environ, tmp_path, queue.redis, store)
