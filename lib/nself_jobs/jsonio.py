"""Strict JSON in and out: no NaN or Infinity, bounded nesting, errors naming the problem.

Python's json module accepts ``NaN`` and ``Infinity`` and emits them, which
strict parsers reject; it also raises RecursionError on deeply nested input.
Every JSON text from users goes through :func:`loads_strict`.
"""

import json

from .errors import MalformedRequest, ValidationError

MAX_DEPTH = 64


def _reject_constant(name):
    raise ValidationError("body", f"{name} is not valid JSON; send a number or null")


def _depth(text):
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads_strict(text, field="body"):
    """Parse JSON text; raise ValidationError on invalid JSON, NaN/Infinity or nesting deeper than MAX_DEPTH."""
    if _depth(text) > MAX_DEPTH:
        raise ValidationError(field, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValidationError as error:
        raise ValidationError(field, error.message) from None
    except json.JSONDecodeError as error:
        raise MalformedRequest(field, f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise ValidationError(field, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    _reject_nul(value, field)
    return value


def _reject_nul(value, field):
    # PostgreSQL's jsonb cannot store U+0000, so such a job could never reach its history.
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(field, "strings must not contain the NUL character (\\u0000)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key, field)
            _reject_nul(item, field)
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item, field)


def dumps(value):
    """Serialise to compact JSON, keeping non-ASCII text as it is."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)


def iso_utc(value):
    """Format a datetime as ISO 8601 with a ``Z`` suffix, or return None."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
