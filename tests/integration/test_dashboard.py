"""Dashboard pages in-process, on a real Redis and PostgreSQL: content, escaping, Unicode, filters, pages.

``DashboardClient`` keeps cookies and sends form posts the way a browser does;
the other dashboard test files import it from here.
"""

import html
import io
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import pytest
import redis
from psycopg.types.json import Jsonb

from nself_jobs import jobtypes
from nself_jobs.errors import JobFailed
from nself_jobs.jobtypes import JobType
from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from nself_jobs.worker import Worker
from tests.conftest import drain_history, submit_job

UNICODE_TYPE = "rapport-été-中文"
UNICODE_DESCRIPTION = "中文 ✓"
UNICODE_ERROR = "glāžšķūņŗūķīšī"
SCRIPT = "<script>alert(1)</script>"


class Page:
    """One response: status, headers (repeated ones as lists), body bytes and text."""

    def __init__(self, status, headers, body):
        self.status = int(status.split()[0])
        self.header_list = headers
        self.headers = {}
        for name, value in headers:
            self.headers.setdefault(name.lower(), value)
        self.body = body
        self.text = body.decode("utf-8")

    def json(self):
        return json.loads(self.body)

    def set_cookies(self):
        return [value for name, value in self.header_list if name.lower() == "set-cookie"]

    def csrf(self):
        match = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert match, "page has no CSRF field"
        return match.group(1)


class DashboardClient:
    """A cookie-keeping WSGI client for the dashboard."""

    def __init__(self, app, scheme="http", host="127.0.0.1:3105"):
        self.app = app
        self.scheme = scheme
        self.host = host
        self.cookies = {}

    def request(self, method, path, form=None, body=None, headers=None):
        path, _, query = path.partition("?")
        if form is not None:
            data = urlencode(form).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            data = body or b""
            content_type = "application/json"
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "CONTENT_LENGTH": str(len(data)), "CONTENT_TYPE": content_type,
                   "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": self.scheme, "HTTP_HOST": self.host}
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        setup_testing_defaults(environ)
        captured = {}

        def start_response(status, response_headers, exc_info=None):
            captured["status"] = status
            captured["headers"] = response_headers

        chunks = self.app(environ, start_response)
        data = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        page = Page(captured["status"], captured["headers"], data)
        for header in page.set_cookies():
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] in ("-1", "0") or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return page

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post_form(self, path, form=None, csrf_from="/dashboard", headers=None):
        """POST a form with the CSRF token of the page ``csrf_from`` (None: send no token)."""
        form = dict(form or {})
        if csrf_from is not None:
            form["csrf"] = self.get(csrf_from).csrf()
        return self.request("POST", path, form=form, headers=headers)


def run_jobs(settings, queues=("default",)):
    """Run every waiting job in this process, then return."""
    Worker(settings, list(queues)).work(burst=True)


def insert_history(store, rows):
    """Insert history rows straight into ``jobs``; each row gives at least id, type and status."""
    with store.connect() as connection:
        for row in rows:
            values = {"account": "primary", "queue": "default", "payload": {}, "attempts": 1, "max_attempts": 1,
                      "completed_at": None, "last_error": None, "created_at": datetime.now(timezone.utc)}
            values.update(row)
            values["payload"] = Jsonb(values["payload"])
            connection.execute(
                "INSERT INTO jobs (id, source_account_id, type, queue, status, priority, payload, attempts, "
                "max_attempts, created_at, completed_at, last_error) VALUES (%(id)s, %(account)s, %(type)s, "
                "%(queue)s, %(status)s, 3, %(payload)s, %(attempts)s, %(max_attempts)s, %(created_at)s, "
                "%(completed_at)s, %(last_error)s)", values)


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


@pytest.fixture
def client(app):
    return DashboardClient(app)


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


@pytest.fixture
def unicode_type():
    def fail(payload, context):
        if payload.get("fail"):
            raise JobFailed(UNICODE_ERROR)
        return {"report": payload.get("title")}

    jobtypes.register(JobType(UNICODE_TYPE, "A job type with a non-ASCII name.", lambda payload, settings: payload,
                              fail))
    return UNICODE_TYPE


# ------------------------------------------------------------------ overview


