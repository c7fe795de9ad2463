"""The custom job type: run a Hasura Action, call an action handler, or run a Python handler.

Business logic in an nself stack lives in Hasura Actions, so a custom job runs one
in one of three modes, chosen by ``payload.mode``:

``hasura`` (the default when ``action`` is given)
    POSTs a GraphQL mutation of the action to Hasura, authenticated with the admin
    secret. The endpoint is ``JOBS_HASURA_ENDPOINT``, else ``HASURA_GRAPHQL_ENDPOINT``.
    The secret is ``JOBS_HASURA_ADMIN_SECRET``, else ``HASURA_ADMIN_SECRET``, else
    ``HASURA_GRAPHQL_ADMIN_SECRET``, and without one no secret header is sent.
    ``input`` becomes the action's arguments, always passed as GraphQL variables.
    The variable types come from schema introspection, cached per process.
    ``sessionVariables`` are sent as headers, so ``x-hasura-role`` makes Hasura
    run the action as that role. GraphQL ``errors`` fail the attempt with their
    messages. When Hasura rejected the query itself, the job fails without
    retries (PermanentJobFailure).
``handler``
    POSTs straight to the action's handler, skipping Hasura, with the body Hasura
    itself sends: ``{"action": {"name"}, "input", "session_variables",
    "request_query": ""}``. The URL is the action's entry in
    ``JOBS_ACTION_HANDLER_URLS`` (``name=url,name2=url2``), else
    ``JOBS_ACTION_HANDLER_URL``. When ``JOBS_ACTION_SECRET`` is set it is sent in the
    header named by ``JOBS_ACTION_SECRET_HEADER`` (default ``x-nself-action-secret``).
    A 2xx JSON response is the result. A 429, 502, 503 or 504 raises
    RetryableHttpError with the server's Retry-After, and any other response fails
    the attempt with its status and the start of its body.
``python`` (the default when ``handler`` is given)
    Calls a function registered in this process with :func:`handler`.

Payload fields:

* ``mode``: hasura, handler or python.
* ``action``: the action's GraphQL name (hasura and handler modes).
* ``handler``: the registered function's name (python mode).
* ``input``: an object, default ``{}``.
* ``selection`` (hasura mode): the output fields to return, in the form that
  :func:`validate_selection` accepts. The default is every scalar and enum field
  of the action's output type.
* ``sessionVariables`` (HTTP modes): an object of ``x-hasura-*`` names to strings.
* ``timeout`` (HTTP modes): maximum time in ms for each HTTP request.

Both HTTP modes use the http-request client, with its total deadline and its
address policy. The Hasura and handler URLs come from settings, so the policy
skips ``JOBS_HTTP_ALLOW_HOSTS`` and ``JOBS_HTTP_ALLOW_PRIVATE`` for them (see
:mod:`nself_jobs.net_guard`). Redirects are not followed.

Adding job logic without forking the plugin: write a module, put it on the
worker's and the API's ``PYTHONPATH`` and list it in ``JOBS_HANDLER_MODULES``
(comma list of importable module paths)::

    from nself_jobs.jobtypes.custom import handler

    @handler("resize-image")
    def resize_image(input, ctx):
        ctx.progress(50, "resizing")
        return {"width": input["width"]}

A job ``{"type": "custom", "payload": {"handler": "resize-image", "input": {...}}}``
then runs it. The function gets the ``input`` object and the JobContext and returns
a JSON-serialisable result. It must bound its own blocking calls with
``ctx.remaining_s()``. To check ``input`` at submission, pass
``validate=fn(input, settings)`` to :func:`handler`, returning the input to store or
raising ValidationError. A module can also add a whole job type with
``nself_jobs.jobtypes.register(JobType(...))``.

The worker and the CLI import ``JOBS_HANDLER_MODULES`` at startup with
``nself_jobs.jobtypes.load_user_modules``, and this module imports them again
before it validates or runs a python-mode job.
"""

