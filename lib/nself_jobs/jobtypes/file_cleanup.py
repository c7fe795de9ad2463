"""The ``file-cleanup`` job type: purge old job history, or delete old files under one directory.

The payload's ``target`` chooses what is cleaned.

``target: "jobs"`` deletes completed and failed jobs, with their ``job_results`` and
``job_failures`` rows, from PostgreSQL (``DATABASE_URL``, schema ``JOBS_DB_SCHEMA``):

``completedOlderThanMs``
    Age in ms after which completed jobs are deleted. Defaults to
    ``JOBS_CLEAN_COMPLETED_AFTER`` (24 hours) at run time.
``failedOlderThanMs``
    Age in ms after which failed jobs are deleted. Defaults to
    ``JOBS_CLEAN_FAILED_AFTER`` (7 days) at run time.
``batchSize``
    Jobs deleted per transaction, 1 to 10000 (default 1000).
``dryRun``
    Count the rows that would be deleted without deleting them (default false).

A job's age is measured from ``completed_at``, else ``started_at``, else
``created_at``. Jobs in any other status are never deleted. The result contains the
deleted row counts per table.

``target: "files"`` deletes files under ``root`` whose path matches ``pattern`` and
whose modification time is older than ``olderThanMs``:

``root``
    Absolute path of an existing directory. ``/``, ``/root``, ``/home``, any
    ``/home/<name>``, the worker's home directory and every directory that contains
    one of these are rejected.
``pattern``
    A glob relative to ``root``: ``*`` and ``?`` match within one path segment,
    ``[abc]`` and ``[!abc]`` match one character, and a ``**`` segment matches any
    number of directories. ``*.log`` matches only files directly in ``root``, while
    ``**/*.tmp`` matches at any depth. Wildcards also match names that start with a dot.
``olderThanMs``
    Minimum age in ms, compared with each file's modification time (``0`` matches
    every age).
``dryRun``
    List the matching files without deleting them (default false).

Only regular files and symbolic links are deleted, never directories. Symbolic links
are never followed: a symlinked directory is not entered, and a symlink whose own
path matches is deleted as a link, leaving its target untouched. Every deletion is
made relative to an open descriptor of its parent directory, so renaming a
directory into a symlink during the run cannot redirect it outside ``root``. The
result contains counts, the total size, and up to 1000 paths and 100 errors
(files that could not be deleted and directories that could not be read).
"""

import logging
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import psycopg.conninfo
from psycopg import sql

from ..errors import JobFailed, ServiceUnavailable, ValidationError
from .base import JobType

logger = logging.getLogger(__name__)

TARGETS = ("jobs", "files")
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 10_000
MAX_LISTED_PATHS = 1000
MAX_LISTED_ERRORS = 100
_LOGGED_ERRORS = 10


@dataclass(frozen=True)
class CleanupSettings:
    """Settings of the file-cleanup job type: the history database, default ages in ms and home directories."""

    database_url: str | None
    db_schema: str | None
    completed_after_ms: int
    failed_after_ms: int
    home_dirs: tuple


def from_settings(settings):
    """Collect the history database, the default cleanup ages and the worker's home directories."""
    home_dirs = {Path.home()}
    env_home = settings.env.str("HOME") if settings.env is not None else None
    if env_home:
        home_dirs.add(Path(env_home))
    return CleanupSettings(
        database_url=settings.database_url,
        db_schema=settings.db_schema,
        completed_after_ms=settings.clean_completed_after_ms,
        failed_after_ms=settings.clean_failed_after_ms,
        home_dirs=tuple(sorted(home_dirs)),
    )


# --- Payload fields ------------------------------------------------------------------


def _optional_ms(payload, name):
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"payload.{name}", f"must be a whole number of milliseconds, 0 or more, not {value!r}")
    return value


def _flag(payload, name):
    value = payload.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError(f"payload.{name}", f"must be true or false, not {value!r}")
    return value


