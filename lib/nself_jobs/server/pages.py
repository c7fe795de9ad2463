"""Rendering helpers shared by the dashboard's pages and actions.

Templates get a :class:`PageContext` as ``page``: links that keep the request's
app, times formatted in UTC, the CSRF token and the flash message. Every value
reaches the HTML through ``{{ }}``, which escapes it.
"""

import base64
import json
import logging
from datetime import datetime, timezone
from urllib.parse import urlencode

import bottle

from .. import __version__
from ..errors import JobsError, NotFound, ServiceUnavailable, ValidationError
from .responses import request_account
from .security import CSRF_FIELD

log = logging.getLogger(__name__)

FLASH_COOKIE = "nself_jobs_flash"


def parse_time(value):
    """Return an aware datetime from a datetime or an ISO 8601 string, or None."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_time(value):
    """Format a time as ``2026-01-05 12:00:25 UTC``, or an em dash when there is none."""
    moment = parse_time(value)
    if moment is None:
        return "—"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_age(value, now=None):
    """Format the time since ``value`` as ``12 s ago``, ``5 min ago``, ``3 h ago`` or ``2 d ago``."""
    moment = parse_time(value)
    if moment is None:
        return ""
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} {suffix}"
    return f"{int(seconds)} s {suffix}"


def pretty_json(value):
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def short_id(job_id):
    return str(job_id)[:8]


def truncate(text, length=160):
    if text is None:
        return ""
    return text if len(text) <= length else text[:length - 1] + "…"


class PageContext:
    """Request-wide values for the templates: links, times, the CSRF token and the flash message."""

    def __init__(self, settings, security, title, active):
        self.base = settings.dashboard_path
        self.security = security
        self.title = title
        self.active = active
        self.account = request_account()
        self.version = __version__
        self.flash = take_flash(settings.dashboard_path)
        self.csrf_field = CSRF_FIELD
        self._csrf = None

    @property
    def csrf(self):
        if self._csrf is None:
            self._csrf = self.security.csrf_token()
        return self._csrf

    @property
    def login_enabled(self):
        """Whether JOBS_API_TOKEN is set, so that pages offer a logout button."""
        return self.security.enabled

    def link(self, path="", **params):
        """Return a dashboard URL with the non-empty ``params``, keeping ``?app=`` when it is not primary."""
        return dashboard_link(self.base, path, self.account, **params)

    def static(self, name):
        return f"{self.base}/static/{name}?v={__version__}"

    format_time = staticmethod(format_time)
    format_age = staticmethod(format_age)
    pretty_json = staticmethod(pretty_json)
    short_id = staticmethod(short_id)
    truncate = staticmethod(truncate)


def dashboard_link(base, path, account, **params):
    query = {name: value for name, value in params.items() if value not in (None, "")}
    if account != "primary":
        query["app"] = account
    url = base + path
    return f"{url}?{urlencode(query)}" if query else url


def render(template, settings, security, title, active, status=200, **values):
    bottle.response.status = status
    bottle.response.content_type = "text/html; charset=utf-8"
    page = PageContext(settings, security, title, active)
    return bottle.template(template, page=page, **values)


# ------------------------------------------------------------ flash messages


def set_flash(base, kind, text):
    """Keep a one-time message for the next page; ``kind`` is ``ok`` or ``error``."""
    value = base64.urlsafe_b64encode(json.dumps({"kind": kind, "text": text[:500]}).encode()).decode()
    bottle.response.set_cookie(FLASH_COOKIE, value, path=base, httponly=True, samesite="strict")


def take_flash(base):
    """Return the pending message as ``{"kind", "text"}`` and clear it, or None."""
    value = bottle.request.get_cookie(FLASH_COOKIE)
    if not value:
        return None
    bottle.response.delete_cookie(FLASH_COOKIE, path=base, httponly=True, samesite="strict")
    try:
        message = json.loads(base64.urlsafe_b64decode(value.encode()))
        return {"kind": "error" if message.get("kind") == "error" else "ok", "text": str(message["text"])}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def redirect_after_post(location):
    """Return a 303 redirect for a form POST, so that reloading the next page does not submit the form again."""
    bottle.response.status = 303
    bottle.response.set_header("Location", location)
    return ""


# ------------------------------------------------------------ errors


def page_errors(settings, security):
    """Return a decorator that turns the plugin's exceptions into HTML error pages."""
    def decorate(callback):
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except NotFound as error:
                return _error_page(settings, security, 404, "Not found", str(error))
            except ValidationError as error:
                return _error_page(settings, security, 422, "Invalid request", f"{error.field}: {error.message}")
            except ServiceUnavailable as error:
                log.warning("dashboard %s %s failed: %s", bottle.request.method, bottle.request.path, error)
                return _error_page(settings, security, 503, "Service unavailable", str(error))
            except JobsError as error:
                return _error_page(settings, security, 409, "Not possible", str(error))
            except bottle.HTTPResponse:
                raise
            except Exception:
                log.exception("dashboard %s %s failed", bottle.request.method, bottle.request.path)
                return _error_page(settings, security, 500, "Internal error", "See the server log for details.")
        return wrapper
    return decorate


def _error_page(settings, security, status, heading, message):
    return render("error", settings, security, heading, None, status=status, heading=heading, message=message)
