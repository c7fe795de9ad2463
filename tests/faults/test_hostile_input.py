"""Hostile input to the real server over a socket and to the CLI: no 500, no traceback, no worker crash.

Text must come back exactly as it was sent, through the API, Redis, PostgreSQL,
the CLI and the dashboard, and markup must be shown as text.
"""

import html
import json
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from nself_jobs.cli.main import cli
from nself_jobs.queue import JobQueue
from tests.conftest import REPO, drain_history, job_status, run_plugin, wait_for
from tests.faults.conftest import Client, assert_doctor_clean, wait_for_server
from tests.faults.fault_jobs import MARKUP_ERROR, MARKUP_TYPE, UNICODE_ERROR, UNICODE_TYPE

DOCUMENTED_EXIT_CODES = set(range(0, 12))
DESCRIPTION = "中文 ✓"


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


@pytest.fixture
def server(start_plugin, fault_environ, store):
    process = start_plugin("server")
    port = int(fault_environ["JOBS_DASHBOARD_PORT"])
    wait_for_server(port)
    client = Client(port)
    yield process, client, port
    client.close()


def post_raw(client, body, headers=None):
    status, _, data = client.request("POST", "/api/jobs", body, headers)
    return status, json.loads(data)


def nested(depth):
    return '{"type": "test-echo", "payload": {"a": ' + "[" * depth + "]" * depth + "}}"


MALFORMED = [
    ("truncated JSON", b'{"type": "test-echo", "payload": {', 400, "body"),
    ("not JSON at all", b"<xml>job</xml>", 400, "body"),
    ("empty body", b"", 422, "body"),
    ("JSON array body", b'[{"type": "test-echo"}]', 422, "body"),
    ("JSON string body", b'"test-echo"', 422, "body"),
    ("type is a number", b'{"type": 123}', 422, "type"),
    ("type is null", b'{"type": null}', 422, "type"),
    ("queue is a number", b'{"type": "test-echo", "queue": 5}', 422, "queue"),
    ("payload is a string", b'{"type": "test-echo", "payload": "x"}', 422, "payload"),
    ("payload is a list", b'{"type": "test-echo", "payload": [1]}', 422, "payload"),
    ("options is a list", b'{"type": "test-echo", "options": []}', 422, "options"),
    ("maxRetries is a string", b'{"type": "test-echo", "options": {"maxRetries": "3"}}', 422, "options.maxRetries"),
    ("maxRetries is a float", b'{"type": "test-echo", "options": {"maxRetries": 1.5}}', 422, "options.maxRetries"),
    ("maxRetries is true", b'{"type": "test-echo", "options": {"maxRetries": true}}', 422, "options.maxRetries"),
    ("delay is negative", b'{"type": "test-echo", "options": {"delay": -1}}', 422, "options.delay"),
    ("delay is huge", b'{"type": "test-echo", "options": {"delay": 1e300}}', 422, "options.delay"),
    ("priority is an object", b'{"type": "test-echo", "options": {"priority": {}}}', 422, "options.priority"),
    ("unknown top-level field", b'{"type": "test-echo", "callback": "x"}', 422, "callback"),
    ("unknown option", b'{"type": "test-echo", "options": {"retries": 3}}', 422, "options.retries"),
    ("unknown type", b'{"type": "no-such-type"}', 422, "type"),
    ("NaN in payload", b'{"type": "test-echo", "payload": {"timeout": NaN}}', 422, "body"),
    ("Infinity in payload", b'{"type": "test-echo", "payload": {"timeout": Infinity}}', 422, "body"),
    ("-Infinity in options", b'{"type": "test-echo", "options": {"delay": -Infinity}}', 422, "body"),
    ("invalid UTF-8 in a string", b'{"type": "test-echo", "payload": {"a": "\xff\xfe"}}', 400, "body"),
    ("NUL character", b'{"type": "test-echo", "payload": {"a": "\\u0000"}}', 422, "payload.a"),
    ("1000 nested arrays", nested(1000).encode(), 422, "body"),
    ("100000 nested arrays", nested(100_000).encode(), 422, "body"),
]


def test_malformed_requests_rejected_without_500(server, queue):
    process, client, _ = server
    outcomes = {}
    for name, body, _, _ in MALFORMED:
        outcomes[name] = post_raw(client, body)

    for name, _, status, field in MALFORMED:
        got_status, data = outcomes[name]
        assert got_status == status, f"{name}: {data}"
        assert data.get("field") == field, f"{name}: {data}"
    assert queue.counts()["default"]["waiting"] == 0
    assert client.request("GET", "/health")[0] == 200
    assert process.process.poll() is None
    assert "Traceback" not in process.output()


