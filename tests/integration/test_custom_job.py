"""The custom job type: Hasura mode, handler mode and python mode.

A server on 127.0.0.1 plays Hasura and action handlers. As Hasura it checks the
admin secret, responds to introspection and records each mutation.
"""

import json
import sys
import textwrap
import uuid

import pytest

from _http_fixtures import LocalHttpServer, Reply
from nself_jobs import jobtypes
from nself_jobs.errors import ConfigError, JobFailed, PermanentJobFailure, ValidationError
from nself_jobs.jobtypes import custom
from nself_jobs.jobtypes.base import JobContext, JobType
from nself_jobs.jobtypes.custom import ActionFailed, CustomSettings, build_mutation, validate_selection
from nself_jobs.jobtypes.http_request import RetryableHttpError
from nself_jobs.net_guard import TargetRejected
from nself_jobs.settings import load_settings

ADMIN_SECRET = "test-admin-secret"
ACTION_SECRET = "test-action-secret"


def named(kind, name):
    return {"kind": kind, "name": name, "ofType": None}


def non_null(type_ref):
    return {"kind": "NON_NULL", "name": None, "ofType": type_ref}


def list_of(type_ref):
    return {"kind": "LIST", "name": None, "ofType": type_ref}


MUTATION_FIELDS = [
    {
        "name": "sendWelcomeEmail",
        "args": [
            {"name": "userId", "type": non_null(named("SCALAR", "uuid"))},
            {"name": "subject", "type": named("SCALAR", "String")},
            {"name": "tags", "type": list_of(non_null(named("SCALAR", "String")))},
        ],
        "type": non_null(named("OBJECT", "SendWelcomeEmailOutput")),
    },
    {"name": "ping", "args": [], "type": named("SCALAR", "Boolean")},
    {
        "name": "insert_users",
        "args": [{"name": "objects", "type": non_null(list_of(non_null(named("INPUT_OBJECT", "users_insert_input"))))}],
        "type": named("OBJECT", "users_mutation_response"),
    },
]

OUTPUT_FIELDS = {
    "SendWelcomeEmailOutput": [
        {"name": "id", "args": [], "type": non_null(named("SCALAR", "uuid"))},
        {"name": "status", "args": [], "type": named("ENUM", "EmailStatus")},
        {"name": "user", "args": [], "type": named("OBJECT", "users")},
        {"name": "sentAt", "args": [], "type": named("SCALAR", "timestamptz")},
    ]
}


class FakeHasura:
    """Responds to GraphQL requests like Hasura would for the schema above, and records the mutations."""

    def __init__(self, server, path="/v1/graphql", secret=ADMIN_SECRET):
        self.server = server
        self.path = path
        self.secret = secret
        self.mutations = []
        self.introspections = 0
        self.action_reply = None
        server.route(path, self.respond)

    @property
    def url(self):
        return self.server.url(self.path)

    def respond(self, request, _handler):
        if request.headers.get("x-hasura-admin-secret") != self.secret:
            error = {"message": "invalid x-hasura-admin-secret/x-hasura-access-key", "extensions": {"code": "access-denied"}}
            return Reply(json_body={"errors": [error]})
        document = request.json()
        query = document["query"]
        if query.startswith("query NselfJobsMutations"):
            self.introspections += 1
            return Reply(json_body={"data": {"__schema": {"mutationType": {"fields": MUTATION_FIELDS}}}})
        if query.startswith("query NselfJobsOutputFields"):
            self.introspections += 1
            fields = OUTPUT_FIELDS.get(document["variables"]["name"])
            return Reply(json_body={"data": {"__type": {"kind": "OBJECT", "fields": fields}}})

        self.mutations.append(request)
        if self.action_reply is not None:
            return self.action_reply
        if query.startswith("mutation NselfJob") and "sendWelcomeEmail" in query:
            output = {"id": "e-1", "status": "SENT", "user": {"email": "ada@example.com"}, "sentAt": "2026-01-01T00:00:00Z"}
            return Reply(json_body={"data": {"sendWelcomeEmail": output}})
        if "ping" in query:
            return Reply(json_body={"data": {"ping": True}})
        return Reply(json_body={"errors": [{"message": "unexpected query", "extensions": {"code": "validation-failed"}}]})


