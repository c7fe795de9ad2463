"""The history store: the only code that talks to PostgreSQL.

SQL lives in ``schema.sql`` and ``views.sql`` at the plugin root and in
``queries.sql`` beside this file. psycopg errors are translated into
:class:`ServiceUnavailable` here, with the original chained.
"""

import re
from importlib import resources
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..errors import ServiceUnavailable
from ..paths import PLUGIN_DIR

TABLES = ("jobs", "job_results", "job_failures", "job_schedules")
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
        """Write one batch of folded history changes in the caller's transaction."""
        with connection.cursor() as cursor:
            if changes.created:
                cursor.executemany(QUERIES["insert_created"], [_with_json(row, "payload", "options") for row in changes.created])
            if changes.updates:
                cursor.executemany(QUERIES["update_state"], list(changes.updates.values()))
            if changes.results:
                cursor.executemany(QUERIES["insert_result"], [_with_json(row, "result") for row in changes.results])
            if changes.failures:
                cursor.executemany(QUERIES["insert_failure"], changes.failures)

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


def _with_json(row, *names):
    converted = dict(row)
    for name in names:
        converted[name] = Jsonb(converted[name]) if converted.get(name) is not None else None
    return converted
