"""REST routes for recurring jobs under ``/api/schedules``.

Errors follow the rest of the API: 422 with ``field`` naming the invalid value
(``cron.minute``, ``timezone``, ``payload.url``, ``count``), 404 for an
unknown schedule and 409 for a name that is already taken.
"""

import bottle

from ..history.schedules import ScheduleStore
from ..scheduler import ScheduleService
from .responses import json_response, read_json_body, request_account


class ScheduleApi:
    """Route handlers over one ScheduleService."""

    def __init__(self, settings, service):
        self.settings = settings
        self.service = service

    def list_schedules(self):
        return json_response(200, {"schedules": self.service.list_schedules()})

    def create(self):
        body = read_json_body(self.settings.max_payload_bytes)
        return json_response(201, self.service.create(body, account=request_account()))

    def get(self, name):
        return json_response(200, self.service.details(name))

    def update(self, name):
        body = read_json_body(self.settings.max_payload_bytes)
        return json_response(200, self.service.update(name, body))

    def delete(self, name):
        return json_response(200, self.service.delete(name))

    def enable(self, name):
        return json_response(200, self.service.set_enabled(name, True))

    def disable(self, name):
        return json_response(200, self.service.set_enabled(name, False))

    def run_now(self, name):
        return json_response(201, self.service.run_now(name))

    def preview(self, name):
        return json_response(200, self.service.preview(name, bottle.request.query.get("count")))

    def preview_expression(self):
        query = bottle.request.query
        return json_response(200, self.service.preview_expression(
            query.getunicode("cron", ""), query.getunicode("timezone") or None, query.get("count")))


def register_schedule_routes(app, settings, queue, store, handle_errors):
    """Add the ``/api/schedules`` routes to ``app``; ``handle_errors`` wraps each handler as in app.py."""
    api = ScheduleApi(settings, ScheduleService(settings, ScheduleStore(store), queue))
    routes = [
        ("GET", "/api/schedules", api.list_schedules),
        ("POST", "/api/schedules", api.create),
        # Bottle matches static paths before dynamic ones, so this never reaches get().
        ("GET", "/api/schedules/preview", api.preview_expression),
        ("GET", "/api/schedules/<name>", api.get),
        ("PATCH", "/api/schedules/<name>", api.update),
        ("DELETE", "/api/schedules/<name>", api.delete),
        ("POST", "/api/schedules/<name>/enable", api.enable),
        ("POST", "/api/schedules/<name>/disable", api.disable),
        ("POST", "/api/schedules/<name>/run-now", api.run_now),
        ("GET", "/api/schedules/<name>/preview", api.preview),
    ]
    for method, path, handler in routes:
        app.route(path, method, handle_errors(handler))
    return api
