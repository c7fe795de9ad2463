"""Schedule rows in PostgreSQL: the ``job_schedules`` and ``job_schedule_misses`` queries.

The SQL lives in ``queries.sql`` (the ``schedule_*`` blocks). psycopg errors are
translated into :class:`ServiceUnavailable` by the history store, except a
duplicate schedule name, which becomes :class:`Conflict`.
"""

import uuid
from contextlib import contextmanager

import psycopg
from psycopg.types.json import Jsonb

from ..errors import Conflict
from .store import QUERIES


class ScheduleStore:
    """The schedule queries of one :class:`HistoryStore`.

    With ``keep_connection`` the store reuses one connection across calls, as the
    scheduler loop does. Without it every call opens its own connection, so one
    store can serve several threads, as in the REST server.
    """

    def __init__(self, history, keep_connection=False):
        self.history = history
        self.keep_connection = keep_connection
        self._shared_connection = None

    @contextmanager
    def _connection(self):
        try:
            if not self.keep_connection:
                with self.history.connect(autocommit=True) as connection:
                    yield connection
                return
            if self._shared_connection is None or self._shared_connection.closed:
                self._shared_connection = self.history.connect(autocommit=True)
            yield self._shared_connection
        except psycopg.errors.UniqueViolation:
            raise
        except psycopg.Error as error:
            self.close()
            raise self.history.translate(error) from error

    def close(self):
        if self._shared_connection is not None:
            self._shared_connection.close()
            self._shared_connection = None

    def _fetch_one(self, query_name, parameters):
        with self._connection() as connection:
            return connection.execute(QUERIES[query_name], parameters).fetchone()

    def _fetch_all(self, query_name, parameters):
        with self._connection() as connection:
            return connection.execute(QUERIES[query_name], parameters).fetchall()

    # ------------------------------------------------------------ definitions

    def insert(self, row, now):
        """Insert a schedule and return the stored row, or raise Conflict when the name is taken."""
        parameters = _definition_parameters(row, now)
        parameters.update(id=row["id"], account=row["account"], name=row["name"])
        try:
            return self._fetch_one("schedule_insert", parameters)
        except psycopg.errors.UniqueViolation as error:
            raise Conflict(f"a schedule named {row['name']!r} already exists; "
                           "update it, or delete it first") from error

    def update(self, name, row, now):
        """Replace the definition of schedule ``name`` and return the stored row, or None when unknown."""
        parameters = _definition_parameters(row, now)
        parameters["name"] = name
        return self._fetch_one("schedule_update", parameters)

    def get(self, name):
        return self._fetch_one("schedule_get", {"name": name})

    def list_all(self):
        return self._fetch_all("schedule_list", {})

    def delete(self, name):
        """Delete a schedule and its miss records, and return its id, or None when unknown."""
        row = self._fetch_one("schedule_delete", {"name": name})
        return row["id"] if row else None

    def mark_run(self, schedule_id, at):
        with self._connection() as connection:
            connection.execute(QUERIES["schedule_mark_run"], {"id": schedule_id, "at": at})

    def recent_runs(self, schedule_id, limit=10):
        return self._fetch_all("schedule_recent_runs", {"schedule_id": schedule_id, "limit": limit})

    def misses(self, schedule_id, limit=10):
        return self._fetch_all("schedule_misses", {"schedule_id": schedule_id, "limit": limit})

    # ------------------------------------------------------------ scheduler

    def due(self, now, limit):
        """Return enabled schedules whose next_run_at is at or before ``now``, most overdue first."""
        return self._fetch_all("schedules_due", {"now": now, "limit": limit})

    def without_next_run(self, limit=1000):
        return self._fetch_all("schedules_without_next_run", {"limit": limit})

    def set_first_run(self, schedule_id, next_run_at):
        with self._connection() as connection:
            connection.execute(QUERIES["schedule_set_first_run"], {"id": schedule_id, "next_run_at": next_run_at})

    def next_due_at(self):
        """Return the earliest next_run_at of the enabled schedules, or None."""
        return self._fetch_one("schedule_next_due", {})["next_run_at"]

    def advance(self, schedule, expected_next_run_at, next_run_at, last_run_at, misses, now):
        """Move a schedule's next_run_at on and record its misses, in one transaction.

        ``misses`` contains objects with the fields of a ``job_schedule_misses`` row
        (``MissRecord`` in ``scheduler.py``).

        The update only applies while next_run_at still equals
        ``expected_next_run_at``. When another scheduler pass or an edit changed it
        first, nothing is written, so no miss is recorded twice. Returns whether
        the update applied.
        """
        with self._connection() as connection, connection.transaction():
            moved = connection.execute(QUERIES["schedule_advance"], {
                "id": schedule["id"], "expected_next_run_at": expected_next_run_at,
                "next_run_at": next_run_at, "last_run_at": last_run_at,
            }).fetchone()
            if moved is None:
                return False
            for miss in misses:
                _record_miss(connection, schedule, miss, now)
        return True


def _definition_parameters(row, now):
    return {
        "type": row["type"], "queue": row["queue"], "cron": row["cron"], "timezone": row["timezone"],
        "payload": Jsonb(row["payload"]), "options": Jsonb(row["options"]), "description": row["description"],
        "enabled": row["enabled"], "misfire_policy": row["misfire_policy"],
        "misfire_grace_ms": row["misfire_grace_ms"], "overlap_policy": row["overlap_policy"],
        "next_run_at": row["next_run_at"], "now": now,
    }


def _record_miss(connection, schedule, miss, now):
    parameters = {
        "id": str(uuid.uuid4()), "account": schedule["source_account_id"], "schedule_id": schedule["id"],
        "reason": miss.reason, "first_scheduled_for": miss.first_scheduled_for,
        "last_scheduled_for": miss.last_scheduled_for, "missed_count": miss.missed_count,
        "late_runs": miss.late_runs, "job_id": miss.job_id, "detail": miss.detail, "now": now,
    }
    if miss.reason == "overlap":
        extended = connection.execute(QUERIES["schedule_overlap_extend"], parameters).fetchone()
        if extended is not None:
            return
    connection.execute(QUERIES["schedule_miss_insert"], parameters)