@pytest.fixture
def server():
    local_server = LocalHttpServer()
    yield local_server
    local_server.close()


@pytest.fixture(autouse=True)
def fresh_registries(monkeypatch):
    monkeypatch.setattr(custom, "_handlers", {})
    monkeypatch.setattr(custom, "_schema_cache", {})
    monkeypatch.setattr(custom, "_selection_cache", {})


@pytest.fixture
def hasura(server):
    return FakeHasura(server)


@pytest.fixture
def make_settings(tmp_path):
    def build(**environ):
        return load_settings(environ=environ, project_dir=tmp_path)

    return build


@pytest.fixture
def hasura_settings(make_settings, hasura):
    def build(**environ):
        environ.setdefault("HASURA_GRAPHQL_ENDPOINT", hasura.url)
        environ.setdefault("HASURA_ADMIN_SECRET", ADMIN_SECRET)
        return make_settings(**environ)

    return build


def run_job(payload, settings, timeout_ms=10_000, progress=None):
    normalised = custom.validate(payload, settings)
    report = None if progress is None else (lambda percent, message: progress.append((percent, message)))
    return custom.run(normalised, JobContext("job-1", 1, settings, timeout_ms, report_progress=report))


def rejected(payload, settings):
    with pytest.raises(ValidationError) as caught:
        custom.validate(payload, settings)
    return caught.value


# -- Hasura mode ------------------------------------------------------------------------------------------


def test_registry_finds_custom():
    assert jobtypes.get("custom") is custom.JOB_TYPE


def test_hasura_mode_sends_mutation_with_variables(hasura, hasura_settings):
    payload = {
        "action": "sendWelcomeEmail",
        "input": {"userId": "u-1", "subject": "Hi"},
        "selection": "id status",
        "sessionVariables": {"X-Hasura-Role": "user", "x-hasura-user-id": "u-1"},
    }
    progress = []

    result = run_job(payload, hasura_settings(), progress=progress)

    assert result == {"mode": "hasura", "action": "sendWelcomeEmail", "result": {
        "id": "e-1", "status": "SENT", "user": {"email": "ada@example.com"}, "sentAt": "2026-01-01T00:00:00Z"
    }}
    request = hasura.mutations[0]
    document = request.json()
    assert document["query"] == (
        "mutation NselfJob($userId: uuid!, $subject: String) "
        "{ sendWelcomeEmail(userId: $userId, subject: $subject) { id status } }"
    )
    assert document["variables"] == {"userId": "u-1", "subject": "Hi"}
    assert request.headers["x-hasura-admin-secret"] == ADMIN_SECRET
    assert request.headers["x-hasura-role"] == "user"
    assert request.headers["x-hasura-user-id"] == "u-1"
    assert hasura.introspections == 1
    assert progress[-1][0] == 100


def test_hasura_default_selection_is_scalar_fields(hasura, hasura_settings):
    run_job({"action": "sendWelcomeEmail", "input": {"userId": "u-1", "tags": ["a"]}}, hasura_settings())

    query = hasura.mutations[0].json()["query"]
    assert query == (
        "mutation NselfJob($userId: uuid!, $tags: [String!]) "
        "{ sendWelcomeEmail(userId: $userId, tags: $tags) { id status sentAt } }"
    )


def test_hasura_nested_selection_sent(hasura, hasura_settings):
    run_job({"action": "sendWelcomeEmail", "input": {"userId": "u-1"}, "selection": "id, user { email }"}, hasura_settings())

    assert hasura.mutations[0].json()["query"].endswith("{ sendWelcomeEmail(userId: $userId) { id user { email } } }")


