"""History reads of the dashboard and of ``/metrics``: filtered job pages, charts, failure groups, counters.

The SQL is in ``queries.sql`` (the ``dashboard_*`` and ``metrics_*`` blocks). Job
pages use the keyset cursor of :mod:`.listing`, so they stay stable while jobs are
added and cost the same on page 1 and page 1,000.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..errors import ValidationError
from .listing import MAX_PAGE_SIZE, decode_cursor, encode_cursor

ENDED_STATUSES = ("completed", "failed", "cancelled")
# Counting stops here: an exact count of a text search over millions of rows would
# take longer than the page itself.
COUNT_CAP = 100_000
MAX_SEARCH_LENGTH = 200
# Bucket upper bounds of the job duration histogram, in seconds.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True)
class JobFilter:
    """The dashboard's job filters; None matches every job."""

    status: str | None = None
    queue: str | None = None
    type: str | None = None
    text: str | None = None
    error: str | None = None

    def parameters(self, account):
        return {"account": account, "status": self.status, "queue": self.queue, "type": self.type,
                "error": self.error, "pattern": like_pattern(self.text) if self.text else None}

    @property
    def sorted_by_end(self):
        """Whether pages are ordered by the time the job ended (completed, failed, cancelled lists)."""
        return self.status in ENDED_STATUSES


def like_pattern(text):
    """Return an ILIKE pattern that matches ``text`` anywhere, with ``%``, ``_`` and ``\\`` taken literally."""
    if len(text) > MAX_SEARCH_LENGTH:
        raise ValidationError("q", f"search text of {len(text)} characters is longer than {MAX_SEARCH_LENGTH}")
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def job_page(store, account, job_filter, page_size=50, before=None, after=None):
    """Return one page of jobs as ``{"jobs", "older", "newer"}``.

    ``before`` (a cursor) requests the jobs after it in list order and ``after``
    the jobs before it. With neither, the first page is returned. ``older`` and ``newer`` are
    the cursors of the neighbouring pages, or None at either end. Rows keep their
    datetime values for the templates.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError("pageSize", f"{page_size} is out of range: expected 1 to {MAX_PAGE_SIZE}")
    query = "dashboard_jobs_by_ended" if job_filter.sorted_by_end else "dashboard_jobs_by_created"
    parameters = job_filter.parameters(account)
    parameters["limit"] = page_size + 1

    if after:
        parameters["cursor_at"], parameters["cursor_id"] = decode_cursor(after)
        rows = store.fetch_all(query + "_newer", parameters)
        has_newer = len(rows) > page_size
        rows = list(reversed(rows[:page_size]))
        # The page came from walking towards newer jobs, so older jobs exist: the cursor's own.
        return {"jobs": rows, "older": _cursor(rows[-1]) if rows else None,
                "newer": _cursor(rows[0]) if has_newer and rows else None}

    parameters["cursor_at"], parameters["cursor_id"] = decode_cursor(before) if before else (None, None)
    rows = store.fetch_all(query, parameters)
    has_older = len(rows) > page_size
    rows = rows[:page_size]
    return {"jobs": rows, "older": _cursor(rows[-1]) if has_older else None,
            "newer": _cursor(rows[0]) if before and rows else None}


def count_jobs(store, account, job_filter, cap=COUNT_CAP):
    """Return ``(count, capped)``: the matching jobs counted up to ``cap``, and whether the cap was reached."""
    parameters = job_filter.parameters(account)
    parameters["cap"] = cap
    total = store.fetch_all("dashboard_count_jobs", parameters)[0]["total"]
    return total, total >= cap


def failed_job_ids(store, account, job_filter, limit):
    """Return the ids of failed jobs matching the filter, oldest failure first, at most ``limit``."""
    parameters = job_filter.parameters(account)
    parameters["limit"] = limit
    return [str(row["id"]) for row in store.fetch_all("dashboard_failed_ids", parameters)]


def hourly_outcomes(store, account, hours=24, now=None):
    """Return ``(start, completed, failed)``: per-hour counts of the last ``hours`` hours, oldest first.

    ``start`` is the UTC start of the first hour; the last bucket is the current,
    still running hour.
    """
    now = now or datetime.now(timezone.utc)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    counts = {"completed": [0] * hours, "failed": [0] * hours}
    for row in store.fetch_all("dashboard_hourly_outcomes", {"account": account, "since": start}):
        if 0 <= row["bucket"] < hours:
            counts[row["status"]][row["bucket"]] = row["jobs"]
    return start, counts["completed"], counts["failed"]


def failure_groups(store, account, since, limit=50, samples=3, recent=2000):
    """Return failed jobs that ended since ``since``, grouped by last error, largest group first.

    Each group has ``error``, ``jobs``, ``first_seen``, ``last_seen``, ``types`` and
    up to ``samples`` ``sample_ids``, the latest first. Samples come from the
    ``recent`` latest failures, read through an index; only groups absent from
    those need a second query over their own rows.
    """
    window = {"account": account, "since": since}
    groups = store.fetch_all("dashboard_failure_groups", dict(window, limit=limit))
    by_error = {group["error"]: group for group in groups}
    for group in groups:
        group["sample_ids"] = []
    for row in store.fetch_all("dashboard_recent_failures", dict(window, limit=recent)):
        group = by_error.get(row["last_error"])
        if group is not None and len(group["sample_ids"]) < samples:
            group["sample_ids"].append(str(row["id"]))
    missing = [group["error"] for group in groups if not group["sample_ids"] and group["error"] is not None]
    if missing:
        for row in store.fetch_all("dashboard_failure_samples", dict(window, errors=missing, samples=samples)):
            by_error[row["last_error"]]["sample_ids"] = [str(job_id) for job_id in row["sample_ids"]]
    return groups


def metrics_counts(store):
    """Return the history counts behind ``/metrics``.

    The result has ``jobs`` (rows per app, type and status), ``failed_attempts``
    (per app and type) and ``durations``: per app and type, the attempts in each
    bucket of :data:`DURATION_BUCKETS_S` plus the +Inf bucket, and the sum in ms.
    """
    bounds_ms = [round(bound * 1000) + 1 for bound in DURATION_BUCKETS_S]
    durations = {}
    # width_bucket returns how many bounds are <= the duration. Each bound is the bucket's
    # upper limit + 1 ms and durations are whole ms, so that is the index of the first
    # bucket whose limit is >= the duration; len(bounds) means the +Inf bucket.
    for row in store.fetch_all("metrics_durations", {"bounds": bounds_ms}):
        entry = durations.setdefault((row["app"], row["type"]),
                                     {"buckets": [0] * (len(bounds_ms) + 1), "sum_ms": 0})
        entry["buckets"][row["bucket"]] += row["attempts"]
        entry["sum_ms"] += int(row["duration_ms"] or 0)
    return {
        "jobs": store.fetch_all("metrics_jobs_by_status"),
        "failed_attempts": store.fetch_all("metrics_failed_attempts"),
        "durations": durations,
    }


def _cursor(row):
    return encode_cursor({"created_at": row["sort_at"], "id": row["id"]})

