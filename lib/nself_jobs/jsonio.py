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
    _check_strings(value, field)
    return value


def check_text(text, field):
    """Raise ValidationError for text that Redis and PostgreSQL cannot store.

    PostgreSQL's jsonb rejects U+0000, and a lone surrogate (from a ``\\ud800``
    escape or a command-line byte that is not UTF-8) cannot be encoded as UTF-8.
    """
    if "\x00" in text:
        raise ValidationError(field, "strings must not contain the NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "strings must be valid Unicode: a lone surrogate such as \\ud800 "
                                     "or a byte that is not UTF-8 was found") from None


def _check_strings(value, field):
    """Check every string in a parsed JSON value; errors name the path, such as ``payload.to[1]``."""
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, field)
            child = key if field == "body" else f"{field}.{key}"
            _check_strings(item, child.encode("utf-8", "backslashreplace").decode("ascii", "replace"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{field}[{index}]")


def dumps(value):
    """Serialise to compact JSON, keeping non-ASCII text as it is."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)


def iso_utc(value):
    """Format a datetime as ISO 8601 with a ``Z`` suffix, or return None."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
