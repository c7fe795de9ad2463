"""One job as the API and CLI show it: live state from Redis, attempts from PostgreSQL.

Redis holds a job until its cleanup age; PostgreSQL holds its history after
that. A job answers from whichever has it, so it is never "not found" between
being accepted and its history row being written.
"""

import logging
import uuid

from .errors import ServiceUnavailable
from .jsonio import iso_utc

log = logging.getLogger(__name__)


def _from_history_row(row):
    return {
        "id": str(row["id"]), "type": row["type"], "queue": row["queue"], "status": row["status"],
        "priority": row["priority"], "payload": row["payload"], "options": row["options"],
        "progress": row["progress"], "progressMessage": row["progress_message"],
        "attempts": row["attempts"], "maxAttempts": row["max_attempts"], "result": None,
        "error": row["last_error"], "createdAt": iso_utc(row["created_at"]), "startedAt": iso_utc(row["started_at"]),
        "completedAt": iso_utc(row["completed_at"]), "runAt": iso_utc(row["run_at"]), "worker": row["worker_name"],
        "account": row["source_account_id"],
    }


def job_details(job_id, queue, store):
    """Return a job's details with its attempt history, or None when neither Redis nor PostgreSQL has it."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    live = queue.get_job(job_id)
    try:
        row, results, failures = store.job_history(job_id)
        history_available = True
    except ServiceUnavailable as error:
        log.warning("history of job %s unavailable: %s", job_id, error)
        row, results, failures, history_available = None, [], [], False

    if live is None and row is None:
        return None
    details = live if live is not None else _from_history_row(row)
    if live is None and results:
        details["result"] = results[-1]["result"]
    details["failures"] = [
        {"attempt": failure["attempt_number"], "error": failure["error_message"],
         "stack": failure["error_stack"], "failedAt": iso_utc(failure["failed_at"])}
        for failure in failures
    ]
    details["results"] = [
        {"attempt": result["attempt_number"], "durationMs": result["duration_ms"],
         "completedAt": iso_utc(result["completed_at"])}
        for result in results
    ]
    details["historyAvailable"] = history_available
    details["attemptLabel"] = f"{details['attempts']}/{details['maxAttempts']}"
    return details
