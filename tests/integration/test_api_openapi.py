"""The OpenAPI document: loadable, complete, and consistent with the app's routes."""

import re

import pytest
import schemathesis

from nself_jobs.server.app import create_app
from tests.integration.test_dashboard import DashboardClient


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


@pytest.fixture
def document(app):
    page = DashboardClient(app).get("/api/openapi.json")
    assert page.status == 200
    return page.json()


def test_document_loads_in_schemathesis(document):
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14


def test_every_api_route_is_described(app, document):
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    for route in app.routes:
        if not (route.rule.startswith("/api/") or route.rule in ("/health", "/ready", "/metrics")):
            continue
        if route.rule.startswith("/api/schedules"):
            continue  # described by the scheduler's routes, not in this document
        path = re.sub(r"<(\w+)>", lambda match: "{id}" if match.group(1) == "job_id" else "{" + match.group(1) + "}",
                      route.rule)
        assert (route.method, path) in described, f"{route.method} {route.rule} missing from the document"


def test_every_reference_resolves(document):
    text = str(document)
    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in document["components"]["schemas"], name


def test_every_operation_documents_errors(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path in ("/health", "/ready"):
                continue
            assert "401" in operation["responses"], f"{method} {path}"
            assert "503" in operation["responses"], f"{method} {path}"


def test_security_listed_only_with_token(settings, store):
    from dataclasses import replace
    open_document = DashboardClient(create_app(settings, store=store)).get("/api/openapi.json").json()
    assert "security" not in open_document
    secured = DashboardClient(create_app(replace(settings, api_token="t0ken"), store=store))
    document = secured.get("/api/openapi.json", headers={"Authorization": "Bearer t0ken"}).json()
    assert document["security"] == [{"bearer": []}]