import json
import logging
import re
from dataclasses import dataclass, field

from ..errors import ConfigError, JobFailed, PermanentJobFailure, ValidationError
from ..net_guard import AddressPolicy
from . import load_user_modules
from .http_request import (
    DEFAULT_RETRY_ON,
    HttpSettings,
    OutgoingRequest,
    body_excerpt,
    parse_url,
    raise_for_status,
    send_request,
    validate_headers,
    validate_timeout,
)
from .base import JobType

logger = logging.getLogger(__name__)

MODES = ("hasura", "handler", "python")
DEFAULT_SECRET_HEADER = "x-nself-action-secret"

_FIELDS = ("mode", "action", "handler", "input", "selection", "sessionVariables", "timeout")
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_HANDLER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SESSION_VARIABLE = re.compile(r"x-hasura-[a-z0-9_-]+")
_SESSION_VARIABLES_REJECTED = ("x-hasura-admin-secret", "x-hasura-access-key")
_SELECTION_TOKEN = re.compile(r"\s*(?:([_A-Za-z][_0-9A-Za-z]*)|([{}])|(,)|(\S))")
_MAX_SELECTION_CHARACTERS = 4096
_MAX_SELECTION_DEPTH = 10
# Introspection lists every mutation of the schema, which for a Hasura with many
# tables is far larger than a job response, so it gets its own limit.
_INTROSPECTION_MAX_BYTES = 16 * 1_048_576
# Hasura error codes for a request that fails again unchanged (Hasura v2).
_FINAL_GRAPHQL_CODES = ("validation-failed", "parse-failed")
_MAX_ERROR_MESSAGES = 5


class ActionFailed(JobFailed):
    """Raised when a Hasura Action or its handler reports an error.

    The attempt fails, and the queue retries the job while it has retries left.
    """


# -- Settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomSettings:
    """Endpoints and secrets of the custom job type, read from ``Settings.env``."""

    hasura_endpoint: str | None
    handler_url: str | None
    handler_urls: tuple
    action_secret_header: str
    handler_modules: tuple
    hasura_admin_secret: str | None = field(default=None, repr=False)
    action_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings):
        """Read the settings. Raises ConfigError naming an invalid variable."""
        env = settings.env
        endpoint_variable = "JOBS_HASURA_ENDPOINT" if env.str("JOBS_HASURA_ENDPOINT") else "HASURA_GRAPHQL_ENDPOINT"
        endpoint = _config_url(env, endpoint_variable)
        admin_secret = (
            env.str("JOBS_HASURA_ADMIN_SECRET")
            or env.str("HASURA_ADMIN_SECRET")
            or env.str("HASURA_GRAPHQL_ADMIN_SECRET")
        )
        secret_header = env.str("JOBS_ACTION_SECRET_HEADER", DEFAULT_SECRET_HEADER)
        if not _HEADER_NAME.fullmatch(secret_header):
            raise ConfigError(
                "JOBS_ACTION_SECRET_HEADER", secret_header, "an HTTP header name such as x-nself-action-secret"
            )
        return cls(
            hasura_endpoint=endpoint,
            handler_url=_config_url(env, "JOBS_ACTION_HANDLER_URL"),
            handler_urls=_parse_handler_urls(env.list("JOBS_ACTION_HANDLER_URLS")),
            action_secret_header=secret_header,
            handler_modules=tuple(env.list("JOBS_HANDLER_MODULES")),
            hasura_admin_secret=admin_secret,
            action_secret=env.str("JOBS_ACTION_SECRET"),
        )

    def handler_url_for(self, action):
        """Return the handler URL of ``action``, or None when none is configured."""
        for name, url in self.handler_urls:
            if name == action:
                return url
        return self.handler_url


def _config_url(env, variable):
    url = env.str(variable)
    if url is None:
        return None
    try:
        parse_url(url)
    except ValueError as error:
        raise ConfigError(
            variable, url, f"an http:// or https:// URL such as http://hasura:8080/v1/graphql ({error})"
        ) from None
    return url


