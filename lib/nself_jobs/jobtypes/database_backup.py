"""The ``database-backup`` job type: dump a PostgreSQL database with ``pg_dump``.

Settings:

``JOBS_BACKUP_DIR`` (default ``$JOBS_HOME/backups/jobs``, that is ``~/.nself/backups/jobs``)
    Directory for backups. Created with mode 0700 when missing.
``JOBS_BACKUP_ALLOWED_DIRS`` (default: none)
    Comma-separated absolute directories that a payload's ``destination`` may name
    besides ``JOBS_BACKUP_DIR``.
``JOBS_BACKUP_RETENTION`` (default ``7``)
    Number of backups kept per database name and destination directory. After each
    successful backup, older ones are deleted. ``0`` keeps every backup.
``JOBS_BACKUP_ENCRYPTION_KEY`` (default: not set)
    Base64 of 32 random bytes (``openssl rand -base64 32``), the AES-256-GCM key for
    encrypted backups. Keep a copy elsewhere, because a backup cannot be restored
    without it.

``DATABASE_URL`` (or the ``POSTGRES_*`` variables) names the default database.

Payload:

``database``
    A database name on the ``DATABASE_URL`` server, or a full ``postgresql://`` URL
    without a password. Passwords for other servers go in ``~/.pgpass``. Defaults to
    the ``DATABASE_URL`` database.
``destination``
    Directory for the backup, inside ``JOBS_BACKUP_DIR`` or a
    ``JOBS_BACKUP_ALLOWED_DIRS`` entry. A relative path is taken inside
    ``JOBS_BACKUP_DIR``. Defaults to ``JOBS_BACKUP_DIR``.
``compress``
    ``gzip`` (default) or ``none``.
``encrypt``
    ``true`` or ``false``. Defaults to ``true`` when ``JOBS_BACKUP_ENCRYPTION_KEY`` is set.
``format``
    ``plain`` (default, SQL text for ``psql``) or ``custom`` (``pg_dump -Fc``, for
    ``pg_restore``). Custom dumps are written with pg_dump's own compression off, so
    ``compress`` alone decides whether the file is compressed.

Files are named ``<database>_<UTC timestamp>.<sql|dump>[.gz][.enc]``, for example
``app_20260105T020000.123Z.sql.gz.enc``. The timestamp has millisecond precision, so
names sort in time order. Each backup is written to a hidden ``.partial`` file in the
destination, synced to disk and renamed when complete. On failure the partial file is
removed. Files are created with mode 0600.

Result: ``path``, ``sizeBytes``, ``sha256`` (of the file as written), ``durationMs``,
``database``, ``format``, ``compressed``, ``encrypted`` and ``removedBackups`` (the
file names deleted by retention).

Encrypted file format (``.enc``), applied after compression:

* Header, 15 bytes: the magic ``NSJOBBK1`` (8 ASCII bytes), then a random 7-byte
  nonce prefix.
* Records, each a 4-byte big-endian length followed by that many bytes of AES-256-GCM
  ciphertext with its 16-byte tag. Each record holds up to 64 KiB of plaintext.
* Record *i* (counting from 0) uses the 12-byte nonce ``prefix || i as 4-byte
  big-endian || flag``, where flag is 1 for the last record and 0 otherwise. The
  header is the associated data of every record. The flag makes a file that was cut
  at a record boundary fail to decrypt.

Restore an encrypted, compressed plain dump (the key is read from the environment or
the nself env files, never from the command line)::

    python -m nself_jobs.jobtypes.database_backup decrypt app_....sql.gz.enc app.sql.gz
    gunzip -c app.sql.gz | psql "$DATABASE_URL"

A custom-format dump restores with ``gunzip -c app.dump.gz > app.dump`` and
``pg_restore --dbname "$DATABASE_URL" app.dump``. Decrypt to a file before restoring:
decryption verifies each record as it goes, so a damaged file is only rejected at the
record where the damage is, and output written before that point is incomplete.
"""

import argparse
import base64
import binascii
import glob
import hashlib
import logging
import os
import re
import secrets
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import conninfo

from ..errors import ConfigError, JobFailed, JobsError, ValidationError
from .base import JobType

logger = logging.getLogger(__name__)

COMPRESS_MODES = ("gzip", "none")
FORMATS = ("plain", "custom")

