"""Requests scoped by X-App-Name or ?app=: lists, job lookups and actions see one app's jobs."""

import uuid
from datetime import datetime, timezone

import pytest

from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from tests.conftest import drain_history, job_status
from tests.integration.test_dashboard import DashboardClient, failed_rows, insert_history

SHOP = {"X-App-Name": "shop"}


@pytest.fixture
def client(settings, store):
    return DashboardClient(create_app(settings, store=store))


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def submit(client, headers=None, **options):
    body = b'{"type": "test-echo", "options": %s}' % (str(options).replace("'", '"').encode())
    page = client.request("POST", "/api/jobs", body=body, headers=headers)
    assert page.status == 201
    return page.json()["id"]


def test_job_of_other_app_is_404(client):
    job_id = submit(client, SHOP)
    assert client.get(f"/api/jobs/{job_id}").status == 404
    assert client.get(f"/api/jobs/{job_id}?app=blog").status == 404
    assert client.get(f"/api/jobs/{job_id}", headers=SHOP).json()["account"] == "shop"
    assert client.get(f"/api/jobs/{job_id}?app=Shop").status == 200


def test_job_of_other_app_404_from_history(client, store):
    job_id = str(uuid.uuid4())
    insert_history(store, [{"id": job_id, "type": "test-echo", "status": "completed", "account": "shop",
                            "completed_at": datetime.now(timezone.utc)}])
    assert client.get(f"/api/jobs/{job_id}").status == 404
    assert client.get(f"/api/jobs/{job_id}", headers=SHOP).status == 200


def test_actions_on_other_app_job_are_404(client, queue):
    job_id = submit(client, SHOP, delay=60000)
    assert client.request("DELETE", f"/api/jobs/{job_id}").status == 404
    assert client.request("POST", f"/api/jobs/{job_id}/promote").status == 404
    assert client.request("POST", f"/api/jobs/{job_id}/retry").status == 404
    assert job_status(queue, job_id) == "delayed"
    assert client.request("POST", f"/api/jobs/{job_id}/promote", headers=SHOP).status == 200


def test_lists_filtered_by_app(client, queue, store):
    mine = submit(client)
    theirs = submit(client, SHOP)
    drain_history(queue.redis, store)
    primary = [job["id"] for job in client.get("/api/jobs").json()["jobs"]]
    shop = [job["id"] for job in client.get("/api/jobs", headers=SHOP).json()["jobs"]]
    assert primary == [mine]
    assert shop == [theirs]
    assert theirs[:8] not in client.get("/dashboard/jobs").text
    assert theirs[:8] in client.get("/dashboard/jobs?app=shop").text


def test_api_failed_pages_10_10_5(client, store):
    rows, ids = failed_rows(25, datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc))
    insert_history(store, rows)
    pages = []
    cursor = None
    for _ in range(5):
        query = "/api/jobs?status=failed&pageSize=10" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(query).json()
        pages.append([job["id"] for job in body["jobs"]])
        assert body["total"] == 25
        assert body["totalPages"] == 3
        cursor = body["nextCursor"]
        if cursor is None:
            break
    newest_first = list(reversed(ids))
    assert pages == [newest_first[:10], newest_first[10:20], newest_first[20:]]


def test_delete_with_remove_true(client, queue, settings, store):
    from tests.integration.test_dashboard import run_jobs
    job_id = submit(client)
    run_jobs(settings)
    assert client.request("DELETE", f"/api/jobs/{job_id}").status == 409
    removed = client.request("DELETE", f"/api/jobs/{job_id}?remove=true")
    assert removed.status == 200
    assert removed.json() == {"id": job_id, "status": "removed"}
    assert queue.get_job(job_id) is None
    drain_history(queue.redis, store)
    assert client.get(f"/api/jobs/{job_id}").json()["status"] == "completed"
    assert client.request("DELETE", f"/api/jobs/{job_id}?remove=maybe").status == 422


@pytest.mark.parametrize("query", [
    "cursor=%00", "cursor=MjAyNi0wMS0wNVQxMjowMDowMHxub3QtYS11dWlk", "type=a%00b", "status=nope",
    "pageSize=0", "pageSize=x", "cursor=!!!",
])
def test_bad_list_parameters_are_422(client, query):
    page = client.get("/api/jobs?" + query)
    assert page.status == 422, page.text