def _batch_size(payload):
    value = payload.get("batchSize", DEFAULT_BATCH_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise ValidationError("payload.batchSize", f"must be a whole number from 1 to {MAX_BATCH_SIZE}, not {value!r}")
    return value


# --- Roots that are never cleaned ---------------------------------------------------------


def _normalise(path):
    # normpath keeps a leading "//", whose meaning POSIX leaves to the implementation. Linux reads it as "/".
    text = os.path.normpath(path)
    return Path("/" + text.lstrip("/")) if text.startswith("/") else Path(text)


def rejected_root_reason(path, home_dirs):
    """Return why ``path`` may not be a cleanup root, or None when it may.

    Rejected are ``/``, ``/root``, ``/home``, ``/home/<name>``, the given home
    directories, and every directory that contains one of them.
    """
    path = _normalise(path)
    if path == Path("/"):
        return "it is the file system root"
    if path.parent == Path("/home"):
        return "it is a home directory"
    protected = [Path("/root"), Path("/home"), *(_normalise(home) for home in home_dirs)]
    for directory in protected:
        if path == directory:
            return "it is a home directory" if directory != Path("/home") else "it contains the home directories"
        if directory.is_relative_to(path):
            return f"it contains the home directory {directory}"
    return None


def _check_root(value, config, field_path="payload.root"):
    """Return the real path of a cleanup root. Raises ValidationError if it is missing or rejected."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValidationError(field_path, "missing root; give the absolute path of the directory to clean")
    if not os.path.isabs(value):
        raise ValidationError(field_path, f"{value!r} is not an absolute path")
    real_path = Path(os.path.realpath(value))
    for candidate in (value, real_path):
        reason = rejected_root_reason(candidate, config.home_dirs)
        if reason is not None:
            raise ValidationError(
                field_path,
                f"{str(candidate)!r} is not allowed as root because {reason}; choose a more specific directory",
            )
    if not real_path.is_dir():
        raise ValidationError(field_path, f"directory not found: {value}")
    return real_path


# --- Glob patterns ------------------------------------------------------------------------


def _translate_segment(segment):
    """Translate one glob path segment into a regular expression that never matches ``/``."""
    parts = []
    index = 0
    while index < len(segment):
        character = segment[index]
        index += 1
        if character == "*":
            parts.append("[^/]*")
        elif character == "?":
            parts.append("[^/]")
        elif character == "[":
            end = segment.find("]", index + 1 if segment[index:index + 1] in ("!", "]") else index)
            if end < 0:
                parts.append(re.escape(character))
                continue
            members = segment[index:end].replace("\\", "\\\\")
            index = end + 1
            if members.startswith("!"):
                parts.append(f"[^/{members[1:]}]")
            else:
                parts.append(f"[{members}]")
        else:
            parts.append(re.escape(character))
    return "".join(parts)


def compile_pattern(pattern, field_path="payload.pattern"):
    """Return ``(regex, max_depth)`` for a glob relative to the root.

    ``regex`` matches relative paths with ``/`` separators. ``max_depth`` is the number
    of path segments a match can have, or None when a ``**`` segment allows any depth.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValidationError(field_path, "missing pattern; give a glob such as *.log or **/*.tmp")
    if pattern.startswith("/"):
        raise ValidationError(field_path, f"{pattern!r} is absolute; give a glob relative to root, such as *.log")
    segments = pattern.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValidationError(
                field_path, f"{pattern!r} contains an empty, '.' or '..' segment; patterns stay inside root"
            )
        if "\0" in segment:
            raise ValidationError(field_path, "must not contain a NUL character")

    parts = []
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "**":
            parts.append("(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*")
        else:
            parts.append(_translate_segment(segment) + ("" if last else "/"))
    try:
        regex = re.compile("".join(parts), re.DOTALL)
    except re.error as error:
        raise ValidationError(field_path, f"invalid pattern {pattern!r}: {error}") from None
    max_depth = None if "**" in segments else len(segments)
    return regex, max_depth


# --- Validation -----------------------------------------------------------------------------


def _validate_jobs(payload):
    normalised = {"target": "jobs", "batchSize": _batch_size(payload), "dryRun": _flag(payload, "dryRun")}
    for name in ("completedOlderThanMs", "failedOlderThanMs"):
        value = _optional_ms(payload, name)
        if value is not None:
            normalised[name] = value
    return normalised


def _validate_files(payload, config):
    root = payload.get("root")
    _check_root(root, config)
    compile_pattern(payload.get("pattern"))
    older_than_ms = _optional_ms(payload, "olderThanMs")
    if older_than_ms is None:
        raise ValidationError("payload.olderThanMs", "missing minimum age in ms; give 0 to match files of any age")
    return {
        "target": "files",
        "root": root,
        "pattern": payload["pattern"],
        "olderThanMs": older_than_ms,
        "dryRun": _flag(payload, "dryRun"),
    }


def validate(payload, settings):
    """Check a file-cleanup payload and return it normalised."""
    if not isinstance(payload, dict):
        raise ValidationError("payload", "must be an object")
    target = payload.get("target")
    if target not in TARGETS:
        raise ValidationError("payload.target", f"must be one of {', '.join(TARGETS)}, not {target!r}")
    if target == "jobs":
        return _validate_jobs(payload)
    return _validate_files(payload, from_settings(settings))


# --- Target "jobs": history rows in PostgreSQL --------------------------------------------


_SELECT_EXPIRED = """
    SELECT id FROM {jobs}
    WHERE (status = 'completed' AND COALESCE(completed_at, started_at, created_at) < %(completed_before)s)
       OR (status = 'failed' AND COALESCE(completed_at, started_at, created_at) < %(failed_before)s)
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
"""

_COUNT_EXPIRED = """
    WITH expired AS (
        SELECT id FROM {jobs}
        WHERE (status = 'completed' AND COALESCE(completed_at, started_at, created_at) < %(completed_before)s)
           OR (status = 'failed' AND COALESCE(completed_at, started_at, created_at) < %(failed_before)s)
    )
    SELECT
        (SELECT count(*) FROM expired),
        (SELECT count(*) FROM {job_results} WHERE job_id IN (SELECT id FROM expired)),
        (SELECT count(*) FROM {job_failures} WHERE job_id IN (SELECT id FROM expired))
"""

# Children first, because job_results and job_failures reference jobs(id).
_DELETE_STATEMENTS = (
    ("job_results", "DELETE FROM {job_results} WHERE job_id = ANY(%(ids)s)"),
    ("job_failures", "DELETE FROM {job_failures} WHERE job_id = ANY(%(ids)s)"),
    ("jobs", "DELETE FROM {jobs} WHERE id = ANY(%(ids)s)"),
)


def _tables(schema):
    """Return the table identifiers, qualified with ``schema`` unless it is None."""
    names = ("jobs", "job_results", "job_failures")
    if schema:
        return {name: sql.Identifier(schema, name) for name in names}
    return {name: sql.Identifier(name) for name in names}


def _query(text, tables):
    return sql.SQL(text).format(**tables)


def _describe_target(conninfo):
    """Return ``host:port/dbname`` for messages, leaving out the user and password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "the configured database"
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def _connect(conninfo, remaining_s):
    # libpq treats a connect_timeout below 2 seconds as 2.
    timeout_s = max(2, int(min(remaining_s(), 30)))
    try:
        return psycopg.connect(conninfo, connect_timeout=timeout_s, autocommit=True)
    except psycopg.OperationalError as error:
        raise ServiceUnavailable("PostgreSQL", _describe_target(conninfo), str(error).strip()) from error


def _limit_statement_time(cursor, remaining_s):
    timeout_ms = max(1, int(remaining_s() * 1000))
    cursor.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))


def _translate_database_error(error, conninfo, schema, remaining_s):
    """Return the plugin error for a psycopg error; raise JobTimeout if the deadline has passed."""
    if isinstance(error, psycopg.errors.UndefinedTable):
        where = f"schema {schema!r}" if schema else "the search path"
        return JobFailed(f"job history tables not found in {where} ({error}); install the plugin's schema first")
    if isinstance(error, psycopg.errors.QueryCanceled):
        remaining_s()
        return JobFailed("a job history statement was cancelled by statement_timeout; lower batchSize")
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return ServiceUnavailable("PostgreSQL", _describe_target(conninfo), str(error).strip())
    return JobFailed(f"purging job history failed: {str(error).strip()}")


def purge_history(conninfo, schema, completed_before, failed_before, batch_size, remaining_s=None):
    """Delete expired completed and failed jobs with their results and failures.

    Each batch of up to ``batch_size`` jobs is deleted in its own transaction, children
    first. Rows locked by another transaction are skipped. ``schema`` is the schema
    name, or None for the search path. ``remaining_s`` returns the seconds left, or
    raises when the caller's deadline has passed. It is checked before each batch and
    bounds each statement. Without it, a statement may run for up to an hour.
    Returns the deleted row count per table.
    """
    remaining_s = remaining_s or (lambda: 3600.0)
    tables = _tables(schema)
    select = _query(_SELECT_EXPIRED, tables)
    deletes = [(table, _query(text, tables)) for table, text in _DELETE_STATEMENTS]
    bounds = {"completed_before": completed_before, "failed_before": failed_before, "batch_size": batch_size}
    counts = {"jobs": 0, "job_results": 0, "job_failures": 0}

    with _connect(conninfo, remaining_s) as connection:
        while True:
            try:
                with connection.transaction(), connection.cursor() as cursor:
                    _limit_statement_time(cursor, remaining_s)
                    cursor.execute(select, bounds)
                    ids = [row[0] for row in cursor.fetchall()]
                    for table, statement in deletes:
                        if ids:
                            cursor.execute(statement, {"ids": ids})
                            counts[table] += cursor.rowcount
            except psycopg.Error as error:
                raise _translate_database_error(error, conninfo, schema, remaining_s) from error
            if len(ids) < batch_size:
                return counts


def count_expired_history(conninfo, schema, completed_before, failed_before, remaining_s=None):
    """Return the row counts per table that :func:`purge_history` would delete now."""
    remaining_s = remaining_s or (lambda: 3600.0)
    query = _query(_COUNT_EXPIRED, _tables(schema))
    bounds = {"completed_before": completed_before, "failed_before": failed_before}
    with _connect(conninfo, remaining_s) as connection:
        try:
            with connection.transaction(), connection.cursor() as cursor:
                _limit_statement_time(cursor, remaining_s)
                cursor.execute(query, bounds)
                jobs, results, failures = cursor.fetchone()
        except psycopg.Error as error:
            raise _translate_database_error(error, conninfo, schema, remaining_s) from error
    return {"jobs": jobs, "job_results": results, "job_failures": failures}


def _run_jobs(payload, ctx, config, now):
    if config.database_url is None:
        raise JobFailed("DATABASE_URL is not set, so there is no job history to clean")
    completed_ms = payload.get("completedOlderThanMs", config.completed_after_ms)
    failed_ms = payload.get("failedOlderThanMs", config.failed_after_ms)
    completed_before = now - timedelta(milliseconds=completed_ms)
    failed_before = now - timedelta(milliseconds=failed_ms)
    dry_run = payload.get("dryRun", False)

    ctx.progress(10, "counting expired job history" if dry_run else "purging job history")
    if dry_run:
        counts = count_expired_history(
            config.database_url, config.db_schema, completed_before, failed_before, ctx.remaining_s
        )
    else:
        counts = purge_history(
            config.database_url, config.db_schema, completed_before, failed_before,
            payload.get("batchSize", DEFAULT_BATCH_SIZE), ctx.remaining_s,
        )
        logger.info(
            "Purged job history for job %s: %d jobs, %d results, %d failures",
            ctx.job_id, counts["jobs"], counts["job_results"], counts["job_failures"],
        )
    ctx.progress(100, "done")
    return {
        "target": "jobs",
        "dryRun": dry_run,
        "completedBefore": completed_before.isoformat(),
        "failedBefore": failed_before.isoformat(),
        "deleted": {table: 0 for table in counts} if dry_run else counts,
        "matched": counts,
    }


# --- Target "files": a directory tree --------------------------------------------------------


class _FileReport:
    """Counts and capped lists for the files target's result."""

    def __init__(self, root, pattern, dry_run):
        self.root = root
        self.pattern = pattern
        self.dry_run = dry_run
        self.matched = 0
        self.deleted = 0
        self.size_bytes = 0
        self.paths = []
        self.errors = []
        self.error_count = 0

    def add_match(self, path, size_bytes):
        self.matched += 1
        self.size_bytes += size_bytes
        if len(self.paths) < MAX_LISTED_PATHS:
            self.paths.append(path)

    def add_error(self, path, error, action="delete"):
        self.error_count += 1
        reason = error.strerror or str(error)
        if self.error_count <= _LOGGED_ERRORS:
            logger.warning("Could not %s %s during cleanup: %s", action, path, reason)
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"path": path, "error": reason})

    def as_result(self):
        if self.error_count > _LOGGED_ERRORS:
            logger.warning("Cleanup of %s had %d errors in total", self.root, self.error_count)
        return {
            "target": "files",
            "root": str(self.root),
            "pattern": self.pattern,
            "dryRun": self.dry_run,
            "matched": self.matched,
            "deleted": self.deleted,
            "sizeBytes": self.size_bytes,
            "errorCount": self.error_count,
            "paths": self.paths,
            "pathsTruncated": self.matched > len(self.paths),
            "errors": self.errors,
        }


