"""The file-cleanup job on real directory trees, and its jobs target on a private PostgreSQL server."""

import os
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from _backup_fixtures import free_port, start_postgres
from nself_jobs.errors import JobFailed, JobTimeout, ServiceUnavailable
from nself_jobs.jobtypes import JobContext, file_cleanup
from nself_jobs.settings import load_settings

HOUR_S = 3600
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def settings(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return load_settings(environ={"HOME": str(home)}, project_dir=tmp_path)


@pytest.fixture
def root(tmp_path):
    directory = tmp_path / "root"
    directory.mkdir()
    return directory


def make_file(path, age_s, content="x"):
    """Create ``path`` with a modification time ``age_s`` seconds before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    stamp = NOW.timestamp() - age_s
    os.utime(path, (stamp, stamp))
    return path


def make_symlink(path, target, age_s):
    os.symlink(target, path)
    stamp = NOW.timestamp() - age_s
    os.utime(path, (stamp, stamp), follow_symlinks=False)
    return path


def clean(settings, payload, timeout_ms=60_000, clock=time.monotonic):
    normalised = file_cleanup.validate(payload, settings)
    ctx = JobContext("job-1", 1, settings, timeout_ms, clock=clock)
    return file_cleanup.run(normalised, ctx, now=NOW)


def files_payload(root, pattern, older_than_ms=HOUR_S * 1000, dry_run=False):
    return {"target": "files", "root": str(root), "pattern": pattern, "olderThanMs": older_than_ms, "dryRun": dry_run}


def listing(directory):
    """Return every path under ``directory``, relative and sorted, without following symlinks."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            paths.append(os.path.relpath(os.path.join(dirpath, name), directory))
    return sorted(paths)


# --- Target "files" ---------------------------------------------------------------------------


def test_old_matching_files_are_deleted(settings, root):
    make_file(root / "a.tmp", 2 * HOUR_S, "12345")
    make_file(root / "deep" / "er" / "b.tmp", 3 * HOUR_S, "123")
    make_file(root / "fresh.tmp", 60)
    make_file(root / "old.log", 5 * HOUR_S)

    result = clean(settings, files_payload(root, "**/*.tmp"))

    assert listing(root) == ["deep", "deep/er", "fresh.tmp", "old.log"]
    assert result["matched"] == 2
    assert result["deleted"] == 2
    assert result["sizeBytes"] == 8
    assert result["errorCount"] == 0
    assert sorted(result["paths"]) == [str(root / "a.tmp"), str(root / "deep" / "er" / "b.tmp")]


def test_top_level_pattern_does_not_descend(settings, root):
    make_file(root / "a.log", 2 * HOUR_S)
    make_file(root / "sub" / "b.log", 2 * HOUR_S)

    result = clean(settings, files_payload(root, "*.log"))

    assert listing(root) == ["sub", "sub/b.log"]
    assert result["deleted"] == 1


def test_dry_run_lists_without_deleting(settings, root):
    make_file(root / "a.log", 2 * HOUR_S)
    make_file(root / "b.log", 2 * HOUR_S)
    before = listing(root)

    result = clean(settings, files_payload(root, "*.log", dry_run=True))

    assert listing(root) == before
    assert result["dryRun"] is True
    assert result["matched"] == 2
    assert result["deleted"] == 0
    assert sorted(result["paths"]) == [str(root / "a.log"), str(root / "b.log")]


def test_age_zero_matches_new_files(settings, root):
    make_file(root / "new.log", 0.5)

    result = clean(settings, files_payload(root, "*.log", older_than_ms=0))

    assert result["deleted"] == 1
    assert listing(root) == []


def test_symlinked_directory_is_not_followed(settings, root, tmp_path):
    outside = tmp_path / "outside"
    make_file(outside / "victim.tmp", 10 * HOUR_S)
    make_file(outside / "nested" / "victim.tmp", 10 * HOUR_S)
    make_symlink(root / "escape", outside, 10 * HOUR_S)

    result = clean(settings, files_payload(root, "**/*.tmp"))

    assert (outside / "victim.tmp").exists()
    assert (outside / "nested" / "victim.tmp").exists()
    assert (root / "escape").is_symlink()
    assert result["matched"] == 0


def test_symlinked_pattern_directory_not_followed(settings, root, tmp_path):
    outside = tmp_path / "outside"
    make_file(outside / "victim.log", 10 * HOUR_S)
    make_symlink(root / "logs", outside, 10 * HOUR_S)

    result = clean(settings, files_payload(root, "logs/*.log"))

    assert (outside / "victim.log").exists()
    assert result["matched"] == 0


def test_matching_symlink_is_unlinked_not_its_target(settings, root, tmp_path):
    outside = tmp_path / "outside"
    victim = make_file(outside / "victim.tmp", 10 * HOUR_S)
    make_symlink(root / "link.tmp", victim, 10 * HOUR_S)
    make_symlink(root / "linked-dir.tmp", outside, 10 * HOUR_S)

    result = clean(settings, files_payload(root, "*.tmp"))

    assert listing(root) == []
    assert victim.read_text() == "x"
    assert outside.is_dir()
    assert result["deleted"] == 2


def test_symlink_age_is_its_own(settings, root, tmp_path):
    old_target = make_file(tmp_path / "old-target.tmp", 10 * HOUR_S)
    make_symlink(root / "new-link.tmp", old_target, 60)

    result = clean(settings, files_payload(root, "*.tmp"))

    assert (root / "new-link.tmp").is_symlink()
    assert result["matched"] == 0


def test_dangling_symlink_is_deleted(settings, root, tmp_path):
    make_symlink(root / "dangling.tmp", tmp_path / "nothing-here", 10 * HOUR_S)

    result = clean(settings, files_payload(root, "*.tmp"))

    assert listing(root) == []
    assert result["deleted"] == 1


def test_root_given_through_symlink_is_resolved(settings, root, tmp_path):
    make_file(root / "a.log", 2 * HOUR_S)
    os.symlink(root, tmp_path / "root-link")

    result = clean(settings, files_payload(tmp_path / "root-link", "*.log"))

    assert result["root"] == str(root)
    assert result["paths"] == [str(root / "a.log")]
    assert listing(root) == []


def test_directories_and_special_files_are_kept(settings, root):
    (root / "dir.tmp").mkdir()
    os.utime(root / "dir.tmp", (0, 0))
    os.mkfifo(root / "pipe.tmp")
    os.utime(root / "pipe.tmp", (0, 0))

    result = clean(settings, files_payload(root, "*.tmp"))

    assert listing(root) == ["dir.tmp", "pipe.tmp"]
    assert result["matched"] == 0


def test_unusual_file_names(settings, root):
    names = ["space name.log", "line\nbreak.log", "ünïcode.log", ".hidden.log", "-dash.log"]
    for name in names:
        make_file(root / name, 2 * HOUR_S)

    result = clean(settings, files_payload(root, "*.log"))

    assert listing(root) == []
    assert result["deleted"] == len(names)


def test_listed_paths_are_capped(settings, root):
    for index in range(file_cleanup.MAX_LISTED_PATHS + 5):
        make_file(root / f"f{index:05}.tmp", 2 * HOUR_S)

    result = clean(settings, files_payload(root, "*.tmp", dry_run=True))

    assert result["matched"] == file_cleanup.MAX_LISTED_PATHS + 5
    assert len(result["paths"]) == file_cleanup.MAX_LISTED_PATHS
    assert result["pathsTruncated"] is True


def test_unreadable_directory_is_reported(settings, root, monkeypatch):
    make_file(root / "a.log", 2 * HOUR_S)
    make_file(root / "locked" / "b.log", 2 * HOUR_S)
    make_file(root / "open" / "c.log", 2 * HOUR_S)
    real_listdir = os.listdir
    locked_inode = os.stat(root / "locked").st_ino

    def listdir(path):
        if isinstance(path, int) and os.fstat(path).st_ino == locked_inode:
            raise PermissionError(13, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(file_cleanup.os, "listdir", listdir)

    result = clean(settings, files_payload(root, "**/*.log"))

    assert result["deleted"] == 2
    assert result["errorCount"] == 1
    assert result["errors"] == [{"path": str(root / "locked"), "error": "Permission denied"}]
    assert (root / "locked" / "b.log").exists()


def test_deadline_stops_the_scan(settings, root):
    make_file(root / "a" / "b.tmp", 2 * HOUR_S)
    times = iter([0.0] + [100.0] * 50)

    with pytest.raises(JobTimeout):
        clean(settings, files_payload(root, "**/*.tmp"), timeout_ms=1000, clock=lambda: next(times))


def test_root_swapped_for_symlink_fails_at_run(settings, root, tmp_path):
    normalised = file_cleanup.validate(files_payload(root, "*.log"), settings)
    root.rmdir()
    os.symlink("/", root)

    with pytest.raises(JobFailed) as caught:
        file_cleanup.run(normalised, JobContext("job-1", 1, settings, 60_000), now=NOW)

    assert "file system root" in str(caught.value)


def test_read_only_files_are_reported_as_errors(settings, tmp_path):
    target = tmp_path / "read-only"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    try:
        make_file(target / "a.log", 2 * HOUR_S)
        make_file(target / "b.log", 2 * HOUR_S)
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)

        result = clean(settings, files_payload(target, "*.log"))

        assert result["matched"] == 2
        assert result["deleted"] == 0
        assert result["errorCount"] == 2
        assert {error["error"] for error in result["errors"]} == {"Read-only file system"}
        assert listing(target) == ["a.log", "b.log"]
    finally:
        subprocess.run(["umount", str(target)], check=True)


# --- Target "jobs" -----------------------------------------------------------------------------------

SCHEMA = "jobs_plugin"

CREATE_TABLES = """
CREATE TABLE {jobs} (
    id UUID PRIMARY KEY,
    type VARCHAR(100) NOT NULL,
    queue VARCHAR(100) DEFAULT 'default',
    status VARCHAR(50) NOT NULL,
    priority INTEGER DEFAULT 0,
    payload JSONB NOT NULL,
    progress INTEGER DEFAULT 0,
    attempts INTEGER DEFAULT 0,
    max_attempts INTEGER DEFAULT 3,
    delay_ms BIGINT DEFAULT 0,
    timeout_ms BIGINT DEFAULT 60000,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE
);
CREATE TABLE {job_results} (
    id UUID PRIMARY KEY,
    job_id UUID REFERENCES {jobs}(id),
    result JSONB,
    duration_ms INTEGER,
    completed_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE TABLE {job_failures} (
    id UUID PRIMARY KEY,
    job_id UUID REFERENCES {jobs}(id),
    attempt_number INTEGER NOT NULL,
    error_message TEXT,
    error_stack TEXT,
    failed_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
"""


@pytest.fixture(scope="module")
def postgres():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def history_db(postgres, request):
    """Create a fresh database with the three history tables in schema ``jobs_plugin`` and return its name."""
    name = "history_" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    tables = {table: sql.Identifier(SCHEMA, table) for table in ("jobs", "job_results", "job_failures")}
    with postgres.connect(name) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        connection.execute(sql.SQL(CREATE_TABLES).format(**tables))
    return name


@pytest.fixture
def jobs_settings(tmp_path, postgres, history_db):
    environ = {"HOME": str(tmp_path), "DATABASE_URL": postgres.url(history_db), "JOBS_DB_SCHEMA": SCHEMA}
    return load_settings(environ=environ, project_dir=tmp_path)


def add_job(connection, status, age=None, results=0, failures=0, created_age=None):
    """Insert a job completed ``age`` before NOW and return its id. ``age=None`` leaves completed_at NULL."""
    job_id = uuid.uuid4()
    completed_at = NOW - age if age is not None else None
    created_at = NOW - (created_age or age or timedelta(0))
    connection.execute(
        f"INSERT INTO {SCHEMA}.jobs (id, type, status, payload, created_at, completed_at) VALUES (%s, %s, %s, %s, %s, %s)",
        (job_id, "send-email", status, Jsonb({"to": "a@example.test"}), created_at, completed_at),
    )
    for _ in range(results):
        connection.execute(
            f"INSERT INTO {SCHEMA}.job_results (id, job_id, result) VALUES (%s, %s, %s)",
            (uuid.uuid4(), job_id, Jsonb({"ok": True})),
        )
    for attempt in range(failures):
        connection.execute(
            f"INSERT INTO {SCHEMA}.job_failures (id, job_id, attempt_number, error_message) VALUES (%s, %s, %s, %s)",
            (uuid.uuid4(), job_id, attempt + 1, "boom"),
        )
    return job_id


def remaining_ids(postgres, dbname, table="jobs", column="id"):
    with postgres.connect(dbname) as connection:
        rows = connection.execute(f"SELECT {column} FROM {SCHEMA}.{table}").fetchall()
    return {row[0] for row in rows}


def test_history_purge_uses_default_ages(postgres, history_db, jobs_settings):
    with postgres.connect(history_db) as connection:
        old_completed = add_job(connection, "completed", timedelta(days=2), results=1)
        recent_completed = add_job(connection, "completed", timedelta(hours=1), results=1)
        old_failed = add_job(connection, "failed", timedelta(days=8), failures=3)
        recent_failed = add_job(connection, "failed", timedelta(days=2), failures=1)
        old_active = add_job(connection, "active", None, created_age=timedelta(days=30))
        old_pending = add_job(connection, "pending", None, created_age=timedelta(days=30))
        undated_completed = add_job(connection, "completed", None, results=1, created_age=timedelta(days=3))

    result = clean(jobs_settings, {"target": "jobs"})

    assert remaining_ids(postgres, history_db) == {recent_completed, recent_failed, old_active, old_pending}
    assert result["deleted"] == {"jobs": 3, "job_results": 2, "job_failures": 3}
    assert remaining_ids(postgres, history_db, "job_results", "job_id") == {recent_completed}
    assert remaining_ids(postgres, history_db, "job_failures", "job_id") == {recent_failed}
    assert result["completedBefore"] == (NOW - timedelta(days=1)).isoformat()
    assert result["failedBefore"] == (NOW - timedelta(days=7)).isoformat()
    assert old_completed not in remaining_ids(postgres, history_db)
    assert old_failed not in remaining_ids(postgres, history_db)
    assert undated_completed not in remaining_ids(postgres, history_db)


def test_history_purge_ages_from_payload(postgres, history_db, jobs_settings):
    with postgres.connect(history_db) as connection:
        add_job(connection, "completed", timedelta(minutes=5))
        kept_failed = add_job(connection, "failed", timedelta(days=30))

    result = clean(jobs_settings, {"target": "jobs", "completedOlderThanMs": 0, "failedOlderThanMs": 10**12})

    assert remaining_ids(postgres, history_db) == {kept_failed}
    assert result["deleted"]["jobs"] == 1


def test_history_purge_in_batches(postgres, history_db, jobs_settings):
    with postgres.connect(history_db) as connection:
        for _ in range(25):
            add_job(connection, "completed", timedelta(days=2), results=2, failures=1)

    result = clean(jobs_settings, {"target": "jobs", "batchSize": 10})

    assert result["deleted"] == {"jobs": 25, "job_results": 50, "job_failures": 25}
    assert remaining_ids(postgres, history_db) == set()


def test_history_dry_run_counts_without_deleting(postgres, history_db, jobs_settings):
    with postgres.connect(history_db) as connection:
        add_job(connection, "completed", timedelta(days=2), results=2)
        add_job(connection, "failed", timedelta(days=9), failures=4)
        add_job(connection, "completed", timedelta(hours=2))

    result = clean(jobs_settings, {"target": "jobs", "dryRun": True})

    assert result["matched"] == {"jobs": 2, "job_results": 2, "job_failures": 4}
    assert result["deleted"] == {"jobs": 0, "job_results": 0, "job_failures": 0}
    assert len(remaining_ids(postgres, history_db)) == 3


def test_history_purge_skips_locked_rows(postgres, history_db, jobs_settings):
    with postgres.connect(history_db) as connection:
        locked_job = add_job(connection, "completed", timedelta(days=2))
        add_job(connection, "completed", timedelta(days=2))
    locked = threading.Event()
    release = threading.Event()

    def hold_row_lock():
        with postgres.connect(history_db) as connection:
            connection.execute(f"SELECT 1 FROM {SCHEMA}.jobs WHERE id = %s FOR UPDATE", (locked_job,))
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_row_lock)
    holder.start()
    try:
        assert locked.wait(10)
        result = clean(jobs_settings, {"target": "jobs"})
    finally:
        release.set()
        holder.join()

    assert result["deleted"]["jobs"] == 1
    assert remaining_ids(postgres, history_db) == {locked_job}