def test_overview_shows_queues_charts_workers(client, queue, settings, store):
    submit_job(queue, settings, queue_name="high-priority")
    submit_job(queue, settings)
    submit_job(queue, settings, "test-fail", {"message": "boom"}, maxRetries=0)
    run_jobs(settings)
    drain_history(queue.redis, store)

    page = client.get("/dashboard")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    for name in ("high-priority", "default", "low-priority"):
        assert f'href="/dashboard/queues/{name}"' in page.text
    assert page.text.count("<svg") == 2
    assert "Completed, last 24 h: 1" in page.text
    assert "Failed, last 24 h: 1" in page.text
    assert page.text.count('class="bar completed"') == 24
    assert "No worker has sent a heartbeat" in page.text


def test_overview_lists_live_worker(client, queue):
    queue.redis.zadd("nself:jobs:workers", {"host-1.4242": queue.clock()})
    queue.redis.set("nself:jobs:worker:host-1.4242", json.dumps({"queues": ["default"], "pid": 4242, "job": None}),
                    ex=15)
    page = client.get("/dashboard")
    assert "host-1.4242" in page.text
    assert ">4242<" in page.text
    assert "1</span><span class=\"label\">workers alive" in page.text


def test_overview_without_postgres_shows_live_counts(settings, queue):
    from nself_jobs.history import HistoryStore
    down = HistoryStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=1)
    submit_job(queue, settings)
    page = DashboardClient(create_app(settings, store=down)).get("/dashboard")
    assert page.status == 200
    assert "charts are missing" in page.text
    assert '<a href="/dashboard/queues/default?status=pending">1</a>' in page.text


def test_overview_chart_bars_in_right_hour(client, store):
    now = datetime.now(timezone.utc)
    insert_history(store, [
        {"id": str(uuid.uuid4()), "type": "test-echo", "status": "completed", "completed_at": now},
        {"id": str(uuid.uuid4()), "type": "test-echo", "status": "failed", "completed_at": now - timedelta(hours=3)},
        {"id": str(uuid.uuid4()), "type": "test-echo", "status": "failed", "completed_at": now - timedelta(hours=30)},
    ])
    page = client.get("/dashboard")
    assert f"{now:%H}:00-" in page.text
    assert ": 1 completed</title>" in page.text
    assert "Failed, last 24 h: 1" in page.text


# ------------------------------------------------------------------ Unicode and escaping


def test_unicode_round_trips_byte_exact(client, queue, settings, store, unicode_type):
    body = {"type": unicode_type, "payload": {"title": "été", "fail": True},
            "options": {"description": UNICODE_DESCRIPTION, "maxRetries": 0}}
    created = client.request("POST", "/api/jobs", body=json.dumps(body, ensure_ascii=False).encode("utf-8"))
    assert created.status == 201
    job_id = created.json()["id"]
    run_jobs(settings)
    drain_history(queue.redis, store)

    redis_bytes = redis.Redis.from_url(settings.redis_url).hgetall(f"rq:job:{job_id}")
    assert redis_bytes[b"nj_type"] == unicode_type.encode("utf-8")
    assert redis_bytes[b"description"] == UNICODE_DESCRIPTION.encode("utf-8")
    assert redis_bytes[b"nj_error"] == UNICODE_ERROR.encode("utf-8")

    row, _, failures = store.job_history(job_id)
    assert row["type"] == unicode_type
    assert row["options"]["description"] == UNICODE_DESCRIPTION
    assert row["last_error"] == UNICODE_ERROR
    assert failures[0]["error_message"] == UNICODE_ERROR

    shown = client.get(f"/api/jobs/{job_id}")
    assert unicode_type.encode("utf-8") in shown.body
    assert shown.json()["error"] == UNICODE_ERROR
    assert shown.json()["options"]["description"] == UNICODE_DESCRIPTION

    job_page = client.get(f"/dashboard/jobs/{job_id}")
    for text in (unicode_type, UNICODE_DESCRIPTION, UNICODE_ERROR):
        assert text.encode("utf-8") in job_page.body
    listing = client.get("/dashboard/jobs?" + urlencode({"type": unicode_type}))
    assert unicode_type.encode("utf-8") in listing.body
    assert job_id[:8] in listing.text
    failures_page = client.get("/dashboard/failures")
    assert UNICODE_ERROR.encode("utf-8") in failures_page.body


