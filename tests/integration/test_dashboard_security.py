"""Token checks, login sessions, CSRF and security headers, in-process."""

import re
from dataclasses import replace
from http.cookies import SimpleCookie
from urllib.parse import quote

import pytest

from nself_jobs.server.app import create_app
from nself_jobs.server.security import LOGIN_FAILURES_ALLOWED, SESSION_COOKIE
from tests.integration.test_dashboard import DashboardClient

TOKEN = "s3cret-tökén"
BEARER = {"Authorization": "Bearer " + TOKEN.encode("utf-8").decode("latin-1")}


@pytest.fixture
def secured_app(settings, store):
    return create_app(replace(settings, api_token=TOKEN), store=store)


@pytest.fixture
def client(secured_app):
    return DashboardClient(secured_app)


def log_in(client, token=TOKEN, next_path="/dashboard"):
    form = client.get("/dashboard/login?next=" + quote(next_path, safe=""))
    return client.request("POST", "/dashboard/login", form={"csrf": form.csrf(), "token": token, "next": next_path})


def session_cookie(page):
    for header in page.set_cookies():
        cookie = SimpleCookie(header)
        if SESSION_COOKIE in cookie:
            return header
    return None


# ------------------------------------------------------------------ API token


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/jobs"), ("GET", "/api/stats"), ("GET", "/api/queues"), ("POST", "/api/queues/default/pause"),
    ("GET", "/metrics"), ("GET", "/api/openapi.json"), ("GET", "/api/schedules"),
    ("GET", "/api/jobs/6f1c0e2a-8b5e-4c1e-9d0a-1b2c3d4e5f60"),
])
def test_api_requires_bearer_token(client, method, path):
    page = client.request(method, path)
    assert page.status == 401
    assert page.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in page.json()["error"]


def test_api_accepts_token_and_rejects_wrong_one(client):
    assert client.get("/api/stats", headers=BEARER).status == 200
    assert client.get("/api/stats", headers={"Authorization": "Bearer wrong"}).status == 401
    assert client.get("/api/stats", headers={"Authorization": "Basic " + TOKEN}).status == 401
    assert client.get("/api/stats", headers={"Authorization": "Bearer " + TOKEN + "x"}).status == 401


def test_health_and_ready_stay_open(client):
    assert client.get("/health").status == 200
    assert client.get("/ready").status == 200


def test_no_token_configured_leaves_api_open(settings, store):
    app = create_app(settings, store=store)
    assert DashboardClient(app).get("/api/stats").status == 200


def test_session_cookie_does_not_open_api(client):
    log_in(client)
    assert client.get("/api/stats").status == 401


# ------------------------------------------------------------------ dashboard login


def test_dashboard_redirects_to_login(client):
    page = client.get("/dashboard/jobs?status=failed")
    assert page.status == 303
    assert page.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fjobs%3Fstatus%3Dfailed"
    assert client.get("/dashboard/login").status == 200
    assert client.get("/dashboard/static/dashboard.css").status == 200


def test_login_sets_strict_httponly_cookie(client):
    page = log_in(client, next_path="/dashboard/failures")
    assert page.status == 303
    assert page.headers["location"] == "/dashboard/failures"
    header = session_cookie(page)
    assert "HttpOnly" in header
    assert "samesite=strict" in header.lower()
    assert "Path=/dashboard" in header
    assert "Secure" not in header
    assert client.get("/dashboard").status == 200


def test_cookie_secure_over_https(secured_app):
    client = DashboardClient(secured_app, scheme="https")
    assert "Secure" in session_cookie(log_in(client))


def test_wrong_token_is_401_and_sets_no_session(client):
    page = log_in(client, token="guess")
    assert page.status == 401
    assert "Wrong token" in page.text
    assert session_cookie(page) is None
    assert client.get("/dashboard").status == 303


def test_repeated_failures_throttled(client):
    for _ in range(LOGIN_FAILURES_ALLOWED):
        assert log_in(client, token="guess").status == 401
    assert log_in(client).status == 429
    assert SESSION_COOKIE not in client.cookies


