"""Fixtures of the end-to-end tests: the real server and a worker as subprocesses, on loopback only."""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_for

ARTIFACTS = REPO / "tests" / "artifacts"
TOKEN = "e2e-token-0123456789abcdef"
HANDLER_MODULES = "tests.fixtures.sample_jobs,tests.e2e.dashboard_jobs"


class ApiClient:
    """JSON requests to the plugin's server on 127.0.0.1, with the bearer token when one is set."""

    def __init__(self, base_url, token=None):
        self.base_url = base_url
        self.token = token

    def request(self, method, path, body=None, headers=None):
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def submit(self, job_type, payload=None, **options):
        status, body = self.request("POST", "/api/jobs", {"type": job_type, "payload": payload or {},
                                                          "options": options})
        assert status == 201, body
        return body["id"]

    def status_of(self, job_id):
        return self.request("GET", f"/api/jobs/{job_id}")[1].get("status")


def server_ready(base_url):
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def plugin_server(environ, store, start_plugin):
    """Start ``server`` and ``worker`` with JOBS_API_TOKEN set; return an ApiClient for the server."""
    extra = {"JOBS_API_TOKEN": TOKEN, "JOBS_HANDLER_MODULES": HANDLER_MODULES, "JOBS_BIND_HOST": "127.0.0.1"}
    base_url = f"http://127.0.0.1:{environ['JOBS_DASHBOARD_PORT']}"
    server = start_plugin("server", extra_env=extra)
    start_plugin("worker", "-c", "2", extra_env=extra)
    wait_for(lambda: server_ready(base_url), timeout_s=30, message=f"the server on {base_url}\n{server.output()}")
    return ApiClient(base_url, TOKEN)


@pytest.fixture
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


CHROMIUM = os.environ.get("JOBS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    """A headless Debian Chromium driven by Playwright; skipped where either is missing."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM}; install Debian's chromium package (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import playwright.sync_api as playwright_api
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