def test_script_in_type_and_payload_shown_as_text(client, queue, settings, store):
    jobtypes.register(JobType(SCRIPT, "A hostile type name.", lambda payload, settings: payload,
                              lambda payload, context: None))
    job_id = client.request("POST", "/api/jobs", body=json.dumps(
        {"type": SCRIPT, "payload": {"note": SCRIPT}, "options": {"description": SCRIPT}}).encode()).json()["id"]
    insert_history(store, [{"id": str(uuid.uuid4()), "type": "test-echo", "status": "failed",
                            "completed_at": datetime.now(timezone.utc), "last_error": SCRIPT}])
    drain_history(queue.redis, store)

    pages = [client.get(f"/dashboard/jobs/{job_id}"), client.get("/dashboard/jobs"),
             client.get("/dashboard/jobs?status=failed"), client.get("/dashboard/failures"),
             client.get("/dashboard")]
    for page in pages:
        assert page.status == 200
        assert SCRIPT not in page.text
    assert html.escape(SCRIPT) in pages[0].text
    assert html.escape(SCRIPT) in pages[1].text
    assert html.escape(SCRIPT) in pages[3].text


# ------------------------------------------------------------------ job page


def test_job_page_shows_attempts_and_stack(client, queue, settings, store):
    job_id = submit_job(queue, settings, "test-fail", {"message": "disk full", "unexpected": True}, maxRetries=1)
    run_jobs(settings)
    drain_history(queue.redis, store)
    page = client.get(f"/dashboard/jobs/{job_id}")
    assert page.status == 200
    assert "2/2" in page.text
    assert page.text.count("disk full") >= 3
    assert page.text.count("<summary>Stack trace</summary>") == 2
    assert "Traceback" in page.text
    assert f'action="/dashboard/jobs/{job_id}/retry"' in page.text


def test_job_page_of_other_app_is_404(client, queue, settings):
    job_id = submit_job(queue, settings)
    assert client.get(f"/dashboard/jobs/{job_id}?app=shop").status == 404
    assert client.get(f"/dashboard/jobs/{job_id}").status == 200
    assert client.get("/dashboard/jobs/not-a-uuid").status == 404


def test_job_page_from_history_only(client, store):
    job_id = str(uuid.uuid4())
    insert_history(store, [{"id": job_id, "type": "test-echo", "status": "completed",
                            "completed_at": datetime.now(timezone.utc), "payload": {"k": "v"}}])
    page = client.get(f"/dashboard/jobs/{job_id}")
    assert page.status == 200
    assert "Redis no longer holds this job" in page.text
    assert "/retry" not in page.text.split("<main", 1)[1]


# ------------------------------------------------------------------ filters


def test_filter_by_type_status_and_text(client, queue, settings, store):
    submit_job(queue, settings, payload={"value": "100%"})
    submit_job(queue, settings, payload={"value": "a_b"})
    submit_job(queue, settings, payload={"value": "axb"})
    submit_job(queue, settings, "test-sleep", payload={"value": "axb"})
    drain_history(queue.redis, store)

    def matching_count(query):
        page = client.get("/dashboard/jobs?" + urlencode(query))
        assert page.status == 200
        return int(re.search(r"([\d,]+)\+? jobs? in the history match", page.text).group(1).replace(",", ""))

    assert matching_count({}) == 4
    assert matching_count({"type": "test-sleep"}) == 1
    assert matching_count({"q": "_"}) == 1
    assert matching_count({"q": "%"}) == 1
    assert matching_count({"q": "axb"}) == 2
    assert matching_count({"q": "AXB", "type": "test-echo"}) == 1
    assert matching_count({"status": "pending"}) == 4
    assert "No jobs in the history match" in client.get("/dashboard/jobs?status=failed").text


def test_text_search_matches_error(client, store):
    insert_history(store, [
        {"id": str(uuid.uuid4()), "type": "test-echo", "status": "failed", "last_error": "SMTP 550 mailbox",
         "completed_at": datetime.now(timezone.utc)},
        {"id": str(uuid.uuid4()), "type": "test-echo", "status": "failed", "last_error": "timeout",
         "completed_at": datetime.now(timezone.utc)},
    ])
    page = client.get("/dashboard/jobs?status=failed&q=mailbox")
    assert "1 job in the history match" in page.text


def test_invalid_filters_are_422_or_404(client):
    assert client.get("/dashboard/jobs?status=nope").status == 422
    assert client.get("/dashboard/queues/nope").status == 404
    assert client.get("/dashboard/jobs?q=" + "x" * 201).status == 422
    assert client.get("/dashboard/jobs?before=garbage").status == 422
    assert client.get("/dashboard/failures?hours=5").status == 422


# ------------------------------------------------------------------ pagination


def failed_rows(count, start, account="primary"):
    """Failed jobs f01... failing one second apart from ``start``; returns (rows, ids oldest first)."""
    rows = []
    for number in range(1, count + 1):
        at = start + timedelta(seconds=number)
        rows.append({"id": str(uuid.uuid4()), "type": "test-fail", "status": "failed", "created_at": at,
                     "completed_at": at, "last_error": f"f{number:02d}", "account": account})
    return rows, [row["id"] for row in rows]