def test_hasura_scalar_output_has_no_selection(hasura, hasura_settings):
    result = run_job({"action": "ping"}, hasura_settings())

    assert result["result"] is True
    assert hasura.mutations[0].json()["query"] == "mutation NselfJob { ping }"


def test_hasura_input_values_stay_in_variables(hasura, hasura_settings):
    hostile = '") { __schema { types { name } } } mutation x { ping(a: "'

    run_job({"action": "sendWelcomeEmail", "input": {"userId": hostile}, "selection": "id"}, hasura_settings())

    document = hasura.mutations[0].json()
    assert hostile not in document["query"]
    assert document["variables"] == {"userId": hostile}


def test_hasura_introspection_cached_per_action(hasura, hasura_settings):
    settings = hasura_settings()

    run_job({"action": "sendWelcomeEmail", "input": {"userId": "u-1"}}, settings)
    first_count = hasura.introspections
    run_job({"action": "sendWelcomeEmail", "input": {"userId": "u-2"}}, settings)

    assert first_count == 2
    assert hasura.introspections == 2
    assert len(hasura.mutations) == 2


def test_hasura_graphql_errors_fail_attempt(hasura, hasura_settings):
    hasura.action_reply = Reply(json_body={
        "errors": [
            {"message": "mail server down", "extensions": {"code": "unexpected"}},
            {"message": "second problem"},
        ]
    })

    with pytest.raises(ActionFailed) as caught:
        run_job({"action": "sendWelcomeEmail", "input": {"userId": "u-1"}}, hasura_settings())

    assert "mail server down; second problem" in str(caught.value)
    assert isinstance(caught.value, JobFailed)
    assert not isinstance(caught.value, PermanentJobFailure)


def test_hasura_validation_error_is_final_and_clears_cache(hasura, hasura_settings):
    hasura.action_reply = Reply(json_body={
        "errors": [{"message": "field 'nope' not found", "extensions": {"code": "validation-failed"}}]
    })
    settings = hasura_settings()

    with pytest.raises(PermanentJobFailure) as caught:
        run_job({"action": "sendWelcomeEmail", "input": {"userId": "u-1"}}, settings)

    assert "field 'nope' not found" in str(caught.value)
    assert custom._schema_cache == {}
    assert custom._selection_cache == {}


def test_hasura_unknown_action_fails(hasura, hasura_settings):
    with pytest.raises(PermanentJobFailure) as caught:
        run_job({"action": "noSuchAction"}, hasura_settings())

    assert "no mutation named 'noSuchAction'" in str(caught.value)
    assert hasura.mutations == []


def test_hasura_unknown_argument_fails(hasura, hasura_settings):
    with pytest.raises(PermanentJobFailure) as caught:
        run_job({"action": "sendWelcomeEmail", "input": {"userId": "u", "colour": "red"}}, hasura_settings())

    assert "no argument 'colour'" in str(caught.value)
    assert "userId, subject, tags" in str(caught.value)
    assert hasura.mutations == []


def test_hasura_wrong_secret_fails(hasura, hasura_settings):
    with pytest.raises(ActionFailed) as caught:
        run_job({"action": "ping"}, hasura_settings(HASURA_ADMIN_SECRET="wrong"))

    assert "invalid x-hasura-admin-secret" in str(caught.value)


def test_plugin_endpoint_and_secret_win(server, make_settings):
    own = FakeHasura(server, path="/own/graphql", secret="own-secret")
    nself = FakeHasura(server, path="/v1/graphql", secret=ADMIN_SECRET)
    settings = make_settings(
        HASURA_GRAPHQL_ENDPOINT=nself.url,
        HASURA_ADMIN_SECRET=ADMIN_SECRET,
        JOBS_HASURA_ENDPOINT=own.url,
        JOBS_HASURA_ADMIN_SECRET="own-secret",
    )

    run_job({"action": "ping"}, settings)

    assert len(own.mutations) == 1
    assert nself.mutations == []
    assert nself.introspections == 0


