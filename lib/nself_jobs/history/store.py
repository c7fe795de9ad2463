"""The history store: the only code that talks to PostgreSQL.

SQL lives in ``schema.sql`` and ``views.sql`` at the plugin root and in
``queries.sql`` beside this file. psycopg errors are translated into
:class:`ServiceUnavailable` here, with the original chained.
"""

import json
import re
from importlib import resources
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..errors import ServiceUnavailable
from ..paths import PLUGIN_DIR

TABLES = ("jobs", "job_results", "job_failures", "job_schedules", "job_schedule_misses")
VIEWS = ("jobs_active", "jobs_failed_details", "queue_stats", "job_type_stats",
         "recent_failures", "scheduled_jobs_overview")
# Serialises concurrent schema applications (two `init` runs, or init beside a worker).
_SCHEMA_LOCK_ID = 0x6A6F6273


def _load_queries():
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    queries = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        lines = [line for line in body.splitlines() if not line.startswith("--")]
        queries[name.strip()] = "\n".join(lines).strip()
    return queries


QUERIES = _load_queries()


def database_target(url):
    """Return ``host:port/database`` of a PostgreSQL URL, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


class HistoryStore:
    """A PostgreSQL connection factory plus every query the plugin runs."""

    def __init__(self, database_url, schema=None, connect_timeout_s=5):
        self.database_url = database_url
        self.schema = schema
        self.connect_timeout_s = connect_timeout_s

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.database_url, settings.db_schema)

    def translate(self, error):
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return ServiceUnavailable("PostgreSQL", database_target(self.database_url), reason)

    def connect(self, autocommit=False):
        """Open a connection whose search path starts at JOBS_DB_SCHEMA when that is set."""
        options = f"-c search_path={self.schema},public" if self.schema else None
        try:
            return psycopg.connect(self.database_url, autocommit=autocommit, options=options,
                                   connect_timeout=self.connect_timeout_s, row_factory=dict_row)
        except psycopg.Error as error:
            raise self.translate(error) from error

    # ------------------------------------------------------------ schema

    def apply_schema(self):
        """Create or update the tables and views; safe to run again and concurrently."""
        schema_sql = (PLUGIN_DIR / "schema.sql").read_text(encoding="utf-8")
        views_sql = (PLUGIN_DIR / "views.sql").read_text(encoding="utf-8")
        try:
            with self.connect() as connection:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK_ID])
                if self.schema:
                    connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                connection.execute(schema_sql)
                connection.execute(views_sql)
        except psycopg.Error as error:
            raise self.translate(error) from error

    def missing_relations(self):
        """Return the names of the plugin's tables and views that do not exist."""
        try:
            with self.connect(autocommit=True) as connection:
                rows = connection.execute(QUERIES["missing_relations"], {"names": list(TABLES + VIEWS)}).fetchall()
        except psycopg.Error as error:
            raise self.translate(error) from error
        return [row["name"] for row in rows]

    def drop_all(self):
        """Drop the plugin's views and tables."""
        try:
            with self.connect() as connection:
                if self.schema:
                    # Only the plugin's own schema: never fall through to a table of the same name in public.
                    connection.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
                connection.execute(QUERIES["drop_all"])
        except psycopg.Error as error:
            raise self.translate(error) from error

    # ------------------------------------------------------------ writes

    def apply_changes(self, connection, changes):
        """Write one batch of folded history changes in the caller's transaction.

        Rows go into session-private staging tables with COPY, then one statement
        per table moves them: a few round trips per batch, not per job.
        """
        staged = (
            ("staging_created", changes.created, "insert_created", _CREATED_COLUMNS),
            ("staging_updates", list(changes.updates.values()), "update_state", _UPDATE_COLUMNS),
            ("staging_results", changes.results, "insert_result", _RESULT_COLUMNS),
            ("staging_failures", changes.failures, "insert_failure", _FAILURE_COLUMNS),
        )
        with connection.cursor() as cursor:
            cursor.execute(QUERIES["create_staging"])
            for table, rows, statement, columns in staged:
                if not rows:
                    continue
                _copy_rows(cursor, table, rows, columns)
                cursor.execute(QUERIES[statement])

    # ------------------------------------------------------------ reads

    def job_history(self, job_id):
        """Return ``(row, results, failures)`` of one job, or ``(None, [], [])``."""
        try:
            with self.connect(autocommit=True) as connection:
                row = connection.execute(QUERIES["get_job"], {"id": job_id}).fetchone()
                if row is None:
                    return None, [], []
                results = connection.execute(QUERIES["get_results"], {"id": job_id}).fetchall()
                failures = connection.execute(QUERIES["get_failures"], {"id": job_id}).fetchall()
        except psycopg.Error as error:
            raise self.translate(error) from error
        return row, results, failures

    def fetch_all(self, query_name, parameters=None):
        """Run a named read query and return its rows as dicts."""
        try:
            with self.connect(autocommit=True) as connection:
                return connection.execute(QUERIES[query_name], parameters or {}).fetchall()
        except psycopg.Error as error:
            raise self.translate(error) from error


_CREATED_COLUMNS = ("id", "account", "type", "queue", "status", "priority", "payload", "max_attempts", "delay_ms",
                    "timeout_ms", "created_at", "options", "run_at", "unique_key", "schedule_id", "scheduled_for")
_UPDATE_COLUMNS = ("id", "status", "attempts", "started_at", "completed_at", "reopened", "progress",
                   "progress_message", "worker_name", "last_error", "run_at", "updated_at")
_RESULT_COLUMNS = ("id", "job_id", "account", "result", "duration_ms", "completed_at", "attempt")
_FAILURE_COLUMNS = ("id", "job_id", "account", "attempt", "error", "stack", "failed_at")
_JSON_COLUMNS = {"payload", "options", "result"}


def _copy_rows(cursor, table, rows, columns):
    """COPY row dicts into a staging table; JSON values are sent as text."""
    encode = [name in _JSON_COLUMNS for name in columns]
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
        for row in rows:
            copy.write_row([
                json.dumps(row[name], ensure_ascii=False) if is_json and row[name] is not None else row[name]
                for name, is_json in zip(columns, encode)
            ])