MAGIC = b"NSJOBBK1"
NONCE_PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + NONCE_PREFIX_BYTES
CHUNK_BYTES = 64 * 1024
TAG_BYTES = 16
MAX_RECORD_BYTES = 16 * 1024 * 1024

_READ_BYTES = 1024 * 1024
_PROGRESS_INTERVAL_S = 5.0
_STDERR_TAIL_BYTES = 4000
_SAFE_NAME_CHARACTER = re.compile(r"[^A-Za-z0-9._-]")
_PG_DUMP_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class BackupError(JobsError):
    """Raised when pg_dump exits with an error. The queue retries the job, since the cause may be transient."""


class DecryptionError(JobsError):
    """Raised when an encrypted backup is damaged, truncated or was encrypted with another key."""


@dataclass(frozen=True)
class BackupSettings:
    """The database-backup settings."""

    backup_dir: Path
    allowed_dirs: tuple
    retention: int
    database_url: str | None = field(default=None, repr=False)
    encryption_key: bytes | None = field(default=None, repr=False)


def parse_key(text, variable="JOBS_BACKUP_ENCRYPTION_KEY"):
    """Decode a base64 AES-256 key. Raises ConfigError, which hides the value, unless it decodes to 32 bytes."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError(variable, "(hidden)", "base64 of exactly 32 bytes, such as the output of openssl rand -base64 32")
    return key


def _allowed_dirs(env):
    directories = []
    for entry in env.list("JOBS_BACKUP_ALLOWED_DIRS"):
        path = Path(entry).expanduser()
        if not path.is_absolute():
            raise ConfigError("JOBS_BACKUP_ALLOWED_DIRS", entry, "comma-separated absolute directory paths")
        directories.append(Path(os.path.realpath(path)))
    return tuple(directories)


def from_settings(settings):
    """Read the ``JOBS_BACKUP_*`` settings."""
    env = settings.env
    backup_dir = env.str("JOBS_BACKUP_DIR")
    key_text = env.str("JOBS_BACKUP_ENCRYPTION_KEY")
    return BackupSettings(
        backup_dir=Path(backup_dir).expanduser() if backup_dir else settings.home_dir / "backups" / "jobs",
        allowed_dirs=_allowed_dirs(env),
        retention=env.int("JOBS_BACKUP_RETENTION", 7, minimum=0, maximum=100_000),
        database_url=settings.database_url,
        encryption_key=parse_key(key_text) if key_text else None,
    )


# --- Encryption --------------------------------------------------------------------


def _nonce(prefix, index, final):
    if index >= 2**32:
        raise ValueError("backup is too large for one encrypted stream (2**32 records)")
    return prefix + struct.pack(">IB", index, 1 if final else 0)


class EncryptingWriter:
    """A writer that encrypts everything written to it into ``out`` in the ``.enc`` format."""

    def __init__(self, out, key):
        self._out = out
        self._aead = AESGCM(key)
        self._prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
        self._header = MAGIC + self._prefix
        self._index = 0
        self._buffer = bytearray()
        out.write(self._header)

    def write(self, data):
        self._buffer += data
        # One full chunk stays buffered, because only finish() can mark a record as the last one.
        while len(self._buffer) > CHUNK_BYTES:
            self._write_record(bytes(self._buffer[:CHUNK_BYTES]), final=False)
            del self._buffer[:CHUNK_BYTES]

    def finish(self):
        self._write_record(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._out.finish()

    def _write_record(self, plaintext, final):
        ciphertext = self._aead.encrypt(_nonce(self._prefix, self._index, final), plaintext, self._header)
        self._out.write(struct.pack(">I", len(ciphertext)) + ciphertext)
        self._index += 1


def _read_exact(file, size, what):
    data = file.read(size)
    if len(data) != size:
        raise DecryptionError(f"encrypted backup is truncated: {what} is incomplete")
    return data


def _decrypt_stream(source, key, out):
    """Decrypt ``source`` into the binary file ``out`` and return the plaintext size."""
    header = source.read(HEADER_BYTES)
    if len(header) != HEADER_BYTES or not header.startswith(MAGIC):
        raise DecryptionError("not an encrypted nself jobs backup (the NSJOBBK1 header is missing)")
    prefix = header[len(MAGIC):]
    aead = AESGCM(key)

    written = 0
    index = 0
    length_bytes = _read_exact(source, 4, "the first record length")
    while True:
        (length,) = struct.unpack(">I", length_bytes)
        if not TAG_BYTES <= length <= MAX_RECORD_BYTES:
            raise DecryptionError(f"encrypted backup is damaged: record {index} has an invalid length {length}")
        record = _read_exact(source, length, f"record {index}")
        length_bytes = source.read(4)
        final = not length_bytes
        try:
            plaintext = aead.decrypt(_nonce(prefix, index, final), record, header)
        except InvalidTag:
            raise DecryptionError(
                f"decryption failed at record {index}: the key is wrong, or the file is damaged or truncated"
            ) from None
        out.write(plaintext)
        written += len(plaintext)
        if final:
            return written
        if len(length_bytes) != 4:
            raise DecryptionError(f"encrypted backup is truncated after record {index}")
        index += 1


def decrypt_backup(path, key, out):
    """Decrypt the ``.enc`` backup at ``path`` and return the number of bytes written.

    ``key`` is the 32-byte key or its base64 text. ``out`` is a binary file object or
    a path. A path is written as a whole or, on any error, removed.
    """
    if isinstance(key, str):
        key = parse_key(key)
    if len(key) != 32:
        raise ValueError("key must be 32 bytes")

    with open(path, "rb") as source:
        if hasattr(out, "write"):
            return _decrypt_stream(source, key, out)
        out_path = Path(out)
        try:
            with open(out_path, "xb") as target:
                return _decrypt_stream(source, key, target)
        except BaseException:
            out_path.unlink(missing_ok=True)
            raise


# --- Output chain: compression, encryption, file -------------------------------------


class GzipWriter:
    """A writer that gzip-compresses everything written to it into ``out``."""

    def __init__(self, out):
        self._out = out
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)

    def write(self, data):
        compressed = self._compressor.compress(data)
        if compressed:
            self._out.write(compressed)

    def finish(self):
        self._out.write(self._compressor.flush())
        self._out.finish()


class FileSink:
    """The end of the output chain: writes to a file descriptor, counting and hashing the bytes.

    Writes are unbuffered, so a failed write leaves no buffered data for ``close``
    to fail on again. Any OSError becomes JobFailed naming the directory.
    """

    def __init__(self, fd, directory):
        self._fd = fd
        self._directory = directory
        self.size_bytes = 0
        self.sha256 = hashlib.sha256()

    def write(self, data):
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            raise JobFailed(f"writing the backup to {self._directory} failed: {error.strerror}") from None
        self.size_bytes += len(data)
        self.sha256.update(data)

    def finish(self):
        try:
            os.fsync(self._fd)
        except OSError as error:
            raise JobFailed(f"syncing the backup to disk in {self._directory} failed: {error.strerror}") from None


def _output_chain(sink, compress, key):
    """Return the writer whose data is compressed, then encrypted, then stored in ``sink``."""
    writer = sink
    if key is not None:
        writer = EncryptingWriter(writer, key)
    if compress == "gzip":
        writer = GzipWriter(writer)
    return writer


# --- pg_dump and the connection -------------------------------------------------------


def _pg_dump_version(path, timeout_s):
    try:
        completed = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _PG_DUMP_VERSION.search(completed.stdout)
    if completed.returncode != 0 or not match:
        return None
    return (int(match.group(1)), int(match.group(2) or 0))


def find_pg_dump(timeout_s=10.0):
    """Return the path of the newest pg_dump on PATH or in ``/usr/lib/postgresql/*/bin``.

    A newer pg_dump can dump an older server, but not the other way round.
    ``timeout_s`` limits each ``pg_dump --version`` call.
    """
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(on_path)

    best_path, best_version = None, None
    for path in candidates:
        version = _pg_dump_version(path, timeout_s)
        if version is not None and (best_version is None or version > best_version):
            best_path, best_version = path, version
    if best_path is None:
        raise JobFailed(
            "pg_dump not found on PATH or in /usr/lib/postgresql/*/bin; "
            "install the PostgreSQL client tools (for example the postgresql-client package)"
        )
    return best_path