def test_hasura_graphql_admin_secret_used_as_fallback(hasura, make_settings):
    settings = make_settings(HASURA_GRAPHQL_ENDPOINT=hasura.url, HASURA_GRAPHQL_ADMIN_SECRET=ADMIN_SECRET)

    result = run_job({"action": "ping"}, settings)

    assert result["result"] is True


def test_hasura_unavailable_is_retryable(hasura, hasura_settings):
    hasura.action_reply = Reply(503, headers={"Retry-After": "30"}, body=b"restarting")

    with pytest.raises(RetryableHttpError) as caught:
        run_job({"action": "ping"}, hasura_settings())

    assert caught.value.status == 503
    assert caught.value.retry_after_s == 30


def test_hasura_server_error_fails_attempt_with_body(hasura, hasura_settings):
    hasura.action_reply = Reply(500, body=b"internal trouble", headers={"Content-Type": "text/plain"})

    with pytest.raises(ActionFailed) as caught:
        run_job({"action": "ping"}, hasura_settings())

    assert "500" in str(caught.value)
    assert "internal trouble" in str(caught.value)


def test_hasura_endpoint_obeys_deny_list(hasura, hasura_settings):
    with pytest.raises(TargetRejected):
        run_job({"action": "ping"}, hasura_settings(JOBS_HTTP_DENY_HOSTS="127.0.0.1"))

    assert hasura.server.requests == []


def test_hasura_endpoint_exempt_from_private_check(hasura, hasura_settings):
    settings = hasura_settings(JOBS_HTTP_ALLOW_PRIVATE="false", JOBS_HTTP_ALLOW_HOSTS="api.example.com")

    result = run_job({"action": "ping"}, settings)

    assert result["result"] is True


# -- Handler mode --------------------------------------------------------------------------------------------


def test_handler_mode_posts_hasura_action_body(server, make_settings):
    server.route("/actions", lambda request, _handler: Reply(json_body={"echo": request.json()}))
    settings = make_settings(
        JOBS_ACTION_HANDLER_URL=server.url("/actions"),
        JOBS_ACTION_SECRET=ACTION_SECRET,
    )
    payload = {
        "mode": "handler",
        "action": "sendWelcomeEmail",
        "input": {"userId": "u-1"},
        "sessionVariables": {"x-hasura-role": "user"},
    }

    result = run_job(payload, settings)

    expected_body = {
        "action": {"name": "sendWelcomeEmail"},
        "input": {"userId": "u-1"},
        "session_variables": {"x-hasura-role": "user"},
        "request_query": "",
    }
    assert result == {"mode": "handler", "action": "sendWelcomeEmail", "status": 200, "result": {"echo": expected_body}}
    request = server.requests[0]
    assert request.headers["x-nself-action-secret"] == ACTION_SECRET
    assert request.headers["Content-Type"] == "application/json"


def test_handler_mode_defaults_to_admin_role(server, make_settings):
    server.route("/actions", lambda request, _handler: Reply(json_body={"ok": True}))
    settings = make_settings(JOBS_ACTION_HANDLER_URL=server.url("/actions"))

    run_job({"mode": "handler", "action": "ping"}, settings)

    request = server.requests[0]
    assert request.json()["session_variables"] == {"x-hasura-role": "admin"}
    assert "x-nself-action-secret" not in request.headers


def test_handler_url_map_wins_and_secret_header_renamed(server, make_settings):
    server.reply("/default", Reply(json_body={"from": "default"}))
    server.reply("/emails", Reply(json_body={"from": "emails"}))
    settings = make_settings(
        JOBS_ACTION_HANDLER_URL=server.url("/default"),
        JOBS_ACTION_HANDLER_URLS=f"sendWelcomeEmail={server.url('/emails')}, ping={server.url('/default')}",
        JOBS_ACTION_SECRET=ACTION_SECRET,
        JOBS_ACTION_SECRET_HEADER="X-Action-Key",
    )

    emails = run_job({"mode": "handler", "action": "sendWelcomeEmail"}, settings)
    other = run_job({"mode": "handler", "action": "archiveUser"}, settings)

    assert emails["result"] == {"from": "emails"}
    assert other["result"] == {"from": "default"}
    assert server.requests[0].headers["X-Action-Key"] == ACTION_SECRET


