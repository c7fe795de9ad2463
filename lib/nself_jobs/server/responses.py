"""JSON responses, request parsing and the error mapping shared by every API route.

Every API error is JSON ``{"error": message, "field": path?}`` with a status that
identifies the problem: 400 unreadable body, 401 missing token, 404 unknown id,
409 action that does not fit the job's state, 413 body too large, 422 invalid
value, 503 Redis or PostgreSQL down. An unexpected exception is logged with its
traceback and answered 500 without details.
"""

import logging

import bottle

from ..errors import (Conflict, JobsError, MalformedRequest, NotFound, PayloadTooLarge, ServiceUnavailable,
                      ValidationError)
from ..jobspec import normalise_account
from ..jsonio import dumps, loads_strict

log = logging.getLogger(__name__)


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
    try:
        header = bottle.request.get_header("X-App-Name")
    except UnicodeError:
        # Not UTF-8: normalising keeps only [a-z0-9_-], so read the raw bytes as Latin-1.
        header = bottle.request.environ.get("HTTP_X_APP_NAME", "")
    return normalise_account(header or bottle.request.query.getunicode("app"))


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


def query_text(name, max_length=500):
    """Return a query parameter as text, or None when absent or empty.

    Raises ValidationError for text that PostgreSQL cannot take (a NUL character)
    or that is longer than ``max_length`` characters.
    """
    value = bottle.request.query.getunicode(name)
    if not value:
        return None
    if "\x00" in value:
        raise ValidationError(name, "must not contain the NUL character")
    if len(value) > max_length:
        raise ValidationError(name, f"{len(value)} characters is longer than the maximum of {max_length}")
    return value


def handle_errors(callback):
    """Wrap a route handler so that the plugin's exceptions become JSON error responses."""
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