def _parse_handler_urls(entries):
    pairs = []
    for entry in entries:
        name, separator, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        try:
            if not separator or not _GRAPHQL_NAME.fullmatch(name):
                raise ValueError("the entry needs the form actionName=url")
            parse_url(url)
        except ValueError as error:
            raise ConfigError(
                "JOBS_ACTION_HANDLER_URLS", entry, f"comma-separated actionName=http(s)://url entries ({error})"
            ) from None
        pairs.append((name, url))
    return tuple(pairs)


# -- Python handlers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PythonHandler:
    """A function registered with :func:`handler` and its optional input validator."""

    name: str
    function: object
    validate: object = None


_handlers = {}


def handler(name, validate=None):
    """Return a decorator that registers a function as the python-mode handler ``name``.

    The function is called as ``function(input, ctx)``. ``validate``, when given,
    is called as ``validate(input, settings)`` at submission and returns the input
    to store. Registering a name again replaces the earlier handler.
    """
    if not isinstance(name, str) or not _HANDLER_NAME.fullmatch(name):
        raise ValueError(
            f"invalid handler name {name!r}: use letters, digits, _, . and -, starting with a letter or _"
        )

    def register_handler(function):
        previous = _handlers.get(name)
        if previous is not None and previous.function is not function:
            logger.warning("custom job handler %r registered again; the new function replaces the old one", name)
        _handlers[name] = PythonHandler(name, function, validate)
        return function

    return register_handler


def registered_handlers():
    """Return the names of the registered python-mode handlers, sorted."""
    return sorted(_handlers)


def _find_handler(name, custom_settings):
    load_user_modules(custom_settings.handler_modules)
    python_handler = _handlers.get(name)
    if python_handler is None:
        known = ", ".join(registered_handlers()) or "none"
        raise ValidationError(
            "payload.handler",
            f"no handler named {name!r} is registered (registered: {known}); register it with "
            f"@nself_jobs.jobtypes.custom.handler({name!r}) in a module listed in JOBS_HANDLER_MODULES",
        )
    return python_handler


# -- Payload validation ----------------------------------------------------------------------------------


def validate_selection(selection):
    """Validate a GraphQL selection set without its outer braces and return it normalised.

    Only field names, commas and nested braces are allowed, for example
    ``"id status user { email }"``, so no arguments, aliases, directives or
    fragments can reach the query. An empty string selects nothing, for an action
    whose output is a scalar. Raises ValueError with the reason.
    """
    if not isinstance(selection, str):
        raise ValueError("must be a string of field names such as \"id status\"")
    if len(selection) > _MAX_SELECTION_CHARACTERS:
        raise ValueError(f"is longer than {_MAX_SELECTION_CHARACTERS} characters")

    tokens = []
    depth = 0
    for match in _SELECTION_TOKEN.finditer(selection):
        name, brace, _comma, other = match.groups()
        if other is not None:
            raise ValueError(f"contains {other!r}; use only field names and {{ }} for sub-selections")
        if name is not None:
            tokens.append(name)
        elif brace == "{":
            if not tokens or tokens[-1] in ("{", "}"):
                raise ValueError("each { must follow a field name")
            depth += 1
            if depth > _MAX_SELECTION_DEPTH:
                raise ValueError(f"nests deeper than {_MAX_SELECTION_DEPTH} levels")
            tokens.append(brace)
        elif brace == "}":
            if depth == 0 or tokens[-1] == "{":
                raise ValueError("has a } without a matching { or an empty { }")
            depth -= 1
            tokens.append(brace)
    if depth:
        raise ValueError("has a { without a matching }")
    return " ".join(tokens)


