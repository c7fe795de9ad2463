"""The http-request job type against a real HTTP server on 127.0.0.1.

Every connection in this file goes to 127.0.0.1 or ::1. Targets that the address
policy must reject (::1 and localhost on a deny list, loopback with private
addresses disallowed) are rejected before any connection is opened. Name lookups
are replaced by fixed answers, so no DNS query leaves the machine.
"""

import base64
import email.utils
import ipaddress
import json
import socket
import ssl
import time
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _http_fixtures import LocalHttpServer, Reply, ipv6_loopback_available
from nself_jobs import net_guard
from nself_jobs.errors import JobFailed, JobTimeout, PermanentJobFailure, ValidationError
from nself_jobs.jobtypes import http_request
from nself_jobs.jobtypes.base import JobContext
from nself_jobs.jobtypes.http_request import RetryableHttpError
from nself_jobs.net_guard import TargetRejected
from nself_jobs.settings import load_settings


@pytest.fixture
def server():
    local_server = LocalHttpServer()
    yield local_server
    local_server.close()


@pytest.fixture
def make_settings(tmp_path):
    def build(**environ):
        return load_settings(environ=environ, project_dir=tmp_path)

    return build


def run_job(payload, settings, timeout_ms=10_000, progress=None):
    normalised = http_request.validate(payload, settings)
    report = None if progress is None else (lambda percent, message: progress.append((percent, message)))
    ctx = JobContext("job-1", 1, settings, timeout_ms, report_progress=report)
    return http_request.run(normalised, ctx)


@pytest.fixture
def localhost(monkeypatch):
    """Resolve localhost to 127.0.0.1 without the system resolver, and fail for any other name."""

    def getaddrinfo(name, port, *_args, **_kwargs):
        if name != "localhost":
            raise AssertionError(f"test tried to resolve {name!r}")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    monkeypatch.setattr(net_guard.socket, "getaddrinfo", getaddrinfo)


# -- Requests and responses ------------------------------------------------------------------------


def test_get_json_round_trip(server, make_settings):
    server.reply("/items", Reply(json_body={"items": [1, 2]}, headers={"X-Total": "2"}))
    progress = []

    result = run_job({"url": server.url("/items")}, make_settings(), progress=progress)

    assert result["status"] == 200
    assert result["reason"] == "OK"
    assert json.loads(result["body"]) == {"items": [1, 2]}
    assert result["bodyEncoding"] == "text"
    assert result["truncated"] is False
    assert result["headers"]["content-type"] == "application/json"
    assert result["headers"]["x-total"] == "2"
    assert result["url"] == server.url("/items")
    assert result["redirects"] == []
    assert isinstance(result["durationMs"], int)
    assert progress[0][0] == 0
    assert progress[-1][0] == 100
    assert server.requests[0].method == "GET"


def test_post_json_body_and_content_type(server, make_settings):
    server.route("/echo", lambda request, _handler: Reply(201, json_body={"received": request.json()}))

    result = run_job({"method": "post", "url": server.url("/echo"), "json": {"name": "Ada", "n": [1]}}, make_settings())

    assert result["status"] == 201
    assert json.loads(result["body"]) == {"received": {"name": "Ada", "n": [1]}}
    request = server.requests[0]
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert int(request.headers["Content-Length"]) == len(request.body)


def test_text_body_keeps_given_content_type(server, make_settings):
    server.reply("/text", Reply(204))

    payload = {
        "method": "PUT",
        "url": server.url("/text"),
        "body": "grüße",
        "headers": {"Content-Type": "text/plain; charset=utf-8"},
    }
    result = run_job(payload, make_settings())

    assert result["status"] == 204
    assert result["body"] == ""
    assert server.requests[0].body == "grüße".encode("utf-8")
    assert server.requests[0].headers["Content-Type"] == "text/plain; charset=utf-8"