@pytest.mark.parametrize("value", [
    "", "garbage", "9999999999.nonce.00", "1.nonce.{signature}",
])
def test_forged_or_expired_session_rejected(client, secured_app, value):
    if "{signature}" in value:
        body = "1.nonce"
        value = f"{body}.{secured_app.security._sign(secured_app.security._session_key, body)}"
    client.cookies[SESSION_COOKIE] = value
    assert client.get("/dashboard").status == 303


def test_session_of_other_token_rejected(settings, store):
    first = DashboardClient(create_app(replace(settings, api_token="first-token"), store=store))
    log_in(first, token="first-token")
    second = DashboardClient(create_app(replace(settings, api_token="second-token"), store=store))
    second.cookies = dict(first.cookies)
    assert second.get("/dashboard").status == 303


def test_bearer_header_opens_dashboard(client):
    assert client.get("/dashboard", headers=BEARER).status == 200


def test_logout_ends_session(client):
    log_in(client)
    page = client.post_form("/dashboard/logout")
    assert page.status == 303
    assert client.get("/dashboard").status == 303


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/api/jobs", "/dashboard\\x"])
def test_login_never_redirects_outside_dashboard(client, target):
    page = log_in(client, next_path=target)
    assert page.headers["location"] == "/dashboard"


def test_post_without_session_is_401(client):
    page = client.request("POST", "/dashboard/queues/default/pause", form={})
    assert page.status == 401


# ------------------------------------------------------------------ CSRF


@pytest.fixture
def open_client(settings, store):
    return DashboardClient(create_app(settings, store=store))


def test_post_without_csrf_token_rejected(open_client, queue_paused):
    page = open_client.post_form("/dashboard/queues/default/pause", csrf_from=None)
    assert page.status == 403
    assert "CSRF" in page.text
    assert not queue_paused()


def test_post_with_token_of_other_browser_rejected(open_client, settings, store, queue_paused):
    other = DashboardClient(open_client.app)
    token = other.get("/dashboard").csrf()
    open_client.get("/dashboard")
    page = open_client.request("POST", "/dashboard/queues/default/pause", form={"csrf": token})
    assert page.status == 403
    assert not queue_paused()


def test_post_from_other_origin_rejected(open_client, queue_paused):
    page = open_client.post_form("/dashboard/queues/default/pause",
                                 headers={"Origin": "https://evil.example"})
    assert page.status == 403
    assert "Origin" in page.text
    assert not queue_paused()


def test_post_with_token_and_same_origin_accepted(open_client, queue_paused):
    page = open_client.post_form("/dashboard/queues/default/pause", headers={"Origin": "http://127.0.0.1:3105"})
    assert page.status == 303
    assert queue_paused()


def test_login_form_needs_csrf(client):
    page = client.request("POST", "/dashboard/login", form={"token": TOKEN})
    assert page.status == 403


@pytest.fixture
def queue_paused(settings):
    from nself_jobs.queue import JobQueue
    connection = JobQueue.from_settings(settings).redis
    return lambda: connection.sismember("nself:jobs:paused", "default")


# ------------------------------------------------------------------ headers


@pytest.mark.parametrize("method, path", [
    ("GET", "/health"), ("GET", "/api/stats"), ("GET", "/api/jobs/nope"), ("GET", "/no/such/route"),
    ("PUT", "/api/stats"), ("GET", "/dashboard"), ("GET", "/dashboard/jobs/nope"),
    ("GET", "/dashboard/static/dashboard.js"), ("GET", "/metrics"),
])
def test_security_headers_on_every_response(open_client, method, path):
    page = open_client.request(method, path)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"


def test_pages_have_no_inline_script(open_client):
    for path in ("/dashboard", "/dashboard/jobs", "/dashboard/failures", "/dashboard/schedules"):
        text = open_client.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)", text) == []
        assert " style=" not in text
        assert " onclick=" not in text


def test_dashboard_pages_not_cached(open_client):
    assert open_client.get("/dashboard").headers["cache-control"] == "no-store"
    assert "max-age" in open_client.get("/dashboard/static/dashboard.css").headers["cache-control"]