def _validate_session_variables(value):
    variables = validate_headers(value, "payload.sessionVariables")
    normalised = {}
    for name, variable_value in variables.items():
        key = name.lower()
        if not _SESSION_VARIABLE.fullmatch(key):
            raise ValidationError(
                f"payload.sessionVariables.{name}",
                "session variable names must start with x-hasura-, such as x-hasura-role",
            )
        if key in _SESSION_VARIABLES_REJECTED:
            raise ValidationError(
                f"payload.sessionVariables.{name}", "is not a session variable; the admin secret comes from settings"
            )
        normalised[key] = variable_value
    return normalised


def _choose_mode(payload):
    mode = payload.get("mode")
    if mode is not None:
        if mode not in MODES:
            raise ValidationError("payload.mode", f"invalid mode {mode!r}; use one of {', '.join(MODES)}")
        return mode
    has_action = payload.get("action") is not None
    has_handler = payload.get("handler") is not None
    if has_action and has_handler:
        raise ValidationError(
            "payload.mode", "is required when both action and handler are given; set it to hasura, handler or python"
        )
    if has_handler:
        return "python"
    if has_action:
        return "hasura"
    raise ValidationError(
        "payload.action", "is missing; give action (a Hasura Action name) or handler (a registered Python handler)"
    )


def _reject_fields(payload, names, mode):
    for name in names:
        if payload.get(name) is not None:
            raise ValidationError(f"payload.{name}", f"is not used in {mode} mode; remove it")


