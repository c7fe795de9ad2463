"""The OpenAPI 3.0 document of the REST API, served at ``/api/openapi.json``.

Written by hand beside the handlers in ``api.py`` and ``metrics.py``; the
schemathesis test in ``tests/e2e`` checks the live server against it.
"""

from .. import __version__, jobtypes
from ..keys import PRIORITIES
from ..settings import QUEUE_NAMES

JOB_STATUSES = ["pending", "active", "completed", "failed", "delayed", "cancelled"]
QUEUE_STATES = ["waiting", "active", "delayed", "completed", "failed", "cancelled"]


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema):
    return dict(schema, nullable=True)


def _json(schema, description):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description):
    return _json(_ref("Error"), description)


_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}

_JOB_ID = {"name": "id", "in": "path", "required": True, "description": "Job id (a UUID).",
           "schema": {"type": "string"}}
_QUEUE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": list(QUEUE_NAMES)}}
_APP_HEADER = {"name": "X-App-Name", "in": "header", "required": False,
               "description": "The nself app the request acts for; normalised to lowercase [a-z0-9_-], "
                              "'primary' when absent. ?app= sets it too.",
               "schema": {"type": "string"}}

_ERRORS = {
    "401": _error("JOBS_API_TOKEN is set and the request has no valid Authorization: Bearer header"),
    "503": _error("Redis or PostgreSQL is unreachable"),
}


def _operation(summary, responses, parameters=(), request_body=None, operation_id=None, tags=("jobs",)):
    operation = {"summary": summary, "operationId": operation_id, "tags": list(tags),
                 "parameters": [_APP_HEADER, *parameters], "responses": dict(responses, **_ERRORS)}
    if request_body is not None:
        operation["requestBody"] = request_body
    return operation


SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": _TEXT, "field": {"type": "string", "description": "Dotted path of the invalid value"}},
    },
    "JobOptions": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "priority": {"oneOf": [{"type": "string", "enum": list(PRIORITIES)},
                                   {"type": "integer", "enum": sorted(PRIORITIES.values())}]},
            "maxRetries": {"type": "integer", "minimum": 0, "maximum": 1000},
            "retryDelay": {"type": "integer", "minimum": 0, "maximum": 86_400_000, "description": "ms"},
            "backoff": {"type": "string", "enum": ["exponential", "fixed"]},
            "delay": {"type": "integer", "minimum": 0, "maximum": 366 * 86_400_000, "description": "ms"},
            "timeout": {"type": "integer", "minimum": 1, "maximum": 604_800_000, "description": "ms"},
            "uniqueKey": {"type": "string", "minLength": 1, "maxLength": 255},
            "jobId": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": {"type": "string", "minLength": 1, "maxLength": 1000},
        },
    },
    "JobRequest": {
        "type": "object", "required": ["type"], "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "minLength": 1, "description": "A registered job type, e.g. http-request"},
            "queue": {"type": "string", "enum": list(QUEUE_NAMES), "default": "default"},
            "payload": {"type": "object", "description": "Validated by the job type"},
            "options": _ref("JobOptions"),
        },
    },
    "JobCreated": {
        "type": "object", "required": ["id", "type", "queue", "status", "priority", "created"],
        "properties": {
            "id": _TEXT, "type": _TEXT, "queue": _TEXT,
            "status": {"type": "string", "enum": ["pending", "delayed", "existing"]},
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "created": {"type": "boolean", "description": "false when uniqueKey matched an existing job"},
        },
    },
    "Failure": {
        "type": "object", "required": ["attempt", "error"],
        "properties": {"attempt": {"type": "integer"}, "error": _nullable(_TEXT), "stack": _nullable(_TEXT),
                       "failedAt": _nullable(_TIME)},
    },
    "Result": {
        "type": "object", "required": ["attempt"],
        "properties": {"attempt": _nullable({"type": "integer"}), "durationMs": _nullable({"type": "integer"}),
                       "completedAt": _nullable(_TIME)},
    },
    "Job": {
        "type": "object",
        "required": ["id", "type", "queue", "status", "attempts", "maxAttempts", "failures", "results"],
        "properties": {
            "id": _TEXT, "type": _TEXT, "queue": _TEXT, "status": _TEXT,
            "priority": {"type": "integer"}, "payload": {"type": "object"}, "options": {"type": "object"},
            "progress": {"type": "integer"}, "progressMessage": _nullable(_TEXT),
            "attempts": {"type": "integer"}, "maxAttempts": {"type": "integer"}, "attemptLabel": _TEXT,
            "result": {"nullable": True, "description": "The handler's return value, any JSON"},
            "error": _nullable(_TEXT), "createdAt": _nullable(_TIME), "startedAt": _nullable(_TIME),
            "completedAt": _nullable(_TIME), "runAt": _nullable(_TIME), "worker": _nullable(_TEXT),
            "account": _TEXT, "historyAvailable": {"type": "boolean"},
            "failures": {"type": "array", "items": _ref("Failure")},
            "results": {"type": "array", "items": _ref("Result")},
        },
    },
    "JobSummary": {
        "type": "object", "required": ["id", "type", "queue", "status"],
        "properties": {
            "id": _TEXT, "type": _TEXT, "queue": _nullable(_TEXT), "status": _TEXT,
            "priority": _nullable({"type": "integer"}), "progress": _nullable({"type": "integer"}),
            "attempts": _nullable({"type": "integer"}), "maxAttempts": _nullable({"type": "integer"}),
            "createdAt": _nullable(_TIME), "startedAt": _nullable(_TIME), "completedAt": _nullable(_TIME),
            "error": _nullable(_TEXT), "account": _TEXT,
        },
    },
    "JobPage": {
        "type": "object", "required": ["jobs", "total", "totalPages", "pageSize", "nextCursor"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("JobSummary")},
            "total": _COUNT, "totalPages": _COUNT, "pageSize": {"type": "integer"},
            "nextCursor": _nullable({"type": "string", "description": "Pass back as cursor for the next page"}),
        },
    },
    "JobAction": {
        "type": "object", "required": ["id", "status"],
        "properties": {"id": _TEXT,
                       "status": {"type": "string", "enum": ["pending", "cancelled", "requested", "removed"]}},
    },
    "QueueCounts": {
        "type": "object", "required": QUEUE_STATES,
        "properties": {state: _COUNT for state in QUEUE_STATES},
    },
    "QueueCountsWithPause": {
        "allOf": [_ref("QueueCounts"),
                  {"type": "object", "required": ["paused"], "properties": {"paused": {"type": "boolean"}}}],
    },
    "Stats": {
        "type": "object", "required": ["queues", "total", "timestamp"],
        "properties": {
            "queues": {"type": "object", "additionalProperties": _ref("QueueCountsWithPause")},
            "total": _ref("QueueCounts"), "timestamp": {"type": "number"},
        },
    },
    "Queue": {
        "type": "object", "required": ["name", "paused", "counts", "workers"],
        "properties": {"name": _TEXT, "paused": {"type": "boolean"}, "counts": _ref("QueueCounts"),
                       "workers": {"type": "integer", "description": "Live workers that serve this queue"}},
    },
    "QueueList": {
        "type": "object", "required": ["queues", "timestamp"],
        "properties": {"queues": {"type": "array", "items": _ref("Queue")}, "timestamp": {"type": "number"}},
    },
    "QueuePause": {
        "type": "object", "required": ["name", "paused"],
        "properties": {"name": _TEXT, "paused": {"type": "boolean"}},
    },
    "Health": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}, "service": _TEXT, "version": _TEXT,
                       "warnings": {"type": "array", "items": _TEXT}},
    },
    "Ready": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ready", "unavailable"]},
                       "down": {"type": "object", "additionalProperties": _TEXT}},
    },
}

