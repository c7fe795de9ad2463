"""Page times of the real server over a large history: 100,000 jobs, then 200,000 failed jobs.

Each page is requested once through the running server and its time printed and
written to tests/artifacts/page-times-*.json. The assert is loose (2 s) because
this is a check against pathological plans (a full sort, a count of every row),
not a benchmark: the target is under 1 s on a 2-core machine.
"""

import json
import time
import urllib.request

import pytest

from tests.conftest import REPO, wait_for

LIMIT_S = 2.0
ARTIFACTS = REPO / "tests" / "artifacts"

pytestmark = pytest.mark.slow

MIXED_HISTORY = """
INSERT INTO jobs (id, source_account_id, type, queue, status, priority, payload, options, attempts, max_attempts,
                  created_at, started_at, completed_at, last_error, updated_at)
SELECT gen_random_uuid(), 'primary',
       (ARRAY['send-email', 'http-request', 'database-backup', 'file-cleanup', 'custom'])[1 + i % 5],
       (ARRAY['high-priority', 'default', 'low-priority'])[1 + i % 3],
       status, 1 + i % 4,
       jsonb_build_object('to', 'user' || i || '@example.test', 'subject', 'Invoice ' || i, 'n', i),
       '{"maxRetries": 3}'::jsonb, 1 + i % 4, 4,
       created, created + interval '1 second',
       CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN created + interval '2 seconds' END,
       CASE WHEN status = 'failed' THEN 'SMTP 45' || (i % 7) || ' temporary failure for user' || i % 50 END,
       created
FROM (SELECT i, now() - i * interval '1 second' AS created,
             (ARRAY['completed', 'completed', 'completed', 'failed', 'pending', 'active', 'delayed',
                    'cancelled'])[1 + i % 8] AS status
      FROM generate_series(1, %(count)s) AS i) AS generated;
INSERT INTO job_results (id, source_account_id, job_id, result, duration_ms, completed_at, attempt_number)
SELECT gen_random_uuid(), source_account_id, id, '{"ok": true}'::jsonb, (abs(hashtext(id::text)) % 5000),
       completed_at, attempts
FROM jobs WHERE status = 'completed';
INSERT INTO job_failures (id, source_account_id, job_id, attempt_number, error_message, error_stack, failed_at)
SELECT gen_random_uuid(), source_account_id, id, attempts, last_error, 'Traceback (most recent call last): ...',
       completed_at
FROM jobs WHERE status = 'failed';
ANALYZE jobs;
ANALYZE job_results;
ANALYZE job_failures;
"""

FAILED_HISTORY = """
INSERT INTO jobs (id, source_account_id, type, queue, status, priority, payload, attempts, max_attempts,
                  created_at, started_at, completed_at, last_error, updated_at)
SELECT gen_random_uuid(), 'primary', (ARRAY['send-email', 'http-request'])[1 + i % 2], 'default', 'failed', 3,
       jsonb_build_object('url', 'https://example.test/hook/' || i), 4, 4,
       now() - i * interval '400 milliseconds', now() - i * interval '400 milliseconds',
       now() - i * interval '400 milliseconds' + interval '1 second',
       'HTTP 50' || (i % 4) || ' from upstream', now()
FROM generate_series(1, %(count)s) AS i;
ANALYZE jobs;
"""


def fill(store, script, count):
    with store.connect() as connection:
        connection.execute(script.replace("%(count)s", str(count)))


def timed_get(url):
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
        status = response.status
    return time.perf_counter() - started, status, body


def measure(base_url, paths):
    times = {}
    for path in paths:
        seconds, status, _ = timed_get(base_url + path)
        assert status == 200, path
        times[path] = round(seconds, 3)
    return times


def report(name, times):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"page-times-{name}.json").write_text(json.dumps(times, indent=2), encoding="utf-8")
    print(f"\npage times, {name}:")
    for path, seconds in times.items():
        print(f"  {seconds * 1000:8.1f} ms  {path}")
    slow = {path: seconds for path, seconds in times.items() if seconds >= LIMIT_S}
    assert not slow, f"pages slower than {LIMIT_S} s: {slow}"


@pytest.fixture
def server_url(environ, store, start_plugin):
    def start():
        base_url = f"http://127.0.0.1:{environ['JOBS_DASHBOARD_PORT']}"
        server = start_plugin("server")

        def ready():
            try:
                return timed_get(base_url + "/health")[1] == 200
            except OSError:
                return False

        wait_for(ready, timeout_s=30, message=f"the server\n{server.output()}")
        return base_url
    return start


def any_job_id(store, status):
    with store.connect() as connection:
        return str(connection.execute("SELECT id FROM jobs WHERE status = %s LIMIT 1", [status]).fetchone()["id"])


def deep_cursor(store, offset):
    """Return the dashboard cursor of the job at ``offset`` in the newest-first list."""
    from nself_jobs.history.listing import encode_cursor
    with store.connect() as connection:
        row = connection.execute("SELECT created_at, id FROM jobs ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
                                 [offset]).fetchone()
    return encode_cursor(row)


def test_pages_with_100k_jobs(store, server_url):
    fill(store, MIXED_HISTORY, 100_000)
    base_url = server_url()
    job_id = any_job_id(store, "failed")
    cursor = deep_cursor(store, 90_000)
    times = measure(base_url, [
        "/dashboard",
        "/dashboard/jobs",
        "/dashboard/queues/default",
        "/dashboard/jobs?status=failed",
        "/dashboard/jobs?status=completed&type=send-email",
        "/dashboard/jobs?q=user99999%40example",
        "/dashboard/jobs?status=failed&q=SMTP+453",
        "/dashboard/jobs?q=no-such-text-anywhere",
        f"/dashboard/jobs?before={cursor}",
        f"/dashboard/jobs/{job_id}",
        "/dashboard/failures",
        "/dashboard/failures?hours=168",
        "/dashboard/schedules",
        "/dashboard/retry?status=failed",
        "/api/jobs",
        "/api/jobs?status=failed&pageSize=100",
        f"/api/jobs/{job_id}",
        "/api/stats",
        "/api/queues",
        "/metrics",
    ])
    report("100k", times)


def test_failed_page_with_200k_failed_jobs(store, server_url):
    fill(store, FAILED_HISTORY, 200_000)
    base_url = server_url()
    times = measure(base_url, [
        "/dashboard/jobs?status=failed",
        "/dashboard/queues/default?status=failed",
        "/api/jobs?status=failed&pageSize=10",
        "/dashboard/failures",
        "/dashboard",
        "/dashboard/retry?status=failed",
        "/metrics",
    ])
    report("200k-failed", times)