HOSTILE_PATHS = [
    ("GET", "/api/jobs/%FF"),
    ("GET", "/api/jobs/%ED%A0%80"),
    ("GET", "/api/jobs/" + "a" * 4000),
    ("DELETE", "/api/jobs/%FF%FE"),
    ("POST", "/api/jobs/%FF/retry"),
    ("POST", "/api/jobs/%C3%28/promote"),
    ("GET", "/api/jobs?status=%FF"),
    ("GET", "/api/jobs?type=%ED%A0%80"),
    ("GET", "/api/jobs?type=%3Cscript%3E"),
    ("GET", "/api/jobs?cursor=%FF%FF"),
    ("GET", "/api/jobs?cursor=not-a-cursor"),
    ("GET", "/api/jobs?pageSize=NaN"),
    ("GET", "/api/jobs?pageSize=1e9"),
    ("GET", "/api/jobs?pageSize=-1"),
    ("GET", "/api/jobs?pageSize=99999999999999999999999"),
    ("GET", "/api/jobs?app=%FF"),
    ("GET", "/api/stats?queue=%00"),
]


def test_hostile_paths_and_queries_have_no_500(server):
    process, client, _ = server
    statuses = {}
    for method, path in HOSTILE_PATHS:
        status, headers, _ = client.request(method, path)
        statuses[(method, path[:80])] = (status, headers.get("Content-Type"))

    for (method, path), (status, content_type) in statuses.items():
        assert status < 500, f"{method} {path}"
        assert content_type.startswith("application/json"), f"{method} {path}"
    assert "Traceback" not in process.output()


HOSTILE_APP_NAMES = [
    pytest.param(b"\xc3\xa9t\xc3\xa9", id="utf8"),
    pytest.param(b"<script>", id="markup"),
    pytest.param(b"a" * 4000, id="long"),
    pytest.param(b"\xff\xfe", id="invalid-utf8"),
]


@pytest.mark.parametrize("app_name", HOSTILE_APP_NAMES)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_hostile_app_header_has_no_500(server, app_name, method):
    _, _, port = server
    body = b'{"type": "test-echo"}' if method == "POST" else b""
    request = (f"{method} /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request + b"X-App-Name: " + app_name + b"\r\n\r\n" + body)
        status = int(sock.makefile("rb").readline().split()[1])

    assert status in (200, 201)


def test_body_over_limit_is_413_stating_limit(server, settings):
    _, client, _ = server
    body = json.dumps({"type": "test-echo", "payload": {"blob": "x" * settings.max_payload_bytes}})

    status, data = post_raw(client, body)

    assert status == 413
    assert f"limit of {settings.max_payload_bytes} bytes" in data["error"]


def test_twenty_megabyte_body_is_413(server, settings):
    process, client, _ = server
    body = b'{"type": "test-echo", "payload": {"blob": "' + b"x" * (20 * 1024 * 1024) + b'"}}'

    started = time.monotonic()
    try:
        status, _ = post_raw(client, body)
    except ConnectionResetError:
        # The server answered 413 after the headers and closed while the body was still being sent.
        status = 413
    elapsed = time.monotonic() - started

    print(f"20 MB body answered {status} in {elapsed:.2f} s")
    assert status == 413
    assert client.request("GET", "/health")[0] == 200


def test_twenty_megabyte_body_refused_before_it_is_sent(server):
    _, _, port = server
    head = (b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 20971520\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + b'{"type": "test-echo", "payload": {"blob": "' + b"x" * 65536)
        sock.settimeout(5)
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            reply = b""

    assert reply.startswith(b"HTTP/1.1 413")


def run_cli(environ, tmp_path, *args):
    completed = run_plugin(list(args), environ, tmp_path)
    assert "Traceback" not in completed.stderr + completed.stdout
    return completed


def test_unicode_round_trips_everywhere(server, queue, store, start_plugin, fault_environ, tmp_path):
    _, client, port = server
    worker = start_plugin("worker", "-c", "1")
    status, created = client.json("POST", "/api/jobs", {
        "type": UNICODE_TYPE, "payload": {"title": DESCRIPTION, "fail": True},
        "options": {"description": DESCRIPTION, "maxRetries": 0}})
    assert status == 201
    job_id = created["id"]
    assert created["type"] == UNICODE_TYPE
    wait_for(lambda: job_status(queue, job_id) == "failed", timeout_s=30, message="the unicode job to fail")
    drain_history(queue.redis, store)

    status, shown = client.json("GET", f"/api/jobs/{job_id}")
    assert status == 200
    assert shown["type"] == UNICODE_TYPE
    assert shown["options"]["description"] == DESCRIPTION
    assert shown["payload"] == {"title": DESCRIPTION, "fail": True}
    assert shown["error"] == UNICODE_ERROR
    assert [failure["error"] for failure in shown["failures"]] == [UNICODE_ERROR]

    # RQ's own field, read by rq info and rq-dashboard.
    assert queue.redis.hget(f"rq:job:{job_id}", "description") == DESCRIPTION
    row, _, failures = store.job_history(job_id)
    assert row["type"] == UNICODE_TYPE
    assert row["options"]["description"] == DESCRIPTION
    assert row["last_error"] == UNICODE_ERROR
    assert failures[0]["error_message"] == UNICODE_ERROR

    as_json = json.loads(run_cli(fault_environ, tmp_path, "get", job_id, "--json").stdout)
    assert (as_json["type"], as_json["error"]) == (UNICODE_TYPE, UNICODE_ERROR)
    as_text = run_cli(fault_environ, tmp_path, "get", job_id).stdout
    assert UNICODE_TYPE in as_text
    assert UNICODE_ERROR in as_text

    page_status, _, page = client.request("GET", f"/dashboard/jobs/{job_id}")
    assert page_status == 200
    assert UNICODE_TYPE in page.decode("utf-8")
    assert UNICODE_ERROR in page.decode("utf-8")

    submitted = run_cli(fault_environ, tmp_path, "submit", UNICODE_TYPE, "--payload", json.dumps({"title": "ü"}),
                        "--json")
    assert submitted.returncode == 0
    second = json.loads(submitted.stdout)["id"]
    wait_for(lambda: job_status(queue, second) == "completed", timeout_s=30,
             message="the worker to keep running jobs")
    assert queue.get_job(second)["result"]["title"] == "ü"
    assert "exited with code" not in worker.output()
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)