PATHS = {
    "/health": {"get": {
        "summary": "Liveness: the process answers", "operationId": "health", "tags": ["service"], "security": [],
        "responses": {"200": _json(_ref("Health"), "The server is running; warnings name risky Redis settings")},
    }},
    "/ready": {"get": {
        "summary": "Readiness: Redis and PostgreSQL answer", "operationId": "ready", "tags": ["service"],
        "security": [],
        "responses": {"200": _json(_ref("Ready"), "Both services answer"),
                      "503": _json(_ref("Ready"), "down names each service that failed, with the error")},
    }},
    "/api/jobs": {
        "post": _operation(
            "Enqueue a job", operation_id="createJob",
            request_body={"required": True, "content": {"application/json": {"schema": _ref("JobRequest")}}},
            responses={
                "201": _json(_ref("JobCreated"), "Job enqueued"),
                "200": _json(_ref("JobCreated"), "uniqueKey matched a job still in Redis; that job is returned"),
                "400": _error("Body is not valid UTF-8 or not JSON"),
                "413": _error("Body larger than JOBS_MAX_PAYLOAD_BYTES"),
                "422": _error("Invalid value; field names it (NaN, Infinity, nesting over 64 levels included)"),
            }),
        "get": _operation(
            "List jobs from the history, newest first", operation_id="listJobs",
            parameters=[
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": JOB_STATUSES}},
                {"name": "queue", "in": "query", "schema": {"type": "string", "enum": list(QUEUE_NAMES)}},
                {"name": "type", "in": "query", "schema": {"type": "string"}},
                {"name": "pageSize", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                                               "default": 20}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"},
                 "description": "nextCursor of the previous page"},
            ],
            responses={"200": _json(_ref("JobPage"), "One page; nextCursor is null on the last page"),
                       "422": _error("Invalid filter, page size or cursor")}),
    },
    "/api/jobs/{id}": {
        "get": _operation(
            "Get a job with its attempts", operation_id="getJob", parameters=[_JOB_ID],
            responses={"200": _json(_ref("Job"), "The job, from Redis while it is there, else from the history"),
                       "404": _error("No such job for this app")}),
        "delete": _operation(
            "Cancel a job, or with remove=true remove an ended job from Redis", operation_id="cancelJob",
            parameters=[_JOB_ID, {"name": "remove", "in": "query", "schema": {"type": "string",
                                                                               "enum": ["true", "false"]},
                                  "description": "true: an ended job's Redis data is removed (history kept)"}],
            responses={"200": _json(_ref("JobAction"), "cancelled, or removed with remove=true"),
                       "202": _json(_ref("JobAction"), "requested: the running job stops within about a second"),
                       "404": _error("No such job in Redis for this app"),
                       "409": _error("The job already ended (without remove=true)"),
                       "422": _error("remove is neither true nor false")}),
    },
    "/api/jobs/{id}/retry": {"post": _operation(
        "Move a failed job back to its queue with a fresh set of retries", operation_id="retryJob",
        parameters=[_JOB_ID],
        responses={"200": _json(_ref("JobAction"), "Queued again"), "404": _error("No such job in Redis for this app"),
                   "409": _error("The job is not failed")})},
    "/api/jobs/{id}/promote": {"post": _operation(
        "Run a delayed job now", operation_id="promoteJob", parameters=[_JOB_ID],
        responses={"200": _json(_ref("JobAction"), "Queued"), "404": _error("No such job in Redis for this app"),
                   "409": _error("The job is not delayed")})},
    "/api/stats": {"get": _operation(
        "Live counts per queue and in total, from Redis (all apps)", operation_id="stats", tags=("queues",),
        responses={"200": _json(_ref("Stats"), "Counts; completed, failed and cancelled count jobs still in Redis")})},
    "/api/queues": {"get": _operation(
        "Queues with live counts, paused flag and live workers", operation_id="listQueues", tags=("queues",),
        responses={"200": _json(_ref("QueueList"), "Every queue, highest priority first")})},
    "/api/queues/{name}/pause": {"post": _operation(
        "Pause a queue: workers stop taking its jobs; running jobs finish", operation_id="pauseQueue",
        tags=("queues",), parameters=[_QUEUE_NAME],
        responses={"200": _json(_ref("QueuePause"), "Paused (also when it already was)"),
                   "404": _error("Unknown queue")})},
    "/api/queues/{name}/resume": {"post": _operation(
        "Resume a paused queue", operation_id="resumeQueue", tags=("queues",), parameters=[_QUEUE_NAME],
        responses={"200": _json(_ref("QueuePause"), "Resumed (also when it was not paused)"),
                   "404": _error("Unknown queue")})},
    "/api/openapi.json": {"get": _operation(
        "This document", operation_id="openapi", tags=("service",),
        responses={"200": {"description": "OpenAPI 3.0 document", "content": {"application/json": {
            "schema": {"type": "object"}}}}})},
    "/metrics": {"get": _operation(
        "Prometheus metrics", operation_id="metrics", tags=("service",),
        responses={"200": {"description": "Prometheus text exposition format 0.0.4",
                           "content": {"text/plain": {"schema": {"type": "string"}}}}})},
}


_JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"id": "$response.body#/id"}}
    for name, operation in (("GetJob", "getJob"), ("CancelJob", "cancelJob"), ("RetryJob", "retryJob"),
                            ("PromoteJob", "promoteJob"))
}
PATHS["/api/jobs"]["post"]["responses"]["201"]["links"] = _JOB_LINKS


def openapi_document(settings):
    """Return the OpenAPI document; the bearer requirement applies only when JOBS_API_TOKEN is set.

    The job type field lists the types registered in this server, built-in and from
    JOBS_HANDLER_MODULES.
    """
    schemas = dict(SCHEMAS)
    request = dict(schemas["JobRequest"], properties=dict(SCHEMAS["JobRequest"]["properties"]))
    request["properties"]["type"] = dict(request["properties"]["type"], enum=jobtypes.names())
    schemas["JobRequest"] = request
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": "nself jobs plugin API", "version": __version__,
            "description": "Background jobs in Redis (RQ layout) with their history in PostgreSQL. "
                           "Errors are JSON {\"error\", \"field\"?}.",
        },
        "paths": PATHS,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "The value of JOBS_API_TOKEN"}},
        },
    }
    if settings.api_token:
        document["security"] = [{"bearer": []}]
    return document