def test_handler_error_status_fails_attempt(server, make_settings):
    server.reply("/actions", Reply(400, json_body={"message": "user u-1 has no email"}))
    settings = make_settings(JOBS_ACTION_HANDLER_URL=server.url("/actions"))

    with pytest.raises(ActionFailed) as caught:
        run_job({"mode": "handler", "action": "sendWelcomeEmail"}, settings)

    assert not isinstance(caught.value, PermanentJobFailure)
    assert "400" in str(caught.value)
    assert "user u-1 has no email" in str(caught.value)


def test_handler_long_error_body_truncated_in_message(server, make_settings):
    server.reply("/actions", Reply(500, body=b"e" * 5000, headers={"Content-Type": "text/plain"}))
    settings = make_settings(JOBS_ACTION_HANDLER_URL=server.url("/actions"))

    with pytest.raises(ActionFailed) as caught:
        run_job({"mode": "handler", "action": "ping"}, settings)

    assert "(truncated)" in str(caught.value)
    assert len(str(caught.value)) < 1000


def test_handler_non_json_success_fails_attempt(server, make_settings):
    server.reply("/actions", Reply(200, body=b"<html>ok</html>", headers={"Content-Type": "text/html"}))
    settings = make_settings(JOBS_ACTION_HANDLER_URL=server.url("/actions"))

    with pytest.raises(ActionFailed) as caught:
        run_job({"mode": "handler", "action": "ping"}, settings)

    assert "not JSON" in str(caught.value)


def test_handler_unavailable_is_retryable(server, make_settings):
    server.reply("/actions", Reply(429, headers={"Retry-After": "5"}))
    settings = make_settings(JOBS_ACTION_HANDLER_URL=server.url("/actions"))

    with pytest.raises(RetryableHttpError) as caught:
        run_job({"mode": "handler", "action": "ping"}, settings)

    assert caught.value.retry_after_s == 5


def test_handler_redirect_not_followed(server, make_settings):
    server.reply("/actions", Reply(302, headers={"Location": "/elsewhere"}))
    settings = make_settings(JOBS_ACTION_HANDLER_URL=server.url("/actions"))

    with pytest.raises(ActionFailed):
        run_job({"mode": "handler", "action": "ping"}, settings)

    assert server.requests_to("/elsewhere") == []


def test_handler_mode_without_url_rejected(make_settings):
    error = rejected({"mode": "handler", "action": "ping"}, make_settings())

    assert error.field == "payload.action"
    assert "JOBS_ACTION_HANDLER_URLS=ping=" in error.message


# -- Python mode -------------------------------------------------------------------------------------------------


@pytest.fixture
def handler_module(tmp_path, monkeypatch):
    """Write a handler module into tmp_path and return its importable name."""
    name = f"custom_handlers_{uuid.uuid4().hex}"
    source = textwrap.dedent(
        """
        from nself_jobs.errors import ValidationError
        from nself_jobs.jobtypes import register
        from nself_jobs.jobtypes.base import JobType
        from nself_jobs.jobtypes.custom import handler


        def check_numbers(input, settings):
            if not isinstance(input.get("numbers"), list):
                raise ValidationError("payload.input.numbers", "must be a list of numbers")
            return {"numbers": [float(n) for n in input["numbers"]]}


        @handler("add-numbers", validate=check_numbers)
        def add_numbers(input, ctx):
            ctx.progress(50, "adding")
            return {"sum": sum(input["numbers"]), "job": ctx.job_id}


        @handler("return-object")
        def return_object(input, ctx):
            return {"value": object()}


        register(JobType("user-defined-echo", "Return the payload.", lambda payload, settings: payload,
                         lambda payload, ctx: payload))
        """
    )
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_python_handler_runs_from_handler_modules(make_settings, handler_module):
    settings = make_settings(JOBS_HANDLER_MODULES=handler_module)
    progress = []

    result = run_job({"handler": "add-numbers", "input": {"numbers": [1, "2.5"]}}, settings, progress=progress)

    assert result == {"mode": "python", "handler": "add-numbers", "result": {"sum": 3.5, "job": "job-1"}}
    assert (50, "adding") in progress