def test_headers_and_query_are_sent(server, make_settings):
    server.reply("/search", Reply(json_body={}))

    payload = {
        "url": server.url("/search?fixed=1#fragment"),
        "headers": {"Authorization": "Bearer abc", "X-Trace": "t-1"},
        "query": {"q": "a b&c", "tag": ["x", "y"], "flag": True, "n": 3},
    }
    result = run_job(payload, make_settings())

    request = server.requests[0]
    assert request.headers["Authorization"] == "Bearer abc"
    assert request.headers["X-Trace"] == "t-1"
    assert request.headers["User-Agent"].startswith("nself-jobs/")
    assert request.headers["Host"] == f"127.0.0.1:{server.port}"
    assert request.query == "fixed=1&q=a+b%26c&tag=x&tag=y&flag=true&n=3"
    assert result["url"] == server.url("/search?fixed=1&q=a+b%26c&tag=x&tag=y&flag=true&n=3")


def test_head_request_has_no_body(server, make_settings):
    server.reply("/head", Reply(body=b"not sent", headers={"Content-Type": "text/plain"}))

    result = run_job({"method": "HEAD", "url": server.url("/head")}, make_settings())

    assert result["status"] == 200
    assert result["body"] == ""
    assert result["headers"]["content-length"] == "8"