def test_markup_stored_and_shown_as_text(server, queue, store, start_plugin, fault_environ, tmp_path):
    _, client, _ = server
    start_plugin("worker", "-c", "1")
    payload = {"html": "<script>alert(1)</script>", "quote": "\"'&<>"}
    status, created = client.json("POST", "/api/jobs", {"type": MARKUP_TYPE, "payload": payload,
                                                         "options": {"maxRetries": 0,
                                                                     "description": "<b>bold</b>"}})
    assert status == 201
    job_id = created["id"]
    wait_for(lambda: job_status(queue, job_id) == "failed", timeout_s=30, message="the markup job to fail")
    drain_history(queue.redis, store)

    status, headers, body = client.request("GET", f"/api/jobs/{job_id}")
    shown = json.loads(body)
    assert headers["Content-Type"].startswith("application/json")
    assert shown["type"] == MARKUP_TYPE
    assert shown["payload"] == payload
    assert shown["error"] == MARKUP_ERROR
    assert store.job_history(job_id)[0]["last_error"] == MARKUP_ERROR

    for path in (f"/dashboard/jobs/{job_id}", "/dashboard/failures", "/dashboard"):
        page_status, page_headers, page = client.request("GET", path)
        text = page.decode("utf-8")
        assert page_status == 200, path
        assert page_headers["Content-Type"].startswith("text/html"), path
        assert "<script>alert" not in text, path
        assert "<b>markup</b>" not in text, path
    job_page = client.request("GET", f"/dashboard/jobs/{job_id}")[2].decode("utf-8")
    assert html.escape(MARKUP_ERROR, quote=False) in job_page or html.escape(MARKUP_ERROR) in job_page
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)


# A lone surrogate cannot be encoded as UTF-8, so Redis cannot store it. It reaches the
# queue from a JSON escape such as "\ud800", or from a command-line byte that is not UTF-8,
# which Python decodes to a surrogate.


def test_lone_surrogate_escape_is_422(server):
    _, client, _ = server

    status, data = post_raw(client, b'{"type": "test-echo", "payload": {"a": "\\ud800"}}')

    assert status == 422
    assert data["field"].startswith("payload")