def ids_on(page):
    return re.findall(r'href="/dashboard/jobs/([0-9a-f-]{36})"', page.text)


def test_failed_pages_10_10_5_without_overlap(client, store):
    rows, ids = failed_rows(25, datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc))
    insert_history(store, rows)
    newest_first = list(reversed(ids))

    first = client.get("/dashboard/jobs?status=failed&pageSize=10")
    assert "25 jobs in the history match" in first.text
    pages = [ids_on(first)]
    current = first
    while True:
        older = re.search(r'href="([^"]+)">Older ›', current.text)
        if not older:
            break
        current = client.get(html.unescape(older.group(1)))
        pages.append(ids_on(current))
    assert [len(page) for page in pages] == [10, 10, 5]
    assert pages[0] == newest_first[:10]
    assert pages[1] == newest_first[10:20]
    assert pages[2] == newest_first[20:]
    assert len(set(sum(pages, []))) == 25

    newer = re.search(r'href="([^"]+)">‹ Newer', current.text)
    back = client.get(html.unescape(newer.group(1)))
    assert ids_on(back) == newest_first[10:20]


def test_pages_stable_while_jobs_arrive(client, store):
    start = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    rows, ids = failed_rows(15, start)
    insert_history(store, rows)
    first = client.get("/dashboard/jobs?status=failed&pageSize=10")
    more, _ = failed_rows(5, start + timedelta(minutes=5))
    insert_history(store, more)
    older = re.search(r'href="([^"]+)">Older ›', first.text).group(1)
    second = client.get(html.unescape(older))
    assert ids_on(second) == list(reversed(ids))[10:]


# ------------------------------------------------------------------ failures and schedules


def test_failures_grouped_by_error(client, store):
    now = datetime.now(timezone.utc)
    rows = [{"id": str(uuid.uuid4()), "type": "send-email", "status": "failed", "last_error": "SMTP 421",
             "completed_at": now - timedelta(minutes=index)} for index in range(4)]
    rows.append({"id": str(uuid.uuid4()), "type": "http-request", "status": "failed", "last_error": "HTTP 500",
                 "completed_at": now})
    rows.append({"id": str(uuid.uuid4()), "type": "http-request", "status": "failed", "last_error": "old",
                 "completed_at": now - timedelta(days=3)})
    insert_history(store, rows)
    page = client.get("/dashboard/failures")
    assert page.status == 200
    table = page.text.split("<tbody>", 1)[1]
    assert table.index("SMTP 421") < table.index("HTTP 500")
    assert ">4</a>" in table
    assert "old" not in table
    assert rows[0]["id"][:8] in table
    assert "/dashboard/retry?status=failed&amp;error=SMTP+421" in table
    week = client.get("/dashboard/failures?hours=168")
    assert "old" in week.text.split("<tbody>", 1)[1]


def test_schedules_page_lists_next_runs(client, app):
    created = client.request("POST", "/api/schedules", body=json.dumps(
        {"name": "nightly-report", "type": "test-echo", "cron": "0 3 * * *", "timezone": "UTC"}).encode())
    assert created.status == 201, created.text
    page = client.get("/dashboard/schedules")
    assert page.status == 200
    assert "nightly-report" in page.text
    assert page.text.count(" 03:00:00 UTC</div>") == 3
    assert 'action="/dashboard/schedules/nightly-report/disable"' in page.text
    assert "nightly-report" not in client.get("/dashboard/schedules?app=shop").text


# ------------------------------------------------------------------ static files and disabled dashboard


def test_static_files_served_with_type(client):
    css = client.get("/dashboard/static/dashboard.css")
    assert css.status == 200
    assert css.headers["content-type"].startswith("text/css")
    js = client.get("/dashboard/static/dashboard.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert client.get("/dashboard/static/../app.py").status == 404
    assert client.get("/dashboard/static/layout.tpl").status == 404


def test_dashboard_disabled_is_404(settings, store):
    from dataclasses import replace
    app = create_app(replace(settings, dashboard_enabled=False), store=store)
    assert DashboardClient(app).get("/dashboard").status == 404


def test_custom_dashboard_path(settings, store):
    from dataclasses import replace
    app = create_app(replace(settings, dashboard_path="/ops/jobs"), store=store)
    page = DashboardClient(app).get("/ops/jobs/failures")
    assert page.status == 200
    assert 'href="/ops/jobs/static/dashboard.css' in page.text