def test_chunked_response_is_read(server, make_settings):
    def chunked(_request, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for part in (b"hello ", b"chunked ", b"world"):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        handler.wfile.write(b"0\r\n\r\n")

    server.route("/chunked", chunked)

    result = run_job({"url": server.url("/chunked")}, make_settings())

    assert result["body"] == "hello chunked world"
    assert result["truncated"] is False


# -- Redirects -----------------------------------------------------------------------------------------


def test_redirects_followed_to_final_url(server, make_settings):
    server.reply("/start", Reply(301, headers={"Location": "/middle"}))
    server.reply("/middle", Reply(307, headers={"Location": server.url("/final?done=1")}))
    server.reply("/final", Reply(json_body={"final": True}))

    result = run_job({"url": server.url("/start")}, make_settings())

    assert result["status"] == 200
    assert result["url"] == server.url("/final?done=1")
    assert result["redirects"] == [server.url("/start"), server.url("/middle")]
    assert [request.path for request in server.requests] == ["/start", "/middle", "/final"]


def test_redirect_303_turns_post_into_get(server, make_settings):
    server.reply("/submit", Reply(303, headers={"Location": "/status"}))
    server.reply("/status", Reply(json_body={"ok": True}))

    run_job({"method": "POST", "url": server.url("/submit"), "json": {"a": 1}}, make_settings())

    follow_up = server.requests_to("/status")[0]
    assert follow_up.method == "GET"
    assert follow_up.body == b""
    assert "Content-Type" not in follow_up.headers


def test_redirect_307_keeps_method_and_body(server, make_settings):
    server.reply("/submit", Reply(307, headers={"Location": "/again"}))
    server.route("/again", lambda request, _handler: Reply(json_body={"got": request.json()}))

    result = run_job({"method": "POST", "url": server.url("/submit"), "json": {"a": 1}}, make_settings())

    assert json.loads(result["body"]) == {"got": {"a": 1}}
    assert server.requests_to("/again")[0].method == "POST"


def test_redirects_capped_by_max_redirects(server, make_settings):
    server.route("/loop", lambda request, _handler: Reply(302, headers={"Location": "/loop"}))

    with pytest.raises(PermanentJobFailure) as caught:
        run_job({"url": server.url("/loop"), "maxRedirects": 2}, make_settings())

    assert "stopped after 2 redirects" in str(caught.value)
    assert len(server.requests_to("/loop")) == 3


def test_redirect_not_followed_when_disabled(server, make_settings):
    server.reply("/moved", Reply(302, headers={"Location": "/elsewhere"}))

    result = run_job(
        {"url": server.url("/moved"), "followRedirects": False, "expectStatus": ["3xx"]}, make_settings()
    )

    assert result["status"] == 302
    assert result["headers"]["location"] == "/elsewhere"
    assert server.requests_to("/elsewhere") == []


def test_redirect_to_denied_ipv6_literal_rejected(server, make_settings):
    server.reply("/start", Reply(302, headers={"Location": f"http://[::1]:{server.port}/inner"}))
    settings = make_settings(JOBS_HTTP_DENY_HOSTS="::1")

    with pytest.raises(TargetRejected) as caught:
        run_job({"url": server.url("/start")}, settings)

    assert "JOBS_HTTP_DENY_HOSTS" in str(caught.value)
    assert caught.value.host == "::1"
    assert server.requests_to("/inner") == []


def test_redirect_to_denied_hostname_rejected(server, make_settings, localhost):
    server.reply("/start", Reply(302, headers={"Location": server.url("/inner", host="localhost")}))
    server.reply("/inner", Reply(json_body={"reached": True}))
    settings = make_settings(JOBS_HTTP_DENY_HOSTS="localhost")

    with pytest.raises(TargetRejected) as caught:
        run_job({"url": server.url("/start")}, settings)

    assert "'localhost'" in str(caught.value)
    assert server.requests_to("/inner") == []


@pytest.mark.skipif(not ipv6_loopback_available(), reason="cannot listen on ::1")
def test_redirect_to_resolved_denied_address_rejected(server, make_settings, localhost):
    # The first hop is ::1 and the redirect names localhost. The deny entry is an address,
    # so only the check after resolving localhost can reject the second hop.
    ipv6_server = LocalHttpServer("::1")
    try:
        ipv6_server.reply("/start", Reply(302, headers={"Location": server.url("/inner", host="localhost")}))
        server.reply("/inner", Reply(json_body={"reached": True}))
        settings = make_settings(JOBS_HTTP_DENY_HOSTS="127.0.0.0/8")

        with pytest.raises(TargetRejected) as caught:
            run_job({"url": ipv6_server.url("/start")}, settings)
    finally:
        ipv6_server.close()

    assert caught.value.host == "localhost"
    assert str(caught.value.address) == "127.0.0.1"
    assert len(ipv6_server.requests) == 1
    assert server.requests == []


def test_redirect_to_other_origin_drops_credentials(server, make_settings, localhost):
    server.reply("/start", Reply(302, headers={"Location": server.url("/inner", host="localhost")}))
    server.reply("/inner", Reply(json_body={}))
    headers = {"Authorization": "Bearer secret", "X-Api-Key": "k", "Accept": "application/json"}

    run_job({"url": server.url("/start"), "headers": headers}, make_settings())

    first, second = server.requests
    assert first.headers["Authorization"] == "Bearer secret"
    assert "Authorization" not in second.headers
    assert "X-Api-Key" not in second.headers
    assert second.headers["Accept"] == "application/json"
    assert second.headers["Host"] == f"localhost:{server.port}"


# -- Address policy at run time --------------------------------------------------------------------------


def test_loopback_literal_rejected_without_private(server, make_settings):
    settings = make_settings(JOBS_HTTP_ALLOW_PRIVATE="false")

    with pytest.raises(ValidationError) as caught:
        http_request.validate({"url": server.url("/x")}, settings)

    assert caught.value.field == "payload.url"
    assert "JOBS_HTTP_ALLOW_PRIVATE" in caught.value.message


def test_resolved_loopback_rejected_without_private(server, make_settings, localhost):
    server.reply("/x", Reply(json_body={}))
    settings = make_settings(JOBS_HTTP_ALLOW_PRIVATE="false")
    payload = http_request.validate({"url": server.url("/x", host="localhost")}, settings)

    with pytest.raises(TargetRejected) as caught:
        http_request.run(payload, JobContext("job-1", 1, settings, 10_000))

    assert isinstance(caught.value, PermanentJobFailure)
    assert "JOBS_HTTP_ALLOW_PRIVATE" in str(caught.value)
    assert server.requests == []


def test_policy_checked_again_at_run_time(server, make_settings):
    payload = http_request.validate({"url": server.url("/x")}, make_settings())
    later_settings = make_settings(JOBS_HTTP_DENY_HOSTS="127.0.0.1")

    with pytest.raises(TargetRejected):
        http_request.run(payload, JobContext("job-1", 1, later_settings, 10_000))

    assert server.requests == []


# -- Status handling -------------------------------------------------------------------------------------


def test_retry_on_503_exposes_retry_after_seconds(server, make_settings):
    server.reply("/busy", Reply(503, headers={"Retry-After": "7"}, body=b"busy"))

    with pytest.raises(RetryableHttpError) as caught:
        run_job({"url": server.url("/busy")}, make_settings())

    assert caught.value.status == 503
    assert caught.value.retry_after_s == 7
    assert not isinstance(caught.value, PermanentJobFailure)
    assert "retry after 7 s" in str(caught.value)


def test_retry_after_http_date_becomes_seconds(server, make_settings):
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    server.reply("/limited", Reply(429, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}))

    with pytest.raises(RetryableHttpError) as caught:
        run_job({"url": server.url("/limited")}, make_settings())

    assert caught.value.status == 429
    assert 100 <= caught.value.retry_after_s <= 121


