"""The plugin's exceptions: one base class, a few kinds, each carrying its data.

Driver errors (redis, psycopg) are translated into these at the boundary that
catches them, with the original chained as ``__cause__``.
"""


class JobsError(Exception):
    """Base class of every error the plugin raises on purpose."""


class ConfigError(JobsError):
    """Raised when a setting has an invalid value."""

    def __init__(self, variable, value, allowed):
        self.variable = variable
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {variable}={value!r}: expected {allowed}")


class ValidationError(JobsError):
    """Raised when a job request, payload or option is invalid.

    ``field`` is a dotted path into the request, for example ``payload.url`` or
    ``options.priority``; the REST API answers 422 with it.
    """

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class MalformedRequest(ValidationError):
    """Raised when a request body cannot be read at all: invalid UTF-8 or JSON syntax."""


class PayloadTooLarge(JobsError):
    """Raised when a request body is larger than the configured maximum."""

    def __init__(self, size_bytes, limit_bytes):
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"request body of {size_bytes} bytes is larger than the limit of "
            f"{limit_bytes} bytes (JOBS_MAX_PAYLOAD_BYTES)"
        )


class NotFound(JobsError):
    """Raised when a job, schedule or queue does not exist."""


class Conflict(JobsError):
    """Raised when an action does not fit the current state, such as retrying a completed job."""


class ServiceUnavailable(JobsError):
    """Raised when Redis or PostgreSQL cannot be reached or refuses a write."""

    def __init__(self, service, target, reason):
        self.service = service
        self.target = target
        self.reason = reason
        super().__init__(f"{service} connection to {target} failed: {reason}")


class JobFailed(JobsError):
    """Raised by a job handler for an expected failure.

    The message is stored without a stack trace, and the job is retried like any
    other failure until its retries run out.
    """


class PermanentJobFailure(JobFailed):
    """Raised by a job handler when retrying cannot help; the job fails at once."""


class JobTimeout(JobsError):
    """Raised inside a job when its deadline passes."""

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        super().__init__(f"timed out after {timeout_ms} ms")