def _is_url(text):
    return text.startswith(("postgres://", "postgresql://"))


def _parse_url(field_path, text):
    try:
        return conninfo.conninfo_to_dict(text)
    except Exception:  # psycopg raises ProgrammingError, whose message may repeat the URL and its password
        raise ValidationError(field_path, "invalid PostgreSQL URL; expected postgresql://user@host:port/dbname") from None


def _check_database_field(value, database_url):
    """Validate the payload's ``database`` and return it. The ValidationError names the fix."""
    if value is None:
        if database_url is None:
            raise ValidationError(
                "payload.database", "missing database; set DATABASE_URL or give a database name or URL"
            )
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("payload.database", "must be a database name or a postgresql:// URL")
    if any(ord(character) < 32 for character in value):
        raise ValidationError("payload.database", "must not contain control characters")
    if _is_url(value):
        if "password" in _parse_url("payload.database", value):
            raise ValidationError(
                "payload.database",
                "the URL contains a password, which would be stored with the job; "
                "remove it and put the password in ~/.pgpass of the worker's user",
            )
        return value
    if len(value.encode()) > 63:
        raise ValidationError("payload.database", "database names are at most 63 bytes long")
    if database_url is None:
        raise ValidationError(
            "payload.database", f"{value!r} is a database name but DATABASE_URL is not set; give a full URL"
        )
    return value