def test_retry_without_retry_after_has_no_wait(server, make_settings):
    server.reply("/gateway", Reply(502))

    with pytest.raises(RetryableHttpError) as caught:
        run_job({"url": server.url("/gateway")}, make_settings())

    assert caught.value.retry_after_s is None


def test_custom_retry_on_list(server, make_settings):
    server.reply("/conflict", Reply(409))

    with pytest.raises(RetryableHttpError) as caught:
        run_job({"url": server.url("/conflict"), "retryOn": ["409"]}, make_settings())

    assert caught.value.status == 409


def test_unexpected_status_fails_for_good(server, make_settings):
    server.reply("/missing", Reply(404, body=b"no such item", headers={"Content-Type": "text/plain"}))

    with pytest.raises(PermanentJobFailure) as caught:
        run_job({"url": server.url("/missing")}, make_settings())

    assert "returned 404 Not Found" in str(caught.value)
    assert "no such item" in str(caught.value)


def test_expected_status_wins_over_retry_on(server, make_settings):
    server.reply("/limited", Reply(429, body=b"slow down"))

    result = run_job({"url": server.url("/limited"), "expectStatus": ["4xx"]}, make_settings())

    assert result["status"] == 429
    assert result["body"] == "slow down"


def test_connection_refused_is_retryable(make_settings):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    with pytest.raises(RetryableHttpError) as caught:
        run_job({"url": f"http://127.0.0.1:{port}/"}, make_settings())

    assert caught.value.status is None


def _fail_lookup(monkeypatch, code):
    def getaddrinfo(*_args, **_kwargs):
        raise socket.gaierror(code, "lookup failed in test")

    monkeypatch.setattr(net_guard.socket, "getaddrinfo", getaddrinfo)


def test_unknown_host_fails_attempt(make_settings, monkeypatch):
    # The lookup is replaced, so no DNS query leaves the machine.
    _fail_lookup(monkeypatch, socket.EAI_NONAME)

    with pytest.raises(JobFailed) as caught:
        run_job({"url": "http://not-running.test/"}, make_settings())

    assert "host not-running.test not found" in str(caught.value)
    assert not isinstance(caught.value, PermanentJobFailure)
    assert not isinstance(caught.value, RetryableHttpError)


def test_temporary_lookup_failure_is_retryable(make_settings, monkeypatch):
    _fail_lookup(monkeypatch, socket.EAI_AGAIN)

    with pytest.raises(RetryableHttpError):
        run_job({"url": "http://flaky-dns.test/"}, make_settings())


# -- Response size ----------------------------------------------------------------------------------------


def test_large_body_truncated_at_limit(server, make_settings):
    server.reply("/big", Reply(body=b"a" * 5000, headers={"Content-Type": "text/plain"}))

    result = run_job({"url": server.url("/big")}, make_settings(JOBS_HTTP_MAX_RESPONSE_BYTES="1024"))

    assert result["truncated"] is True
    assert result["body"] == "a" * 1024


def test_body_at_exact_limit_not_truncated(server, make_settings):
    server.reply("/exact", Reply(body=b"b" * 1024, headers={"Content-Type": "text/plain"}))

    result = run_job({"url": server.url("/exact")}, make_settings(JOBS_HTTP_MAX_RESPONSE_BYTES="1024"))

    assert result["truncated"] is False
    assert len(result["body"]) == 1024