def _validate_input(value):
    if not isinstance(value, dict):
        raise ValidationError("payload.input", f"must be a JSON object, not {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValidationError("payload.input", f"is not valid JSON ({error})") from None
    return value


def _validate_action(value):
    if not isinstance(value, str) or not _GRAPHQL_NAME.fullmatch(value):
        raise ValidationError(
            "payload.action", f"invalid action name {value!r}; use a GraphQL name such as sendWelcomeEmail"
        )
    return value


def _normalise(payload, custom_settings):
    if not isinstance(payload, dict):
        raise ValidationError("payload", f"must be a JSON object, not {type(payload).__name__}")
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise ValidationError(f"payload.{unknown[0]}", f"unknown field; known fields: {', '.join(_FIELDS)}")

    mode = _choose_mode(payload)
    normalised = {"mode": mode, "input": _validate_input(payload.get("input", {}))}
    if mode == "python":
        _reject_fields(payload, ("action", "selection", "sessionVariables", "timeout"), mode)
        name = payload.get("handler")
        if not isinstance(name, str):
            raise ValidationError("payload.handler", "is missing; give the name of a registered Python handler")
        normalised["handler"] = _find_handler(name, custom_settings).name
        return normalised

    _reject_fields(payload, ("handler",), mode)
    normalised["action"] = _validate_action(payload.get("action"))
    normalised["sessionVariables"] = _validate_session_variables(payload.get("sessionVariables", {}))
    if payload.get("timeout") is not None:
        normalised["timeout"] = validate_timeout(payload["timeout"], "payload.timeout")

    if mode == "hasura":
        _validate_hasura_fields(payload, normalised, custom_settings)
    else:
        _reject_fields(payload, ("selection",), mode)
        if custom_settings.handler_url_for(normalised["action"]) is None:
            raise ValidationError(
                "payload.action",
                f"no handler URL is configured for action {normalised['action']!r}; set "
                f"JOBS_ACTION_HANDLER_URLS={normalised['action']}=http://... or JOBS_ACTION_HANDLER_URL",
            )
    return normalised


def _validate_hasura_fields(payload, normalised, custom_settings):
    for name in normalised["input"]:
        if not _GRAPHQL_NAME.fullmatch(name):
            raise ValidationError(
                f"payload.input.{name}", "is not a GraphQL argument name; action arguments are GraphQL names"
            )
    if payload.get("selection") is not None:
        try:
            normalised["selection"] = validate_selection(payload["selection"])
        except ValueError as error:
            raise ValidationError("payload.selection", str(error)) from None
    if custom_settings.hasura_endpoint is None:
        raise ValidationError(
            "payload.mode",
            "hasura mode needs HASURA_GRAPHQL_ENDPOINT or JOBS_HASURA_ENDPOINT; set one, or use handler mode",
        )


def validate(payload, settings):
    """Validate and normalise a custom job payload, running a python handler's own validator too."""
    custom_settings = CustomSettings.from_settings(settings)
    normalised = _normalise(payload, custom_settings)
    if normalised["mode"] == "python":
        python_handler = _handlers[normalised["handler"]]
        if python_handler.validate is not None:
            normalised["input"] = _validate_input(python_handler.validate(normalised["input"], settings))
    return normalised


# -- Hasura mode -----------------------------------------------------------------------------------------

# The type and five nested ofType levels cover wrappers up to [[Int!]!]!.
_TYPE_REF = (
    "kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name "
    "ofType { kind name } } } } }"
)
_MUTATIONS_QUERY = (
    "query NselfJobsMutations { __schema { mutationType { fields { name "
    f"args {{ name type {{ {_TYPE_REF} }} }} type {{ {_TYPE_REF} }} }} }} }} }}"
)
_OUTPUT_FIELDS_QUERY = (
    "query NselfJobsOutputFields($name: String!) { __type(name: $name) { kind fields { name "
    f"args {{ name }} type {{ {_TYPE_REF} }} }} }} }}"
)


@dataclass(frozen=True)
class ActionSchema:
    """An action's argument types as (name, GraphQL type) pairs and its output type, found by introspection."""

    argument_types: tuple
    output_kind: str
    output_name: str


# Introspection results per (endpoint, action), kept for the life of the process and
# dropped when Hasura rejects a query built from them. _selection_cache stores the
# default selection per (endpoint, action) in the same way.
_schema_cache = {}
_selection_cache = {}


def _render_type(type_ref):
    if type_ref is None:
        raise PermanentJobFailure("an action argument type nests deeper than [[Type!]!]!, which is not supported")
    if type_ref["kind"] == "NON_NULL":
        return _render_type(type_ref["ofType"]) + "!"
    if type_ref["kind"] == "LIST":
        return "[" + _render_type(type_ref["ofType"]) + "]"
    return type_ref["name"]


def _named_type(type_ref):
    while type_ref.get("ofType") is not None and type_ref["kind"] in ("NON_NULL", "LIST"):
        type_ref = type_ref["ofType"]
    return type_ref


def _post_graphql(custom_settings, ctx, query, variables, session_variables, timeout_ms, max_bytes):
    """POST one GraphQL request to Hasura and return the decoded JSON response."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if custom_settings.hasura_admin_secret:
        headers["x-hasura-admin-secret"] = custom_settings.hasura_admin_secret
    headers.update(session_variables)
    body = json.dumps({"query": query, "variables": variables}, separators=(",", ":")).encode("utf-8")
    request = OutgoingRequest(
        method="POST",
        url=custom_settings.hasura_endpoint,
        headers=tuple(headers.items()),
        body=body,
        timeout_s=None if timeout_ms is None else timeout_ms / 1000.0,
        follow_redirects=False,
        operator_configured=True,
    )
    response = send_request(request, ctx, AddressPolicy.from_settings(ctx.settings), max_bytes)
    return _decode_json_response(response, "Hasura", max_bytes)


def _decode_json_response(response, service, max_bytes):
    raise_for_status(response, ["2xx"], list(DEFAULT_RETRY_ON), failure=ActionFailed)
    if response.truncated:
        if max_bytes == _INTROSPECTION_MAX_BYTES:
            raise ActionFailed(f"{service} returned a schema larger than {max_bytes} bytes, which is not supported")
        raise ActionFailed(
            f"{service} returned more than {max_bytes} bytes; raise JOBS_HTTP_MAX_RESPONSE_BYTES or return less"
        )
    try:
        return json.loads(response.body)
    except ValueError:
        raise ActionFailed(
            f"{service} returned {response.status} but the body is not JSON: {body_excerpt(response)}"
        ) from None


def _graphql_errors(document):
    errors = document.get("errors") if isinstance(document, dict) else None
    if not errors:
        return None
    messages = []
    codes = set()
    for error in errors[:_MAX_ERROR_MESSAGES]:
        if isinstance(error, dict):
            messages.append(str(error.get("message", error)))
            extensions = error.get("extensions")
            if isinstance(extensions, dict) and extensions.get("code"):
                codes.add(str(extensions["code"]))
        else:
            messages.append(str(error))
    if len(errors) > _MAX_ERROR_MESSAGES:
        messages.append(f"and {len(errors) - _MAX_ERROR_MESSAGES} more")
    return "; ".join(messages), codes


def _action_schema(custom_settings, ctx, action, timeout_ms):
    """Return the argument and output types of ``action``, introspecting Hasura on first use."""
    key = (custom_settings.hasura_endpoint, action)
    cached = _schema_cache.get(key)
    if cached is not None:
        return cached

    document = _post_graphql(custom_settings, ctx, _MUTATIONS_QUERY, {}, {}, timeout_ms, _INTROSPECTION_MAX_BYTES)
    found = _graphql_errors(document)
    if found:
        raise ActionFailed(f"introspecting Hasura's mutations failed: {found[0]}")
    mutation_type = ((document.get("data") or {}).get("__schema") or {}).get("mutationType") or {}
    fields = {entry["name"]: entry for entry in mutation_type.get("fields") or []}
    if action not in fields:
        raise PermanentJobFailure(
            f"Hasura has no mutation named {action!r}; check the action name and that it is a mutation action"
        )

    definition = fields[action]
    argument_types = tuple((argument["name"], _render_type(argument["type"])) for argument in definition["args"])
    output = _named_type(definition["type"])
    schema = ActionSchema(argument_types, output["kind"], output["name"])
    _schema_cache[key] = schema
    return schema


def _default_selection(custom_settings, ctx, action, schema, timeout_ms):
    """Return every scalar and enum field of an object output type, or "" for a scalar output.

    A type without such fields gets ``__typename``, so the mutation stays valid.
    """
    if schema.output_kind in ("SCALAR", "ENUM"):
        return ""
    key = (custom_settings.hasura_endpoint, action)
    cached = _selection_cache.get(key)
    if cached is not None:
        return cached

    variables = {"name": schema.output_name}
    document = _post_graphql(
        custom_settings, ctx, _OUTPUT_FIELDS_QUERY, variables, {}, timeout_ms, _INTROSPECTION_MAX_BYTES
    )
    found = _graphql_errors(document)
    if found:
        raise ActionFailed(f"introspecting the output type {schema.output_name} failed: {found[0]}")
    output_type = (document.get("data") or {}).get("__type") or {}
    names = [
        entry["name"]
        for entry in output_type.get("fields") or []
        if not entry.get("args") and _named_type(entry["type"])["kind"] in ("SCALAR", "ENUM")
    ]
    selection = " ".join(names) or "__typename"
    _selection_cache[key] = selection
    return selection


def build_mutation(action, argument_types, input_names, selection):
    """Return the text of a mutation that calls ``action`` with one variable per input argument."""
    types = dict(argument_types)
    unknown = [name for name in input_names if name not in types]
    if unknown:
        known = ", ".join(types) or "none"
        raise PermanentJobFailure(f"action {action!r} has no argument {unknown[0]!r}; its arguments are: {known}")
    definitions = ", ".join(f"${name}: {types[name]}" for name in input_names)
    arguments = ", ".join(f"{name}: ${name}" for name in input_names)
    operation = f"mutation NselfJob({definitions})" if definitions else "mutation NselfJob"
    call = f"{action}({arguments})" if arguments else action
    selection_set = f" {{ {selection} }}" if selection else ""
    return f"{operation} {{ {call}{selection_set} }}"


def _run_hasura(payload, ctx, custom_settings):
    action = payload["action"]
    timeout_ms = payload.get("timeout")
    schema = _action_schema(custom_settings, ctx, action, timeout_ms)
    selection = payload.get("selection")
    if selection is None:
        selection = _default_selection(custom_settings, ctx, action, schema, timeout_ms)
    mutation = build_mutation(action, schema.argument_types, list(payload["input"]), selection)
    max_bytes = HttpSettings.from_settings(ctx.settings).max_response_bytes

    ctx.progress(10, f"running Hasura Action {action}")
    document = _post_graphql(
        custom_settings, ctx, mutation, payload["input"], payload["sessionVariables"], timeout_ms, max_bytes
    )
    found = _graphql_errors(document)
    if found:
        messages, codes = found
        if codes & set(_FINAL_GRAPHQL_CODES):
            _schema_cache.pop((custom_settings.hasura_endpoint, action), None)
            _selection_cache.pop((custom_settings.hasura_endpoint, action), None)
            raise PermanentJobFailure(f"Hasura rejected the mutation {action}: {messages}")
        raise ActionFailed(f"Hasura Action {action} failed: {messages}")
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or action not in data:
        raise ActionFailed(f"Hasura returned no data for action {action}")
    return {"mode": "hasura", "action": action, "result": data[action]}


# -- Handler mode ----------------------------------------------------------------------------------------


def _run_handler(payload, ctx, custom_settings):
    action = payload["action"]
    url = custom_settings.handler_url_for(action)
    if url is None:
        raise PermanentJobFailure(
            f"no handler URL is configured for action {action!r}; "
            "set JOBS_ACTION_HANDLER_URLS or JOBS_ACTION_HANDLER_URL"
        )

    # Hasura sends the caller's session variables, which for an admin-secret request without
    # a role are {"x-hasura-role": "admin"}.
    session_variables = payload["sessionVariables"] or {"x-hasura-role": "admin"}
    body = {
        "action": {"name": action},
        "input": payload["input"],
        "session_variables": session_variables,
        "request_query": "",
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if custom_settings.action_secret:
        headers[custom_settings.action_secret_header] = custom_settings.action_secret
    timeout_ms = payload.get("timeout")
    request = OutgoingRequest(
        method="POST",
        url=url,
        headers=tuple(headers.items()),
        body=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        timeout_s=None if timeout_ms is None else timeout_ms / 1000.0,
        follow_redirects=False,
        operator_configured=True,
    )
    max_bytes = HttpSettings.from_settings(ctx.settings).max_response_bytes

    ctx.progress(10, f"calling the handler of action {action}")
    response = send_request(request, ctx, AddressPolicy.from_settings(ctx.settings), max_bytes)
    result = _decode_json_response(response, f"the handler of action {action}", max_bytes)
    return {"mode": "handler", "action": action, "status": response.status, "result": result}


# -- Python mode -----------------------------------------------------------------------------------------


def _run_python(payload, ctx, custom_settings):
    python_handler = _find_handler(payload["handler"], custom_settings)
    result = python_handler.function(payload["input"], ctx)
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PermanentJobFailure(
            f"handler {python_handler.name!r} returned a result that is not JSON-serialisable: {error}"
        ) from None
    return {"mode": "python", "handler": python_handler.name, "result": result}


_RUNNERS = {"hasura": _run_hasura, "handler": _run_handler, "python": _run_python}


def run(payload, ctx):
    """Run a custom job in its mode and return ``{"mode", "action" or "handler", "result"}``."""
    custom_settings = CustomSettings.from_settings(ctx.settings)
    try:
        payload = _normalise(payload, custom_settings)
    except ValidationError as error:
        raise PermanentJobFailure(f"invalid payload: {error}") from None
    result = _RUNNERS[payload["mode"]](payload, ctx, custom_settings)
    ctx.progress(100, "done")
    return result


JOB_TYPE = JobType(
    name="custom",
    description="Run a Hasura Action, call an action handler, or run a registered Python handler.",
    validate=validate,
    run=run,
)