def connection_params(database, database_url):
    """Return ``(params, password)`` for libpq, with the password kept out of ``params``."""
    if database is not None and _is_url(database):
        params = conninfo.conninfo_to_dict(database)
    else:
        if database_url is None:
            raise ValidationError("payload.database", "DATABASE_URL is not set; give a full postgresql:// URL")
        params = conninfo.conninfo_to_dict(database_url)
        if database is not None:
            params["dbname"] = database
    password = params.pop("password", None)
    params.setdefault("application_name", "nself-jobs-backup")
    return params, password


def database_label(params):
    """Return the database name as used in file names: only letters, digits, ``.``, ``_`` and ``-``."""
    name = params.get("dbname") or params.get("user") or os.environ.get("PGDATABASE") or "database"
    label = _SAFE_NAME_CHARACTER.sub("_", name).lstrip(".")[:100]
    return label or "database"


def _pg_dump_command(pg_dump, params, dump_format):
    command = [pg_dump, "--no-password", f"--format={dump_format}", "--dbname", conninfo.make_conninfo("", **params)]
    if dump_format == "custom":
        command.append("--compress=0")
    return command


def _subprocess_env(password):
    """Return the environment for pg_dump, with the password in PGPASSWORD so that it never appears in argv."""
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return env


# --- Destination and file names -------------------------------------------------------


def _allowed_roots(config):
    return [Path(os.path.realpath(config.backup_dir)), *config.allowed_dirs]