def _entry_status(name, dir_fd):
    """Return the lstat result of ``name`` in the directory ``dir_fd``, or None if it vanished."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_directory(name, dir_fd=None):
    # O_NOFOLLOW makes the open fail if the entry was swapped for a symlink after it was checked.
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def _list_directory(fd, path, report):
    """Return ``(entries, subdirectories)`` of an open directory as ``[(name, lstat)]`` lists.

    Entries are regular files and symlinks, including symlinks to directories. Other
    file types are skipped. A directory that cannot be listed is recorded in ``report``.
    """
    try:
        names = sorted(os.listdir(fd))
    except OSError as error:
        report.add_error(path, error, action="read")
        return [], []
    entries, subdirectories = [], []
    for name in names:
        status = _entry_status(name, fd)
        if status is None:
            continue
        if stat.S_ISDIR(status.st_mode):
            subdirectories.append((name, status))
        elif stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode):
            entries.append((name, status))
    return entries, subdirectories


def _candidates(root, max_depth, ctx, report):
    """Yield ``(relative_path, name, dir_fd, lstat)`` for every file and symlink under ``root``.

    The walk keeps one descriptor open per directory level and never enters a
    symlink. Directories deeper than ``max_depth`` segments are not entered.
    """
    root_fd = _open_directory(root)
    entries, subdirectories = _list_directory(root_fd, str(root), report)
    stack = [(root_fd, "", subdirectories)]
    try:
        for name, status in entries:
            yield name, name, root_fd, status
        while stack:
            ctx.remaining_s()
            parent_fd, prefix, subdirectories = stack[-1]
            if not subdirectories or (max_depth is not None and prefix.count("/") + 1 >= max_depth):
                os.close(parent_fd)
                stack.pop()
                continue

            name, _ = subdirectories.pop(0)
            child_prefix = prefix + name + "/"
            try:
                child_fd = _open_directory(name, parent_fd)
            except OSError as error:
                report.add_error(str(root / child_prefix), error, action="read")
                continue
            entries, child_subdirectories = _list_directory(child_fd, str(root / child_prefix), report)
            stack.append((child_fd, child_prefix, child_subdirectories))
            for entry_name, status in entries:
                yield child_prefix + entry_name, entry_name, child_fd, status
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _run_files(payload, ctx, config, now):
    try:
        root = _check_root(payload.get("root"), config)
        regex, max_depth = compile_pattern(payload.get("pattern"))
    except ValidationError as error:
        raise JobFailed(str(error)) from None
    cutoff = now.timestamp() - payload.get("olderThanMs", 0) / 1000.0
    dry_run = payload.get("dryRun", False)
    report = _FileReport(root, payload["pattern"], dry_run)
    ctx.progress(10, f"scanning {root}")

    for relative_path, name, dir_fd, status in _candidates(root, max_depth, ctx, report):
        if not regex.fullmatch(relative_path) or status.st_mtime >= cutoff:
            continue
        path = str(root / relative_path)
        report.add_match(path, status.st_size)
        if report.matched % 1000 == 0:
            ctx.progress(10, f"{report.matched} files matched so far")
        if dry_run:
            continue
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            continue
        except OSError as error:
            report.add_error(path, error)
            continue
        report.deleted += 1

    if not dry_run:
        logger.info(
            "Deleted %d of %d matching files under %s for job %s", report.deleted, report.matched, root, ctx.job_id
        )
    ctx.progress(100, "done")
    return report.as_result()


def run(payload, ctx, now=None):
    """Clean the payload's target and return what was deleted, or would be on a dry run."""
    config = from_settings(ctx.settings)
    now = now or datetime.now(timezone.utc)
    if payload.get("target") == "jobs":
        return _run_jobs(payload, ctx, config, now)
    return _run_files(payload, ctx, config, now)


JOB_TYPE = JobType(
    name="file-cleanup",
    description="Delete old completed and failed jobs, or old files matching a pattern under a directory",
    validate=validate,
    run=run,
)
