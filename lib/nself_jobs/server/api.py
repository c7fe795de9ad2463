"""REST handlers: jobs, queues, stats, health and the OpenAPI document.

A request belongs to one nself app (``X-App-Name`` or ``?app=``): lists and counts
from PostgreSQL show that app's jobs only, and the API returns 404 for a job of
another app, as if it did not exist. Live counts from Redis cover every app, because Redis
keeps one queue per name for all of them.
"""

import time
import uuid

import bottle

from .. import __version__
from ..errors import NotFound, ServiceUnavailable, ValidationError
from ..history.listing import list_jobs
from ..jobspec import parse_job_request
from ..jobview import job_details
from ..operations import Operations
from ..settings import QUEUE_NAMES
from .control import QueueControl
from .openapi import openapi_document
from .responses import json_response, query_text, read_json_body, request_account

STATES = ("waiting", "active", "completed", "failed", "delayed", "cancelled")
JOB_STATUSES = ("pending", "active", "completed", "failed", "delayed", "cancelled")


def check_job_id(job_id):
    """Raise NotFound unless ``job_id`` is a UUID, the only form of job id the plugin creates."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise NotFound(f"job {job_id} not found") from None


class Api:
    """Route handlers over one queue and one history store."""

    def __init__(self, settings, queue, store):
        self.settings = settings
        self.queue = queue
        self.store = store
        self.operations = Operations(queue)
        self.control = QueueControl(queue)

    # ------------------------------------------------------------ service

    def health(self):
        body = {"status": "ok", "service": "jobs", "version": __version__}
        try:
            warning = self.queue.eviction_warning()
        except ServiceUnavailable:
            warning = None
        if warning:
            body["warnings"] = [warning]
        return json_response(200, body)

    def ready(self):
        down = {}
        try:
            self.queue.redis.ping()
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            down["redis"] = str(error) or type(error).__name__
        try:
            with self.store.connect(autocommit=True) as connection:
                connection.execute("SELECT 1")
        except Exception as error:  # noqa: BLE001
            down["postgres"] = str(error) or type(error).__name__
        if down:
            return json_response(503, {"status": "unavailable", "down": down})
        return json_response(200, {"status": "ready"})

    def openapi(self):
        return json_response(200, openapi_document(self.settings))

    # ------------------------------------------------------------ jobs

    def create_job(self):
        body = read_json_body(self.settings.max_payload_bytes)
        spec = parse_job_request(body, self.settings, account=request_account())
        job_id, created = self.queue.enqueue(spec)
        if not created:
            status = "existing"
        elif spec.delay_ms:
            status = "delayed"
        else:
            status = "pending"
        return json_response(201 if created else 200, {
            "id": job_id, "type": spec.type, "queue": spec.queue, "status": status,
            "priority": spec.priority_name, "created": created,
        })

    def owned_job(self, job_id):
        """Return a job's details when it belongs to the request's app; raise NotFound otherwise."""
        details = job_details(job_id, self.queue, self.store)
        if details is None or details.get("account") != request_account():
            raise NotFound(f"job {job_id} not found")
        return details

    def check_owner(self, job_id):
        """Raise NotFound unless the job is in Redis and belongs to the request's app.

        Every action changes a job in Redis, so a job that Redis no longer contains
        is not found for actions even while its history remains.
        """
        check_job_id(job_id)
        account = self.control.job_account(job_id)
        if account is None or account != request_account():
            raise NotFound(f"job {job_id} not found in Redis: it does not exist, belongs to another app, "
                           "or its cleanup age has passed")

    def get_job(self, job_id):
        return json_response(200, self.owned_job(job_id))

    def list_jobs(self):
        query = bottle.request.query
        status = query_text("status")
        if status is not None and status not in JOB_STATUSES:
            raise ValidationError("status", f"unknown status {status!r}: expected one of {', '.join(JOB_STATUSES)}")
        queue_name = query_text("queue")
        if queue_name is not None and queue_name not in QUEUE_NAMES:
            raise ValidationError("queue", f"unknown queue {queue_name!r}: expected one of {', '.join(QUEUE_NAMES)}")
        try:
            page_size = int(query.get("pageSize", "20"))
        except ValueError:
            raise ValidationError("pageSize", "expected a whole number") from None
        cursor = query_text("cursor")
        page = list_jobs(self.store, request_account(), status=status, queue=queue_name,
                         job_type=query_text("type"), page_size=page_size, cursor=cursor)
        return json_response(200, page)

    def cancel_job(self, job_id):
        remove = (bottle.request.query.get("remove") or "").lower()
        if remove not in ("", "true", "false"):
            raise ValidationError("remove", f"expected true or false, not {remove!r}")
        self.check_owner(job_id)
        outcome = self.operations.delete(job_id) if remove == "true" else self.operations.cancel(job_id)
        return json_response(202 if outcome == "requested" else 200, {"id": job_id, "status": outcome})

    def retry_job(self, job_id):
        self.check_owner(job_id)
        self.operations.retry(job_id)
        return json_response(200, {"id": job_id, "status": "pending"})

    def promote_job(self, job_id):
        self.check_owner(job_id)
        self.operations.promote(job_id)
        return json_response(200, {"id": job_id, "status": "pending"})

    # ------------------------------------------------------------ queues

    def stats(self):
        counts = self.queue.counts()
        totals = {state: sum(queue[state] for queue in counts.values()) for state in STATES}
        return json_response(200, {"queues": counts, "total": totals, "timestamp": time.time()})

    def queues(self):
        counts = self.queue.counts()
        workers = self.control.alive_workers()
        body = []
        for name in QUEUE_NAMES:
            row = dict(counts[name])
            paused = row.pop("paused")
            serving = sum(1 for worker in workers if name in worker["queues"])
            body.append({"name": name, "paused": paused, "counts": row, "workers": serving})
        return json_response(200, {"queues": body, "timestamp": time.time()})

    def pause_queue(self, name):
        self.control.set_paused(name, True)
        return json_response(200, {"name": name, "paused": True})

    def resume_queue(self, name):
        self.control.set_paused(name, False)
        return json_response(200, {"name": name, "paused": False})

