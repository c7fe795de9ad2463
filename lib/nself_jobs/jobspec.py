"""Validation of a job request into a :class:`JobSpec`, shared by the REST API and the CLI.

A request is ``{"type", "queue", "payload", "options"}``. Unknown fields are
rejected rather than ignored, so a misspelt option never passes silently.
Every error is a :class:`ValidationError` naming the field.
"""

import math
import re
import uuid
from dataclasses import dataclass, field

from . import jobtypes
from .errors import ValidationError
from .jsonio import check_text
from .keys import DEFAULT_PRIORITY, PRIORITIES
from .settings import QUEUE_NAMES

_REQUEST_FIELDS = {"type", "queue", "payload", "options"}
_OPTION_FIELDS = {
    "priority", "maxRetries", "delay", "retryDelay", "backoff", "timeout",
    "jobId", "uniqueKey", "description",
}
_ACCOUNT_PATTERN = re.compile(r"[^a-z0-9_-]")
MAX_DELAY_MS = 366 * 86_400_000
MAX_NESTING = 64


@dataclass
class JobSpec:
    """A validated job, ready to enqueue. Durations are in milliseconds."""

    type: str
    queue: str
    payload: dict
    priority: int
    max_attempts: int
    retry_delay_ms: int
    backoff: str
    delay_ms: int
    timeout_ms: int
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    unique_key: str | None = None
    description: str | None = None
    account: str = "primary"
    schedule_id: str | None = None
    scheduled_for: str | None = None

    @property
    def priority_name(self):
        return next(name for name, number in PRIORITIES.items() if number == self.priority)

    def options(self):
        """Return the options as stored with the job, in the request's spelling."""
        options = {
            "priority": self.priority_name,
            "maxRetries": self.max_attempts - 1,
            "retryDelay": self.retry_delay_ms,
            "backoff": self.backoff,
            "delay": self.delay_ms,
            "timeout": self.timeout_ms,
        }
        if self.unique_key:
            options["uniqueKey"] = self.unique_key
        if self.description:
            options["description"] = self.description
        return options


def normalise_account(value):
    """Normalise an nself app name as nself does: lowercase ``[a-z0-9_-]``, empty meaning ``primary``."""
    cleaned = _ACCOUNT_PATTERN.sub("", (value or "").strip().lower())[:128]
    return cleaned or "primary"


def _check_nesting(value, path, depth=0):
    if depth > MAX_NESTING:
        raise ValidationError(path, f"nested deeper than {MAX_NESTING} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_nesting(item, path, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_nesting(item, path, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(path, "NaN and Infinity are not valid JSON numbers")


def _whole_number(options, name, default, minimum, maximum):
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"options.{name}", f"expected a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValidationError(f"options.{name}", f"{value} is out of range: expected {minimum} to {maximum}")
    return value


def _priority(options):
    value = options.get("priority", DEFAULT_PRIORITY)
    if isinstance(value, str) and value.lower() in PRIORITIES:
        return PRIORITIES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in PRIORITIES.values():
        return value
    names = ", ".join(PRIORITIES)
    raise ValidationError("options.priority", f"unknown priority {value!r}: expected one of {names} (or 1-4)")


def _optional_text(options, name, max_length):
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ValidationError(f"options.{name}", f"expected a non-empty string of at most {max_length} characters")
    check_text(value, f"options.{name}")
    return value


def _parse_options(options, settings):
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValidationError("options", "expected a JSON object")
    unknown = sorted(set(options) - _OPTION_FIELDS)
    if unknown:
        raise ValidationError(f"options.{unknown[0]}", "unknown option; known options: " + ", ".join(sorted(_OPTION_FIELDS)))
    backoff = options.get("backoff", settings.retry_backoff)
    if backoff not in ("exponential", "fixed"):
        raise ValidationError("options.backoff", f"unknown backoff {backoff!r}: expected exponential or fixed")
    if "jobId" in options and "uniqueKey" in options:
        raise ValidationError("options.uniqueKey", "give jobId or uniqueKey, not both")
    return {
        "priority": _priority(options),
        "max_attempts": _whole_number(options, "maxRetries", settings.retry_attempts, 0, 1000) + 1,
        "retry_delay_ms": _whole_number(options, "retryDelay", settings.retry_delay_ms, 0, 86_400_000),
        "backoff": backoff,
        "delay_ms": _whole_number(options, "delay", 0, 0, MAX_DELAY_MS),
        "timeout_ms": _whole_number(options, "timeout", settings.job_timeout_ms, 1, 604_800_000),
        "unique_key": _optional_text(options, "jobId", 255) or _optional_text(options, "uniqueKey", 255),
        "description": _optional_text(options, "description", 1000),
    }


def parse_job_request(body, settings, account="primary"):
    """Validate a job request and return a :class:`JobSpec`; raise ValidationError naming the field."""
    if not isinstance(body, dict):
        raise ValidationError("body", "expected a JSON object with type, queue, payload and options")
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "unknown field; expected type, queue, payload and options")

    type_name = body.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ValidationError("type", "missing: give a job type such as http-request")
    job_type = jobtypes.get(type_name)

    queue = body.get("queue", "default")
    if queue not in QUEUE_NAMES:
        raise ValidationError("queue", f"unknown queue {queue!r}: expected one of " + ", ".join(QUEUE_NAMES))

    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise ValidationError("payload", "expected a JSON object")
    _check_nesting(payload, "payload")
    payload = job_type.validate(payload, settings)

    return JobSpec(type=type_name, queue=queue, payload=payload, account=account,
                   **_parse_options(body.get("options"), settings))
