"""The REST API and dashboard: a Bottle app built by :func:`create_app`.

Every error is JSON ``{"error": message, "field": path?}`` with a status that
says what went wrong: 400 unreadable body, 404 unknown id, 413 body too large,
422 invalid value, 503 Redis or PostgreSQL down. No handler lets an exception
become a 500 without logging it.
"""

import logging
import time

import bottle

from .. import __version__, jobtypes
from ..errors import (Conflict, JobsError, MalformedRequest, NotFound, PayloadTooLarge, ServiceUnavailable,
                      ValidationError)
from ..history import HistoryStore
from ..history.listing import list_jobs
from ..jobview import job_details
from ..jobspec import normalise_account, parse_job_request
from ..jsonio import dumps, loads_strict
from ..paths import TEMPLATES_DIR
from ..operations import Operations
from ..queue import JobQueue
from ..settings import QUEUE_NAMES

log = logging.getLogger(__name__)

STATES = ("waiting", "active", "completed", "failed", "delayed", "cancelled")
JOB_STATUSES = ("pending", "active", "completed", "failed", "delayed", "cancelled")


def json_response(status, body):
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return dumps(body)


def error_response(status, message, field=None):
    body = {"error": message}
    if field:
        body["field"] = field
    return json_response(status, body)


def request_account():
    """Return the nself app of the request: X-App-Name, then ?app=, normalised; 'primary' by default."""
    return normalise_account(bottle.request.get_header("X-App-Name") or bottle.request.query.get("app"))


def read_json_body(max_bytes):
    """Read and parse the request body; raise PayloadTooLarge or ValidationError."""
    length = bottle.request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(length, max_bytes)
    raw = bottle.request.body.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(len(raw), max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedRequest("body", f"invalid UTF-8 at byte {error.start}; send the body as UTF-8") from None
    if not text.strip():
        raise ValidationError("body", "empty body: send a JSON object")
    return loads_strict(text)


class Api:
    """Route handlers over one queue and one history store."""

    def __init__(self, settings, queue, store):
        self.settings = settings
        self.queue = queue
        self.store = store
        self.operations = Operations(queue)

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

    def create_job(self):
        body = read_json_body(self.settings.max_payload_bytes)
        spec = parse_job_request(body, self.settings, account=request_account())
        job_id, created = self.queue.enqueue(spec)
        status = ("delayed" if spec.delay_ms else "pending") if created else "existing"
        return json_response(201 if created else 200, {
            "id": job_id, "type": spec.type, "queue": spec.queue, "status": status,
            "priority": spec.priority_name, "created": created,
        })

    def get_job(self, job_id):
        details = job_details(job_id, self.queue, self.store)
        if details is None:
            raise NotFound(f"job {job_id} not found")
        return json_response(200, details)

    def list_jobs(self):
        query = bottle.request.query
        status = query.get("status") or None
        if status is not None and status not in JOB_STATUSES:
            raise ValidationError("status", f"unknown status {status!r}: expected one of {', '.join(JOB_STATUSES)}")
        queue_name = query.get("queue") or None
        if queue_name is not None and queue_name not in QUEUE_NAMES:
            raise ValidationError("queue", f"unknown queue {queue_name!r}: expected one of {', '.join(QUEUE_NAMES)}")
        try:
            page_size = int(query.get("pageSize", "20"))
        except ValueError:
            raise ValidationError("pageSize", "expected a whole number") from None
        page = list_jobs(self.store, request_account(), status=status, queue=queue_name,
                         job_type=query.getunicode("type") or None, page_size=page_size,
                         cursor=query.get("cursor") or None)
        return json_response(200, page)

    def cancel_job(self, job_id):
        outcome = self.operations.cancel(job_id)
        return json_response(200 if outcome == "cancelled" else 202, {"id": job_id, "status": outcome})

    def retry_job(self, job_id):
        self.operations.retry(job_id)
        return json_response(200, {"id": job_id, "status": "pending"})

    def promote_job(self, job_id):
        self.operations.promote(job_id)
        return json_response(200, {"id": job_id, "status": "pending"})

    def stats(self):
        counts = self.queue.counts()
        totals = {state: sum(queue[state] for queue in counts.values()) for state in STATES}
        return json_response(200, {"queues": counts, "total": totals, "timestamp": time.time()})

    def dashboard(self):
        counts = self.queue.counts()
        return bottle.template("overview", counts=counts, queues=QUEUE_NAMES, types=jobtypes.names(),
                               settings=self.settings)


def _handle_errors(callback):
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except MalformedRequest as error:
            return error_response(400, error.message, error.field)
        except ValidationError as error:
            return error_response(422, error.message, error.field)
        except PayloadTooLarge as error:
            return error_response(413, str(error))
        except NotFound as error:
            return error_response(404, str(error))
        except Conflict as error:
            return error_response(409, str(error))
        except ServiceUnavailable as error:
            log.warning("request %s %s failed: %s", bottle.request.method, bottle.request.path, error)
            return error_response(503, str(error))
        except JobsError as error:
            return error_response(409, str(error))
        except bottle.HTTPResponse:
            raise
        except Exception:
            log.exception("request %s %s failed", bottle.request.method, bottle.request.path)
            return error_response(500, "internal error; see the server log")
    return wrapper


def create_app(settings, queue=None, store=None):
    """Build the Bottle app; ``queue`` and ``store`` default to ones built from ``settings``."""
    queue = queue or JobQueue.from_settings(settings)
    store = store or HistoryStore.from_settings(settings)
    api = Api(settings, queue, store)
    app = bottle.Bottle()
    if str(TEMPLATES_DIR) not in bottle.TEMPLATE_PATH:
        bottle.TEMPLATE_PATH.insert(0, str(TEMPLATES_DIR))

    routes = [
        ("GET", "/health", api.health),
        ("GET", "/ready", api.ready),
        ("POST", "/api/jobs", api.create_job),
        ("GET", "/api/jobs", api.list_jobs),
        ("GET", "/api/jobs/<job_id>", api.get_job),
        ("DELETE", "/api/jobs/<job_id>", api.cancel_job),
        ("POST", "/api/jobs/<job_id>/retry", api.retry_job),
        ("POST", "/api/jobs/<job_id>/promote", api.promote_job),
        ("GET", "/api/stats", api.stats),
    ]
    if settings.dashboard_enabled:
        routes.append(("GET", settings.dashboard_path, api.dashboard))
    for method, path, handler in routes:
        app.route(path, method, _handle_errors(handler))
    from .schedules_api import register_schedule_routes  # that module imports this one, so not at the top
    register_schedule_routes(app, settings, queue, store, _handle_errors)

    @app.error(404)
    def not_found(error):
        return error_response(404, f"no route for {bottle.request.method} {bottle.request.path}")

    @app.error(405)
    def not_allowed(error):
        return error_response(405, f"method {bottle.request.method} not allowed on {bottle.request.path}")

    app.api = api
    return app