def test_endless_chunked_body_truncated(server, make_settings):
    def endless(_request, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(10_000):
            handler.wfile.write(b"400\r\n" + b"z" * 1024 + b"\r\n")

    server.route("/endless", endless)

    result = run_job({"url": server.url("/endless")}, make_settings(JOBS_HTTP_MAX_RESPONSE_BYTES="3000"))

    assert result["truncated"] is True
    assert result["body"] == "z" * 3000


def test_binary_body_stored_as_base64(server, make_settings):
    data = bytes(range(256))
    server.reply("/blob", Reply(body=data, headers={"Content-Type": "application/octet-stream"}))

    result = run_job({"url": server.url("/blob")}, make_settings())

    assert result["bodyEncoding"] == "base64"
    assert base64.b64decode(result["body"]) == data


# -- Deadlines ----------------------------------------------------------------------------------------------


def _trickle_body(_request, handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    for _ in range(100):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.5)


def _trickle_status_line(_request, handler):
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.5)


def test_trickled_body_fails_at_job_deadline(server, make_settings):
    server.route("/trickle", _trickle_body)

    started = time.monotonic()
    with pytest.raises(JobTimeout):
        run_job({"url": server.url("/trickle")}, make_settings(), timeout_ms=1500)
    elapsed = time.monotonic() - started

    assert 1.4 <= elapsed < 2.5


def test_trickled_status_line_fails_at_job_deadline(server, make_settings):
    server.route("/trickle-head", _trickle_status_line)

    started = time.monotonic()
    with pytest.raises(JobTimeout):
        run_job({"url": server.url("/trickle-head")}, make_settings(), timeout_ms=1500)
    elapsed = time.monotonic() - started

    assert 1.4 <= elapsed < 2.5


def test_short_payload_timeout_is_retryable(server, make_settings):
    server.route("/trickle", _trickle_body)

    started = time.monotonic()
    with pytest.raises(RetryableHttpError) as caught:
        run_job({"url": server.url("/trickle"), "timeout": 700}, make_settings(), timeout_ms=10_000)
    elapsed = time.monotonic() - started

    assert "timed out after 700 ms" in str(caught.value)
    assert 0.6 <= elapsed < 1.8


def test_job_deadline_caps_longer_payload_timeout(server, make_settings):
    server.route("/trickle", _trickle_body)

    started = time.monotonic()
    with pytest.raises(JobTimeout):
        run_job({"url": server.url("/trickle"), "timeout": 60_000}, make_settings(), timeout_ms=1000)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 2.0


# -- HTTPS ---------------------------------------------------------------------------------------------------


def _write_self_signed_certificate(directory):
    """Write a self-signed certificate for IP 127.0.0.1 and its key, and return both paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nself-jobs test")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path = directory / "server.pem"
    key_path = directory / "server.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certificate_path, key_path


@pytest.fixture
def tls_server(tmp_path):
    certificate_path, key_path = _write_self_signed_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate_path, key_path)
    local_server = LocalHttpServer(tls_context=server_context)
    local_server.certificate_path = certificate_path
    yield local_server
    local_server.close()


@pytest.fixture
def trust_tls_server(tls_server, monkeypatch):
    """Make the client trust the test certificate in place of the system CAs."""
    client_context = ssl.create_default_context(cafile=str(tls_server.certificate_path))
    monkeypatch.setattr(http_request, "_tls_context", lambda: client_context)


def test_https_round_trip(tls_server, trust_tls_server, make_settings):
    tls_server.reply("/secure", Reply(json_body={"secure": True}))

    result = run_job({"url": tls_server.url("/secure")}, make_settings())

    assert result["url"].startswith("https://127.0.0.1:")
    assert json.loads(result["body"]) == {"secure": True}


def test_https_untrusted_certificate_fails_for_good(tls_server, make_settings):
    tls_server.reply("/secure", Reply(json_body={}))

    with pytest.raises(PermanentJobFailure) as caught:
        run_job({"url": tls_server.url("/secure")}, make_settings())

    assert "certificate verification failed" in str(caught.value)
    assert tls_server.requests == []


def test_https_trickled_body_fails_at_job_deadline(tls_server, trust_tls_server, make_settings):
    tls_server.route("/trickle", _trickle_body)

    started = time.monotonic()
    with pytest.raises(JobTimeout):
        run_job({"url": tls_server.url("/trickle")}, make_settings(), timeout_ms=1500)
    elapsed = time.monotonic() - started

    assert 1.4 <= elapsed < 2.5