def test_python_handler_validator_runs_at_submission(make_settings, handler_module):
    settings = make_settings(JOBS_HANDLER_MODULES=handler_module)

    error = rejected({"handler": "add-numbers", "input": {"numbers": "1,2"}}, settings)
    normalised = custom.validate({"handler": "add-numbers", "input": {"numbers": [1]}}, settings)

    assert error.field == "payload.input.numbers"
    assert normalised == {"mode": "python", "input": {"numbers": [1.0]}, "handler": "add-numbers"}


def test_python_unknown_handler_lists_registered(make_settings, handler_module):
    settings = make_settings(JOBS_HANDLER_MODULES=handler_module)

    error = rejected({"handler": "missing"}, settings)

    assert error.field == "payload.handler"
    assert "add-numbers, return-object" in error.message
    assert "JOBS_HANDLER_MODULES" in error.message


def test_python_result_must_be_json(make_settings, handler_module):
    settings = make_settings(JOBS_HANDLER_MODULES=handler_module)

    with pytest.raises(PermanentJobFailure) as caught:
        run_job({"handler": "return-object"}, settings)

    assert "not JSON-serialisable" in str(caught.value)


def test_handler_module_registers_new_job_type(handler_module, monkeypatch):
    # A copy keeps the new type out of the registry that later tests share.
    monkeypatch.setattr(jobtypes, "_registry", dict(jobtypes._registry))
    jobtypes.load_user_modules([handler_module])

    job_type = jobtypes.get("user-defined-echo")

    assert job_type.run({"a": 1}, None) == {"a": 1}


def test_unimportable_handler_module_raises_config_error(make_settings):
    settings = make_settings(JOBS_HANDLER_MODULES="no_such_module_for_custom_jobs")

    with pytest.raises(ConfigError) as caught:
        custom.validate({"handler": "anything"}, settings)

    assert caught.value.variable == "JOBS_HANDLER_MODULES"


def test_handler_decorator_rejects_invalid_name():
    with pytest.raises(ValueError):
        custom.handler("bad name")


def test_handler_registered_in_process():
    @custom.handler("double")
    def double(input, ctx):
        return input["n"] * 2

    assert custom.registered_handlers() == ["double"]
    assert custom._handlers["double"].function is double


# -- Payload validation --------------------------------------------------------------------------------------------


def test_mode_chosen_from_fields(hasura_settings):
    custom.handler("noop")(lambda input, ctx: None)
    settings = hasura_settings()

    assert custom.validate({"action": "ping"}, settings)["mode"] == "hasura"
    assert custom.validate({"handler": "noop"}, settings)["mode"] == "python"