INVALID_UTF8_ARGUMENTS = [
    pytest.param(["submit", b"\xff\xfe"], id="submit-type"),
    pytest.param(["submit", "test-echo", "--payload", b'{"a": "\xff"}'], id="submit-payload"),
    pytest.param(["submit", "test-echo", "--unique-key", b"\xff"], id="submit-unique-key"),
    pytest.param(["get", b"\xc3\x28"], id="get"),
    pytest.param(["retry", "--type", b"\xed\xa0\x80", "--show"], id="retry-type"),
    pytest.param(["retry", "--id", b"\xff"], id="retry-id"),
    pytest.param(["cancel", b"\x80"], id="cancel"),
    pytest.param(["promote", b"\x80"], id="promote"),
    pytest.param(["stats", "--queue", b"\xff"], id="stats-queue"),
]


@pytest.mark.parametrize("arguments", INVALID_UTF8_ARGUMENTS)
def test_invalid_utf8_argument_exits_cleanly(fault_environ, tmp_path, store, arguments):
    env = dict(fault_environ, PYTHONPATH=f"{REPO / 'lib'}:{REPO}")
    command = [sys.executable.encode(), b"-m", b"nself_jobs.cli.main",
               *[argument if isinstance(argument, bytes) else argument.encode() for argument in arguments]]

    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=60)

    assert b"Traceback" not in completed.stdout + completed.stderr
    assert completed.returncode in DOCUMENTED_EXIT_CODES - {0}


@pytest.fixture
def cli_runner(fault_environ, tmp_path, store):
    from nself_jobs.cli.doctor import doctor
    from nself_jobs.cli.operate import cancel, promote, retry
    from nself_jobs.cli.stats import stats
    for command in (retry, cancel, promote, stats, doctor):
        cli.add_command(command)
    env = dict(fault_environ, NSELF_PROJECT_DIR=str(tmp_path))

    def invoke(*args):
        result = CliRunner().invoke(cli, list(args), env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            f"{args!r} raised {result.exception!r}"
        assert result.exit_code in DOCUMENTED_EXIT_CODES, (args, result.exit_code, result.output)
        assert "Traceback" not in result.output, (args, result.output)
        return result
    return invoke


FUZZ_SETTINGS = hypothesis_settings(max_examples=60, deadline=None, database=None,
                                    suppress_health_check=[HealthCheck.function_scoped_fixture])
text = st.text(max_size=40)
option_value = st.one_of(text, st.integers(-10**12, 10**12).map(str), st.sampled_from(["", "-1", "NaN", "1e999"]))


@FUZZ_SETTINGS
@given(job_type=text, payload=st.one_of(text, st.sampled_from(["{}", "[]", "null", '{"a": NaN}', "{" * 80])),
       options=st.lists(st.tuples(st.sampled_from(["--queue", "--priority", "--delay", "--max-retries",
                                                    "--timeout", "--unique-key"]), option_value), max_size=3))
def test_fuzz_submit_arguments(cli_runner, job_type, payload, options):
    arguments = ["submit", job_type, "--payload", payload]
    for name, value in options:
        arguments += [name, value]
    cli_runner(*arguments)


@FUZZ_SETTINGS
@given(job_id=text, as_json=st.booleans())
def test_fuzz_get_arguments(cli_runner, job_id, as_json):
    cli_runner("get", job_id, *(["--json"] if as_json else []))


@FUZZ_SETTINGS
@given(options=st.lists(st.tuples(st.sampled_from(["--queue", "--type", "--id", "--limit"]), option_value),
                        max_size=3),
       show=st.booleans())
def test_fuzz_retry_arguments(cli_runner, options, show):
    arguments = ["retry", *(["--show"] if show else [])]
    for name, value in options:
        arguments += [name, value]
    cli_runner(*arguments)


@FUZZ_SETTINGS
@given(options=st.lists(st.tuples(st.sampled_from(["--queue", "--time"]), option_value), max_size=2),
       performance=st.booleans())
def test_fuzz_stats_arguments(cli_runner, options, performance):
    arguments = ["stats", "--json", *(["--performance"] if performance else [])]
    for name, value in options:
        arguments += [name, value]
    cli_runner(*arguments)


def test_text_is_not_rewritten_by_cli(cli_runner, queue):
    title = "glāžšķūņŗūķīšī <b>&amp;</b> \u202e"
    result = cli_runner("submit", "test-echo", "--payload", json.dumps({"value": title}, ensure_ascii=False), "--json")
    job_id = json.loads(result.output)["id"]

    assert queue.get_job(job_id)["payload"] == {"value": title}
    assert json.loads(cli_runner("get", job_id, "--json").output)["payload"]["value"] == title
