"""The database-backup job against a private PostgreSQL server, with real pg_dump runs and restores."""

import base64
import gzip
import hashlib
import io
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from _backup_fixtures import fetch_rows, run_client, start_postgres
from nself_jobs.errors import ConfigError, JobFailed, JobTimeout, ValidationError
from nself_jobs.jobtypes import JobContext, database_backup
from nself_jobs.settings import load_settings

LIB_DIR = Path(__file__).resolve().parents[2] / "lib"
ITEMS_QUERY = "SELECT id, name, price, tags, note FROM items ORDER BY id"


@pytest.fixture(scope="module")
def postgres():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shop(postgres):
    """A database ``shop`` with 5000 rows, enough to span several encrypted records."""
    postgres.create_database("shop")
    with postgres.connect("shop") as connection:
        connection.execute(
            "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, price numeric(10, 2), tags text[], note text)"
        )
        connection.execute(
            "INSERT INTO items SELECT g, md5(g::text), g * 1.25, ARRAY['t' || g % 7, 'ü'], NULL "
            "FROM generate_series(1, 5000) AS g"
        )
        connection.execute(
            "INSERT INTO items VALUES (5001, 'Grüße, ''quoted'' and $$dollars$$', 9.99, '{}', E'line one\\nline two\\ttab')"
        )
    return "shop"


@pytest.fixture
def key_text():
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def backup_dir(tmp_path):
    return tmp_path / "backups"


@pytest.fixture
def make_settings(tmp_path, postgres, backup_dir, key_text):
    def make(dbname="shop", **extra):
        environ = {
            "HOME": str(tmp_path),
            "DATABASE_URL": postgres.url(dbname),
            "JOBS_BACKUP_DIR": str(backup_dir),
            "JOBS_BACKUP_ENCRYPTION_KEY": key_text,
        }
        environ.update(extra)
        return load_settings(environ=environ, project_dir=tmp_path)

    return make


def backup(settings, payload, timeout_ms=60_000, now=None):
    normalised = database_backup.validate(payload, settings)
    return database_backup.run(normalised, JobContext("job-1", 1, settings, timeout_ms), now=now)


