"""The REST API and dashboard: a Bottle app built by :func:`create_app`.

The handlers live by concept: ``api.py`` (REST), ``metrics.py`` (Prometheus),
``dashboard.py`` and ``dashboard_actions.py`` (HTML pages and their forms),
``security.py`` (token, sessions, CSRF, headers). Error mapping is in
``responses.py``; its helpers are imported here too, where older modules look
for them.
"""

import logging
from urllib.parse import quote

import bottle

from ..history import HistoryStore
from ..jsonio import dumps
from ..paths import TEMPLATES_DIR
from ..queue import JobQueue
from .api import Api
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics
from .responses import (error_response, handle_errors, json_response, read_json_body,  # noqa: F401 - re-exported
                        request_account)
from .schedules_api import register_schedule_routes
from .security import Security, add_security_headers

log = logging.getLogger(__name__)

# Open without a token even when JOBS_API_TOKEN is set: nself's health checks call them.
OPEN_PATHS = ("/health", "/ready")

# Older name of the error wrapper, passed to register_schedule_routes.
_handle_errors = handle_errors


def _api_routes(api):
    return [
        ("GET", "/health", api.health),
        ("GET", "/ready", api.ready),
        ("GET", "/api/openapi.json", api.openapi),
        ("POST", "/api/jobs", api.create_job),
        ("GET", "/api/jobs", api.list_jobs),
        ("GET", "/api/jobs/<job_id>", api.get_job),
        ("DELETE", "/api/jobs/<job_id>", api.cancel_job),
        ("POST", "/api/jobs/<job_id>/retry", api.retry_job),
        ("POST", "/api/jobs/<job_id>/promote", api.promote_job),
        ("GET", "/api/stats", api.stats),
        ("GET", "/api/queues", api.queues),
        ("POST", "/api/queues/<name>/pause", api.pause_queue),
        ("POST", "/api/queues/<name>/resume", api.resume_queue),
    ]


def _metrics_handler(metrics):
    def handler():
        bottle.response.content_type = METRICS_CONTENT_TYPE
        return metrics.render()
    return handler


def _is_dashboard_path(path, dashboard_path):
    return path == dashboard_path or path.startswith(dashboard_path + "/")


def _auth_gate(settings, security):
    """Return a before_request hook that enforces JOBS_API_TOKEN; see security.py for the rules."""
    dashboard_path = settings.dashboard_path
    login_path = f"{dashboard_path}/login"
    static_prefix = f"{dashboard_path}/static/"

    def check():
        if not security.enabled:
            return
        path = bottle.request.path
        if path in OPEN_PATHS:
            return
        if settings.dashboard_enabled and _is_dashboard_path(path, dashboard_path):
            if path == login_path or path.startswith(static_prefix) or security.dashboard_allowed():
                return
            if bottle.request.method in ("GET", "HEAD"):
                target = bottle.request.fullpath + ("?" + bottle.request.query_string
                                                     if bottle.request.query_string else "")
                raise bottle.HTTPResponse(status=303, headers={
                    "Location": f"{dashboard_path}/login?next={quote(target, safe='')}"})
            raise bottle.HTTPResponse("Log in to the dashboard first.", status=401,
                                      headers={"Content-Type": "text/plain; charset=utf-8"})
        if security.bearer_valid():
            return
        body = dumps({"error": "missing or invalid token: send Authorization: Bearer <JOBS_API_TOKEN>"})
        raise bottle.HTTPResponse(body, status=401, headers={
            "Content-Type": "application/json", "WWW-Authenticate": 'Bearer realm="nself-jobs"'})

    return check


def create_app(settings, queue=None, store=None):
    """Build the Bottle app; ``queue`` and ``store`` default to ones built from ``settings``."""
    queue = queue or JobQueue.from_settings(settings)
    store = store or HistoryStore.from_settings(settings)
    api = Api(settings, queue, store)
    security = Security(settings.api_token, settings.dashboard_path)
    app = bottle.Bottle()
    if str(TEMPLATES_DIR) not in bottle.TEMPLATE_PATH:
        bottle.TEMPLATE_PATH.insert(0, str(TEMPLATES_DIR))

    app.add_hook("before_request", _auth_gate(settings, security))
    app.add_hook("after_request", add_security_headers)

    for method, path, handler in _api_routes(api):
        app.route(path, method, handle_errors(handler))
    app.route("/metrics", "GET", handle_errors(_metrics_handler(Metrics(queue, store))))
    register_schedule_routes(app, settings, queue, store, _handle_errors)
    if settings.dashboard_enabled:
        from .dashboard import register_dashboard_routes
        register_dashboard_routes(app, settings, queue, store, security)

    @app.error(404)
    def not_found(error):
        return error_response(404, f"no route for {bottle.request.method} {bottle.request.path}")

    @app.error(405)
    def not_allowed(error):
        return error_response(405, f"method {bottle.request.method} not allowed on {bottle.request.path}")

    @app.error(500)
    def internal_error(error):
        log.error("request %s %s failed: %s", bottle.request.method, bottle.request.path, error.exception)
        return error_response(500, "internal error; see the server log")

    app.api = api
    app.security = security
    return app