def resolve_destination(value, config, field_path="payload.destination"):
    """Return the real path of the destination directory, which must be inside an allowed root."""
    if value is None:
        return Path(os.path.realpath(config.backup_dir))
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValidationError(field_path, "must be a directory path")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = config.backup_dir / path
    real_path = Path(os.path.realpath(path))
    roots = _allowed_roots(config)
    if not any(real_path.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise ValidationError(
            field_path,
            f"{value!r} is outside the allowed backup directories ({allowed}); "
            "choose a directory inside one of them or add it to JOBS_BACKUP_ALLOWED_DIRS",
        )
    return real_path


def backup_file_name(label, now, dump_format, compress, encrypted):
    """Return ``<label>_<YYYYmmddTHHMMSS.mmm>Z.<sql|dump>[.gz][.enc]`` for a UTC time ``now``."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
    name = f"{label}_{stamp}." + ("sql" if dump_format == "plain" else "dump")
    if compress == "gzip":
        name += ".gz"
    if encrypted:
        name += ".enc"
    return name


def _backup_pattern(label):
    return re.compile(re.escape(label) + r"_\d{8}T\d{6}\.\d{3}Z\.(?:sql|dump)(?:\.gz)?(?:\.enc)?")


def apply_retention(directory, label, keep):
    """Delete all but the newest ``keep`` backups of ``label`` in ``directory`` and return the deleted names.

    Only regular files whose names match the backup pattern are considered, and
    ``keep=0`` deletes nothing. Errors are logged, not raised, because the new
    backup is already complete.
    """
    if keep == 0:
        return []
    pattern = _backup_pattern(label)
    names = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    names.append(entry.name)
    except OSError as error:
        logger.warning("Could not list %s to remove old backups: %s", directory, error.strerror or error)
        return []

    removed = []
    for name in sorted(names, reverse=True)[keep:]:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError as error:
            logger.warning("Could not delete old backup %s in %s: %s", name, directory, error.strerror)
            continue
        removed.append(name)
    return removed


# --- Validation ----------------------------------------------------------------------


def _choice(payload, name, allowed, default):
    value = payload.get(name, default)
    if value is None:
        value = default
    if value not in allowed:
        raise ValidationError(f"payload.{name}", f"must be one of {', '.join(allowed)}, not {value!r}")
    return value


def validate(payload, settings):
    """Check a database-backup payload and return it with every default filled in."""
    if not isinstance(payload, dict):
        raise ValidationError("payload", "must be an object")
    config = from_settings(settings)
    database = _check_database_field(payload.get("database"), config.database_url)
    resolve_destination(payload.get("destination"), config)

    encrypt = payload.get("encrypt")
    if encrypt is None:
        encrypt = config.encryption_key is not None
    if not isinstance(encrypt, bool):
        raise ValidationError("payload.encrypt", f"must be true or false, not {encrypt!r}")
    if encrypt and config.encryption_key is None:
        raise ValidationError(
            "payload.encrypt",
            "encryption requested but JOBS_BACKUP_ENCRYPTION_KEY is not set; "
            "set it to base64 of 32 random bytes (openssl rand -base64 32)",
        )

    normalised = {
        "compress": _choice(payload, "compress", COMPRESS_MODES, "gzip"),
        "encrypt": encrypt,
        "format": _choice(payload, "format", FORMATS, "plain"),
    }
    if database is not None:
        normalised["database"] = database
    if payload.get("destination") is not None:
        normalised["destination"] = payload["destination"]
    return normalised


# --- Running pg_dump -----------------------------------------------------------------


def _masked(text, password):
    return text.replace(password, "***") if password else text


def _stderr_tail(stderr_file, password):
    stderr_file.seek(0, os.SEEK_END)
    size = stderr_file.tell()
    stderr_file.seek(max(0, size - _STDERR_TAIL_BYTES))
    text = stderr_file.read().decode("utf-8", "replace").strip()
    return _masked(text, password)


def _copy_output(process, writer, ctx):
    """Copy pg_dump's stdout into ``writer`` until EOF. Raises JobTimeout when the job's deadline passes."""
    fd = process.stdout.fileno()
    copied = 0
    next_report = time.monotonic() + _PROGRESS_INTERVAL_S
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if not selector.select(timeout=min(ctx.remaining_s(), 1.0)):
                continue
            chunk = os.read(fd, _READ_BYTES)
            if not chunk:
                return copied
            writer.write(chunk)
            copied += len(chunk)
            if time.monotonic() >= next_report:
                ctx.progress(10, f"{copied} bytes read from pg_dump")
                next_report = time.monotonic() + _PROGRESS_INTERVAL_S


def _wait_for_exit(process, ctx):
    try:
        return process.wait(timeout=ctx.remaining_s())
    except subprocess.TimeoutExpired:
        ctx.remaining_s()
        raise


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait()


def _start_pg_dump(command, password, stderr_file):
    try:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file,
            env=_subprocess_env(password),
        )
    except OSError as error:
        raise JobFailed(f"starting {command[0]} failed: {error.strerror}") from None


def _run_pg_dump(command, password, writer, ctx):
    """Stream pg_dump's output into ``writer``. Raises BackupError if pg_dump exits with an error."""
    with tempfile.TemporaryFile() as stderr_file:
        process = _start_pg_dump(command, password, stderr_file)
        try:
            _copy_output(process, writer, ctx)
            returncode = _wait_for_exit(process, ctx)
        finally:
            _stop(process)
            process.stdout.close()
        if returncode != 0:
            detail = _stderr_tail(stderr_file, password) or "no error output"
            raise BackupError(f"pg_dump exited with status {returncode}: {detail}")
    writer.finish()


def _create_partial_file(directory, final_name):
    """Create the hidden partial file next to the final one and return ``(path, fd)``.

    Raises JobFailed when the directory cannot be created or written.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise JobFailed(f"backup destination {directory} exists but is not a directory") from None
    except OSError as error:
        raise JobFailed(f"cannot create backup destination {directory}: {error.strerror}") from None
    if not directory.is_dir():
        raise JobFailed(f"backup destination {directory} is not a directory")

    partial = directory / f".{final_name}.partial-{secrets.token_hex(4)}"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise JobFailed(f"cannot write to backup destination {directory}: {error.strerror}") from None
    return partial, fd


def _publish(partial, final):
    """Rename the complete partial file to its final name and sync the directory entry."""
    if final.exists():
        raise JobFailed(f"backup file {final} already exists")
    try:
        os.rename(partial, final)
        directory_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    except OSError as error:
        raise JobFailed(f"renaming the finished backup to {final} failed: {error.strerror}") from None


def _write_backup(command, password, destination, final_name, options, ctx):
    """Run pg_dump into a partial file and rename it when complete. Any failure removes the partial file."""
    partial, fd = _create_partial_file(destination, final_name)
    sink = FileSink(fd, destination)
    try:
        try:
            _run_pg_dump(command, password, _output_chain(sink, options["compress"], options["key"]), ctx)
        finally:
            os.close(fd)
        _publish(partial, destination / final_name)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return sink


def _run_settings(payload, ctx):
    """Read the settings and payload fields a run needs. Raises JobFailed when they no longer pass validation."""
    config = from_settings(ctx.settings)
    encrypted = bool(payload.get("encrypt"))
    if encrypted and config.encryption_key is None:
        raise JobFailed("encryption requested but JOBS_BACKUP_ENCRYPTION_KEY is not set on this worker")
    try:
        params, password = connection_params(payload.get("database"), config.database_url)
        destination = resolve_destination(payload.get("destination"), config)
    except ValidationError as error:
        raise JobFailed(str(error)) from None
    options = {
        "format": payload.get("format", "plain"),
        "compress": payload.get("compress", "gzip"),
        "key": config.encryption_key if encrypted else None,
    }
    return config, params, password, destination, options


def run(payload, ctx, now=None):
    """Dump the database into the destination, apply retention and describe the file."""
    started = time.monotonic()
    config, params, password, destination, options = _run_settings(payload, ctx)
    label = database_label(params)
    encrypted = options["key"] is not None
    now = now or datetime.now(timezone.utc)
    final_name = backup_file_name(label, now, options["format"], options["compress"], encrypted)
    command = _pg_dump_command(find_pg_dump(min(10.0, ctx.remaining_s())), params, options["format"])
    ctx.progress(5, f"dumping database {label}")
    logger.info("Backing up database %s to %s for job %s", label, destination, ctx.job_id)

    sink = _write_backup(command, password, destination, final_name, options, ctx)
    ctx.progress(90, "removing old backups")
    removed = apply_retention(destination, label, config.retention)
    duration_ms = int((time.monotonic() - started) * 1000)
    logger.info(
        "Backed up database %s to %s (%d bytes, %d ms) for job %s; retention removed %d files",
        label, destination / final_name, sink.size_bytes, duration_ms, ctx.job_id, len(removed),
    )
    ctx.progress(100, "backup complete")
    return {
        "path": str(destination / final_name),
        "sizeBytes": sink.size_bytes,
        "sha256": sink.sha256.hexdigest(),
        "durationMs": duration_ms,
        "database": label,
        "format": options["format"],
        "compressed": options["compress"] == "gzip",
        "encrypted": encrypted,
        "removedBackups": removed,
    }


JOB_TYPE = JobType(
    name="database-backup",
    description="Back up a PostgreSQL database with pg_dump, optionally compressed and encrypted",
    validate=validate,
    run=run,
)


# --- Command line: decrypting a backup ------------------------------------------------


def main(argv=None):
    """Decrypt a backup: ``python -m nself_jobs.jobtypes.database_backup decrypt IN OUT``."""
    from ..settings import load_settings

    parser = argparse.ArgumentParser(
        prog="python -m nself_jobs.jobtypes.database_backup",
        description="Decrypt an encrypted nself jobs backup. The key is read from "
        "JOBS_BACKUP_ENCRYPTION_KEY in the environment or the project env files.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    decrypt = commands.add_parser("decrypt", help="decrypt an .enc backup")
    decrypt.add_argument("input", help="the encrypted backup file")
    decrypt.add_argument("output", help="the file to create, or - for standard output")
    arguments = parser.parse_args(argv)

    try:
        key_text = load_settings().env.str("JOBS_BACKUP_ENCRYPTION_KEY")
        if not key_text:
            print(
                "database_backup: JOBS_BACKUP_ENCRYPTION_KEY is not set; "
                "set it to the base64 key the backup was encrypted with",
                file=sys.stderr,
            )
            return 1
        output = sys.stdout.buffer if arguments.output == "-" else arguments.output
        decrypt_backup(arguments.input, parse_key(key_text), output)
    except (JobsError, OSError) as error:
        print(f"database_backup: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
