"""Paged job lists from the history: keyset pagination with an opaque cursor.

A cursor names the last job of a page by ``(created_at, id)``; the next page
holds the jobs strictly older than it. Jobs added meanwhile appear only on
earlier pages, so no job is repeated or skipped while a client pages through.
"""

import base64
import uuid
from datetime import datetime

from ..errors import ValidationError
from ..jsonio import iso_utc

MAX_PAGE_SIZE = 500


def encode_cursor(row):
    text = f"{row['created_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor):
    """Return ``(created_at, id)`` from a cursor.

    Raises ValidationError unless the cursor names a time-zone-aware timestamp and a
    job UUID, so a forged cursor never reaches SQL.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, job_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        created_at = datetime.fromisoformat(created)
        uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError):
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise ValidationError("cursor", "malformed cursor: pass back the nextCursor of the previous page")
    return created_at, job_id


def list_jobs(store, account, status=None, queue=None, job_type=None, page_size=20, cursor=None):
    """Return ``{"jobs", "total", "totalPages", "nextCursor"}`` for one page."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError("pageSize", f"{page_size} is out of range: expected 1 to {MAX_PAGE_SIZE}")
    before_created, before_id = decode_cursor(cursor) if cursor else (None, None)
    filters = {"account": account, "status": status, "queue": queue, "type": job_type}
    rows = store.fetch_all("list_jobs", dict(filters, before_created=before_created, before_id=before_id,
                                             limit=page_size + 1))
    total = store.fetch_all("count_jobs", filters)[0]["total"]
    has_more = len(rows) > page_size
    rows = rows[:page_size]
    return {
        "jobs": [_job_summary(row) for row in rows],
        "total": total,
        "totalPages": -(-total // page_size),
        "pageSize": page_size,
        "nextCursor": encode_cursor(rows[-1]) if has_more else None,
    }


def _job_summary(row):
    return {
        "id": str(row["id"]), "type": row["type"], "queue": row["queue"], "status": row["status"],
        "priority": row["priority"], "progress": row["progress"], "attempts": row["attempts"],
        "maxAttempts": row["max_attempts"], "createdAt": iso_utc(row["created_at"]),
        "startedAt": iso_utc(row["started_at"]), "completedAt": iso_utc(row["completed_at"]),
        "error": row["last_error"], "account": row["source_account_id"],
    }