@pytest.mark.parametrize(
    ("payload", "field", "hint"),
    [
        ({}, "payload.action", "is missing"),
        ({"action": "ping", "handler": "noop"}, "payload.mode", "is required"),
        ({"mode": "lambda", "action": "ping"}, "payload.mode", "hasura, handler, python"),
        ({"action": "send-email"}, "payload.action", "GraphQL name"),
        ({"action": "ping) { x }"}, "payload.action", "GraphQL name"),
        ({"action": "ping", "input": [1]}, "payload.input", "JSON object"),
        ({"action": "ping", "input": {"bad-name": 1}}, "payload.input.bad-name", "GraphQL"),
        ({"action": "ping", "sessionVariables": {"role": "user"}}, "payload.sessionVariables.role", "x-hasura-"),
        ({"action": "ping", "sessionVariables": {"x-hasura-role": 5}}, "payload.sessionVariables.x-hasura-role", "string"),
        (
            {"action": "ping", "sessionVariables": {"x-hasura-admin-secret": "guess"}},
            "payload.sessionVariables.x-hasura-admin-secret",
            "admin secret",
        ),
        ({"action": "ping", "sessionVariables": {"x-hasura-role": "a\r\nb"}}, "payload.sessionVariables.x-hasura-role", "CR"),
        ({"action": "ping", "selection": "id(where: {})"}, "payload.selection", "'('"),
        ({"action": "ping", "timeout": 0}, "payload.timeout", "milliseconds"),
        ({"action": "ping", "handler": "x", "mode": "hasura"}, "payload.handler", "not used in hasura mode"),
        ({"mode": "handler", "action": "ping", "selection": "id"}, "payload.selection", "not used in handler mode"),
        ({"handler": "noop", "sessionVariables": {}}, "payload.sessionVariables", "not used in python mode"),
        ({"action": "ping", "extra": 1}, "payload.extra", "unknown field"),
    ],
)
def test_invalid_payload_rejected(hasura_settings, payload, field, hint):
    custom.handler("noop")(lambda input, ctx: None)

    error = rejected(payload, hasura_settings())

    assert error.field == field
    assert hint in error.message


def test_hasura_mode_without_endpoint_rejected(make_settings):
    error = rejected({"action": "ping"}, make_settings())

    assert error.field == "payload.mode"
    assert "HASURA_GRAPHQL_ENDPOINT" in error.message


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("id status", "id status"),
        ("id,\n status", "id status"),
        ("id user { email profile { name } }", "id user { email profile { name } }"),
        ("", ""),
        ("__typename", "__typename"),
    ],
)
def test_valid_selection_normalised(selection, expected):
    assert validate_selection(selection) == expected


@pytest.mark.parametrize(
    "selection",
    [
        "alias: id",
        "id(limit: 1)",
        "...Fragment",
        "id @include(if: true)",
        "{ id }",
        "user { }",
        "user { id",
        "id }",
        "id $var",
        "id # comment",
        "a { " * 11 + "b" + " }" * 11,
        5,
    ],
)
def test_invalid_selection_rejected(selection):
    with pytest.raises(ValueError):
        validate_selection(selection)


def test_build_mutation_without_arguments():
    assert build_mutation("ping", (), [], "") == "mutation NselfJob { ping }"


# -- Settings -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOBS_ACTION_HANDLER_URLS", "sendEmail"),
        ("JOBS_ACTION_HANDLER_URLS", "send-email=http://handler/"),
        ("JOBS_ACTION_HANDLER_URLS", "sendEmail=ftp://handler/"),
        ("JOBS_ACTION_HANDLER_URL", "handler:3000"),
        ("HASURA_GRAPHQL_ENDPOINT", "hasura/v1/graphql"),
        ("JOBS_HASURA_ENDPOINT", "http://user:pw@hasura/v1/graphql"),
        ("JOBS_ACTION_SECRET_HEADER", "bad header"),
    ],
)
def test_invalid_setting_raises_config_error(make_settings, variable, value):
    with pytest.raises(ConfigError) as caught:
        CustomSettings.from_settings(make_settings(**{variable: value}))

    assert caught.value.variable == variable


def test_settings_repr_hides_secrets(make_settings):
    settings = make_settings(
        HASURA_GRAPHQL_ENDPOINT="http://hasura:8080/v1/graphql",
        HASURA_ADMIN_SECRET="admin-secret-value",
        JOBS_ACTION_SECRET="action-secret-value",
    )

    text = repr(CustomSettings.from_settings(settings))

    assert "admin-secret-value" not in text
    assert "action-secret-value" not in text
    assert "http://hasura:8080/v1/graphql" in text


def test_payload_never_contains_admin_secret(hasura, hasura_settings):
    normalised = custom.validate({"action": "ping"}, hasura_settings())

    assert ADMIN_SECRET not in json.dumps(normalised)