def restore_plain(postgres, sql_bytes, dbname):
    postgres.create_database(dbname)
    run_client(postgres, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", postgres.url(dbname), stdin=sql_bytes)


def leftover_partial_files(directory):
    return [name for name in os.listdir(directory) if ".partial-" in name] if directory.exists() else []


# --- Backup and restore ---------------------------------------------------------------------


def test_encrypted_gzip_backup_restores(postgres, shop, make_settings, key_text, backup_dir, tmp_path):
    result = backup(make_settings(), {"compress": "gzip", "encrypt": True})

    path = Path(result["path"])
    data = path.read_bytes()
    decrypted = tmp_path / "restore.sql.gz"
    database_backup.decrypt_backup(path, key_text, decrypted)
    restore_plain(postgres, gzip.decompress(decrypted.read_bytes()), "shop_restored")

    assert path.parent == backup_dir
    assert path.name.startswith("shop_")
    assert path.name.endswith(".sql.gz.enc")
    assert data.startswith(database_backup.MAGIC)
    assert result["sizeBytes"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["database"] == "shop"
    assert result["compressed"] is True
    assert result["encrypted"] is True
    assert result["durationMs"] >= 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert leftover_partial_files(backup_dir) == []
    assert fetch_rows(postgres, "shop_restored", ITEMS_QUERY) == fetch_rows(postgres, shop, ITEMS_QUERY)


def test_custom_format_restores_with_pg_restore(postgres, shop, make_settings, tmp_path):
    result = backup(make_settings(), {"format": "custom", "compress": "gzip", "encrypt": False})

    dump_path = tmp_path / "shop.dump"
    dump_path.write_bytes(gzip.decompress(Path(result["path"]).read_bytes()))
    postgres.create_database("shop_from_custom")
    run_client(postgres, "pg_restore", "--exit-on-error", "--dbname", postgres.url("shop_from_custom"), str(dump_path))

    assert result["path"].endswith(".dump.gz")
    assert result["format"] == "custom"
    assert dump_path.read_bytes().startswith(b"PGDMP")
    assert fetch_rows(postgres, "shop_from_custom", ITEMS_QUERY) == fetch_rows(postgres, shop, ITEMS_QUERY)


def test_plain_uncompressed_backup_is_sql(shop, make_settings):
    result = backup(make_settings(), {"compress": "none", "encrypt": False})

    text = Path(result["path"]).read_text()

    assert result["path"].endswith(".sql")
    assert result["compressed"] is False
    assert "PostgreSQL database dump" in text
    assert "CREATE TABLE public.items" in text


def test_encryption_defaults_to_on_when_key_is_set(shop, make_settings):
    assert database_backup.validate({}, make_settings())["encrypt"] is True
    assert database_backup.validate({}, make_settings(JOBS_BACKUP_ENCRYPTION_KEY=""))["encrypt"] is False


def test_database_named_in_payload(postgres, shop, make_settings):
    postgres.create_database("other")
    with postgres.connect("other") as connection:
        connection.execute("CREATE TABLE marker (value text)")
        connection.execute("INSERT INTO marker VALUES ('from other')")

    result = backup(make_settings(), {"database": "other", "compress": "none", "encrypt": False})

    assert result["database"] == "other"
    assert Path(result["path"]).name.startswith("other_")
    assert "from other" in Path(result["path"]).read_text()


def test_url_without_password_uses_pgpass(postgres, shop, make_settings, tmp_path, monkeypatch):
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:*:{postgres.user}:{postgres.password}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    settings = make_settings(DATABASE_URL="")

    result = backup(settings, {"database": postgres.url_without_password("shop"), "encrypt": False})

    assert result["database"] == "shop"
    assert Path(result["path"]).exists()


def test_relative_destination_is_inside_backup_dir(shop, make_settings, backup_dir):
    result = backup(make_settings(), {"destination": "weekly", "encrypt": False})

    assert Path(result["path"]).parent == backup_dir / "weekly"


def test_allowed_dir_accepts_destination(shop, make_settings, tmp_path):
    allowed = tmp_path / "offsite"

    result = backup(make_settings(JOBS_BACKUP_ALLOWED_DIRS=str(allowed)), {"destination": str(allowed / "db")})

    assert Path(result["path"]).parent == allowed / "db"


# --- Secrets ------------------------------------------------------------------------------------


def test_password_kept_out_of_argv_and_logs(postgres, shop, make_settings, monkeypatch, caplog):
    launched = []
    real_popen = subprocess.Popen

    def recording_popen(args, **options):
        launched.append((list(args), options.get("env") or {}))
        return real_popen(args, **options)

    monkeypatch.setattr(database_backup.subprocess, "Popen", recording_popen)
    caplog.set_level(logging.DEBUG, logger="nself_jobs")

    result = backup(make_settings(), {"encrypt": True})

    pg_dump_runs = [(args, env) for args, env in launched if "--dbname" in args]
    assert len(pg_dump_runs) == 1
    args, env = pg_dump_runs[0]
    assert not any(postgres.password in arg for arg in args)
    assert env["PGPASSWORD"] == postgres.password
    assert postgres.password not in caplog.text
    assert postgres.password not in repr(result)


def test_payload_url_with_password_is_rejected(postgres, make_settings):
    with pytest.raises(ValidationError) as caught:
        database_backup.validate({"database": postgres.url("shop")}, make_settings())

    assert caught.value.field == "payload.database"
    assert postgres.password not in str(caught.value)
    assert "~/.pgpass" in caught.value.message


def test_invalid_key_setting_does_not_show_key(make_settings):
    with pytest.raises(ConfigError) as caught:
        database_backup.from_settings(make_settings(JOBS_BACKUP_ENCRYPTION_KEY="c2hvcnQta2V5"))

    assert caught.value.variable == "JOBS_BACKUP_ENCRYPTION_KEY"
    assert "c2hvcnQta2V5" not in str(caught.value)


def test_settings_repr_hides_key_and_url(postgres, make_settings, key_text):
    config = database_backup.from_settings(make_settings())

    assert key_text not in repr(config)
    assert postgres.password not in repr(config)


# --- Retention -----------------------------------------------------------------------------------


def test_retention_keeps_newest_backups(shop, make_settings, backup_dir):
    backup_dir.mkdir()
    unrelated = ["notes.txt", "other_20200101T000000.000Z.sql.gz", "shop_manual.sql"]
    for name in unrelated:
        (backup_dir / name).write_text("keep me")
    settings = make_settings(JOBS_BACKUP_RETENTION="2")
    start = datetime(2026, 1, 5, 2, 0, tzinfo=timezone.utc)

    results = [backup(settings, {"encrypt": False}, now=start + timedelta(days=day)) for day in range(4)]

    names = sorted(os.listdir(backup_dir))
    kept = [Path(result["path"]).name for result in results[2:]]
    assert names == sorted(unrelated + kept)
    assert results[0]["removedBackups"] == []
    assert results[2]["removedBackups"] == [Path(results[0]["path"]).name]
    assert results[3]["removedBackups"] == [Path(results[1]["path"]).name]


def test_retention_zero_keeps_everything(shop, make_settings, backup_dir):
    settings = make_settings(JOBS_BACKUP_RETENTION="0")
    start = datetime(2026, 1, 5, 2, 0, tzinfo=timezone.utc)

    for minute in range(3):
        backup(settings, {"encrypt": False}, now=start + timedelta(minutes=minute))

    assert len(os.listdir(backup_dir)) == 3


def test_backup_name_has_utc_timestamp():
    now = datetime(2026, 1, 5, 3, 4, 5, 678_900, tzinfo=timezone(timedelta(hours=1)))

    name = database_backup.backup_file_name("shop", now, "plain", "gzip", True)

    assert name == "shop_20260105T020405.678Z.sql.gz.enc"


# --- Failures leave nothing behind -----------------------------------------------------------------


def test_missing_database_fails_cleanly(shop, make_settings, backup_dir):
    with pytest.raises(database_backup.BackupError) as caught:
        backup(make_settings(), {"database": "does_not_exist", "encrypt": False})

    assert 'database "does_not_exist" does not exist' in str(caught.value)
    assert os.listdir(backup_dir) == []


def test_wrong_password_fails_without_showing_it(postgres, shop, make_settings, backup_dir):
    wrong_url = postgres.url("shop").replace(postgres.password, "wrong-password-value")

    with pytest.raises(database_backup.BackupError) as caught:
        backup(make_settings(DATABASE_URL=wrong_url), {"encrypt": False})

    assert "password authentication failed" in str(caught.value)
    assert "wrong-password-value" not in str(caught.value)
    assert os.listdir(backup_dir) == []


def test_timeout_kills_pg_dump_and_cleans_up(postgres, shop, make_settings, backup_dir, monkeypatch):
    started_processes = []
    real_popen = subprocess.Popen

    def recording_popen(args, **options):
        process = real_popen(args, **options)
        if "--dbname" in args:
            started_processes.append(process)
        return process

    monkeypatch.setattr(database_backup.subprocess, "Popen", recording_popen)
    locked = threading.Event()
    release = threading.Event()

    def hold_lock():
        # pg_dump waits for an ACCESS SHARE lock, so an exclusive lock stalls it.
        with postgres.connect("shop") as connection:
            connection.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with pytest.raises(JobTimeout):
            backup(make_settings(), {"encrypt": True}, timeout_ms=1500)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join()

    assert elapsed < 5
    assert [process.poll() is not None for process in started_processes] == [True]
    assert leftover_partial_files(backup_dir) == []
    assert [name for name in os.listdir(backup_dir) if not name.startswith(".")] == []


def test_file_in_place_of_destination_fails(shop, make_settings, backup_dir):
    backup_dir.mkdir()
    (backup_dir / "daily").write_text("a file, not a directory")

    with pytest.raises(JobFailed) as caught:
        backup(make_settings(), {"destination": "daily", "encrypt": False})

    assert "not a directory" in str(caught.value)
    assert sorted(os.listdir(backup_dir)) == ["daily"]


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount small tmpfs file systems for the test. The test is skipped where mounting is not permitted."""
    mounted = []

    def mount(name, options):
        target = tmp_path / name
        target.mkdir()
        completed = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            pytest.skip(f"mounting a tmpfs needs CAP_SYS_ADMIN: {completed.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], check=True)


def test_full_disk_leaves_no_file(shop, make_settings, mount_tmpfs):
    small_disk = mount_tmpfs("small-disk", "size=64k,mode=0700")
    settings = make_settings(JOBS_BACKUP_ALLOWED_DIRS=str(small_disk))

    with pytest.raises(JobFailed) as caught:
        backup(settings, {"destination": str(small_disk), "compress": "none", "encrypt": False})

    assert "No space left on device" in str(caught.value)
    assert os.listdir(small_disk) == []


def test_read_only_destination_fails_cleanly(shop, make_settings, mount_tmpfs):
    read_only = mount_tmpfs("read-only", "size=1m,ro")
    settings = make_settings(JOBS_BACKUP_ALLOWED_DIRS=str(read_only))

    with pytest.raises(JobFailed) as caught:
        backup(settings, {"destination": str(read_only), "encrypt": False})

    assert "Read-only file system" in str(caught.value)
    assert os.listdir(read_only) == []


# --- Payload validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, field_path",
    [
        ({"compress": "zstd"}, "payload.compress"),
        ({"format": "directory"}, "payload.format"),
        ({"encrypt": "yes"}, "payload.encrypt"),
        ({"destination": "/etc"}, "payload.destination"),
        ({"destination": "../../escape"}, "payload.destination"),
        ({"database": ""}, "payload.database"),
        ({"database": "x" * 64}, "payload.database"),
        ({"database": "bad\nname"}, "payload.database"),
    ],
)
def test_invalid_payload_names_field(make_settings, payload, field_path):
    with pytest.raises(ValidationError) as caught:
        database_backup.validate(payload, make_settings())

    assert caught.value.field == field_path


def test_symlink_destination_escape_rejected(make_settings, backup_dir, tmp_path):
    backup_dir.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", backup_dir / "link")

    with pytest.raises(ValidationError) as caught:
        database_backup.validate({"destination": "link"}, make_settings())

    assert caught.value.field == "payload.destination"


def test_encrypt_without_key_is_rejected(make_settings):
    with pytest.raises(ValidationError) as caught:
        database_backup.validate({"encrypt": True}, make_settings(JOBS_BACKUP_ENCRYPTION_KEY=""))

    assert caught.value.field == "payload.encrypt"
    assert "JOBS_BACKUP_ENCRYPTION_KEY" in caught.value.message


def test_missing_database_url_is_rejected(make_settings):
    with pytest.raises(ValidationError) as caught:
        database_backup.validate({}, make_settings(DATABASE_URL=""))

    assert caught.value.field == "payload.database"


def test_default_backup_dir_is_under_jobs_home(tmp_path):
    settings = load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path)

    config = database_backup.from_settings(settings)

    assert config.backup_dir == tmp_path / ".nself" / "backups" / "jobs"
    assert config.retention == 7
    assert config.encryption_key is None


# --- Encrypted file format ----------------------------------------------------------------------------


def encrypt_bytes(plaintext, key):
    class Collector:
        def __init__(self):
            self.buffer = io.BytesIO()

        def write(self, data):
            self.buffer.write(data)

        def finish(self):
            pass

    collector = Collector()
    writer = database_backup.EncryptingWriter(collector, key)
    for start in range(0, len(plaintext), 10_000):
        writer.write(plaintext[start:start + 10_000])
    writer.finish()
    return collector.buffer.getvalue()


@pytest.mark.parametrize("size", [0, 1, database_backup.CHUNK_BYTES, database_backup.CHUNK_BYTES + 1, 300_000])
def test_encryption_round_trip(tmp_path, size):
    key = secrets.token_bytes(32)
    plaintext = secrets.token_bytes(size)
    encrypted = tmp_path / "data.enc"
    encrypted.write_bytes(encrypt_bytes(plaintext, key))
    output = io.BytesIO()

    written = database_backup.decrypt_backup(encrypted, key, output)

    assert written == size
    assert output.getvalue() == plaintext


def test_truncated_at_record_boundary_is_detected(tmp_path):
    key = secrets.token_bytes(32)
    data = encrypt_bytes(secrets.token_bytes(3 * database_backup.CHUNK_BYTES), key)
    record_bytes = 4 + database_backup.CHUNK_BYTES + database_backup.TAG_BYTES
    encrypted = tmp_path / "cut.enc"
    encrypted.write_bytes(data[: database_backup.HEADER_BYTES + 2 * record_bytes])

    with pytest.raises(database_backup.DecryptionError):
        database_backup.decrypt_backup(encrypted, key, io.BytesIO())


@pytest.mark.parametrize("position", [3, 20, -5])
def test_changed_byte_is_detected(tmp_path, position):
    key = secrets.token_bytes(32)
    data = bytearray(encrypt_bytes(b"important rows" * 1000, key))
    data[position] ^= 0x01
    encrypted = tmp_path / "changed.enc"
    encrypted.write_bytes(bytes(data))

    with pytest.raises(database_backup.DecryptionError):
        database_backup.decrypt_backup(encrypted, key, io.BytesIO())


def test_wrong_key_is_detected_and_output_removed(tmp_path):
    encrypted = tmp_path / "data.enc"
    encrypted.write_bytes(encrypt_bytes(b"rows", secrets.token_bytes(32)))
    output = tmp_path / "data.out"

    with pytest.raises(database_backup.DecryptionError) as caught:
        database_backup.decrypt_backup(encrypted, secrets.token_bytes(32), output)

    assert "key is wrong" in str(caught.value)
    assert not output.exists()


def test_decrypt_command_line(shop, make_settings, key_text, tmp_path):
    result = backup(make_settings(), {"compress": "gzip", "encrypt": True})
    output = tmp_path / "cli.sql.gz"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(LIB_DIR),
        "HOME": str(tmp_path),
        "NSELF_PROJECT_DIR": str(tmp_path),
        "JOBS_BACKUP_ENCRYPTION_KEY": key_text,
    }

    completed = subprocess.run(
        [sys.executable, "-m", "nself_jobs.jobtypes.database_backup", "decrypt", result["path"], str(output)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert b"PostgreSQL database dump" in gzip.decompress(output.read_bytes())


def test_decrypt_command_line_without_key_fails(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(LIB_DIR), "HOME": str(tmp_path), "NSELF_PROJECT_DIR": str(tmp_path)}

    completed = subprocess.run(
        [sys.executable, "-m", "nself_jobs.jobtypes.database_backup", "decrypt", "in.enc", "out"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )

    assert completed.returncode == 1
    assert "JOBS_BACKUP_ENCRYPTION_KEY" in completed.stderr