def test_purge_without_schema_uses_search_path(postgres, history_db, tmp_path):
    with postgres.connect(history_db) as connection:
        connection.execute(f"ALTER DATABASE {history_db} SET search_path = {SCHEMA}")
        add_job(connection, "completed", timedelta(days=2))
    settings = load_settings(environ={"HOME": str(tmp_path), "DATABASE_URL": postgres.url(history_db)}, project_dir=tmp_path)

    result = clean(settings, {"target": "jobs"})

    assert result["deleted"]["jobs"] == 1


def test_history_tables_missing_fails_clearly(postgres, tmp_path):
    postgres.create_database("no_history")
    settings = load_settings(
        environ={"HOME": str(tmp_path), "DATABASE_URL": postgres.url("no_history"), "JOBS_DB_SCHEMA": SCHEMA},
        project_dir=tmp_path,
    )

    with pytest.raises(JobFailed) as caught:
        clean(settings, {"target": "jobs"})

    assert "job history tables not found in schema 'jobs_plugin'" in str(caught.value)


def test_unreachable_database_is_service_unavailable(postgres, tmp_path):
    url = f"postgresql://postgres:hidden-pass@127.0.0.1:{free_port()}/x"
    settings = load_settings(environ={"HOME": str(tmp_path), "DATABASE_URL": url}, project_dir=tmp_path)

    with pytest.raises(ServiceUnavailable) as caught:
        clean(settings, {"target": "jobs"})

    assert "hidden-pass" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_history_without_database_url_fails(tmp_path):
    settings = load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path)

    with pytest.raises(JobFailed) as caught:
        clean(settings, {"target": "jobs"})

    assert "DATABASE_URL" in str(caught.value)
