"""Validation of http-request payloads at submission, and the helpers it uses. No traffic is sent."""

import base64
from datetime import datetime, timezone

import pytest

from nself_jobs import jobtypes
from nself_jobs.errors import ValidationError
from nself_jobs.jobtypes import http_request
from nself_jobs.jobtypes.http_request import decode_body, parse_retry_after, parse_status_patterns, status_matches
from nself_jobs.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={}, project_dir=tmp_path)


@pytest.fixture
def make_settings(tmp_path):
    def build(**environ):
        return load_settings(environ=environ, project_dir=tmp_path)

    return build


def rejected_field(payload, settings):
    with pytest.raises(ValidationError) as caught:
        http_request.validate(payload, settings)
    return caught.value


def test_registry_finds_http_request():
    assert jobtypes.get("http-request") is http_request.JOB_TYPE


def test_defaults_filled_in(settings):
    normalised = http_request.validate({"url": "https://api.example.com/v1"}, settings)

    assert normalised == {
        "method": "GET",
        "url": "https://api.example.com/v1",
        "headers": {},
        "query": {},
        "followRedirects": True,
        "maxRedirects": 5,
        "expectStatus": ["2xx"],
        "retryOn": [429, 502, 503, 504],
    }


def test_method_normalised_to_upper_case(settings):
    normalised = http_request.validate({"method": "patch", "url": "https://example.com/"}, settings)

    assert normalised["method"] == "PATCH"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "", 5, None])
def test_invalid_method_rejected(settings, method):
    error = rejected_field({"method": method, "url": "https://example.com/"}, settings)

    assert error.field == "payload.method"
    assert "GET, POST" in error.message


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        (None, "non-empty string"),
        ("", "non-empty string"),
        ("ftp://example.com/file", "http:// or https://"),
        ("example.com/path", "http:// or https://"),
        ("https://user:secret@example.com/", "headers.Authorization"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/a\nb", "control characters"),
        ("https://example.com\\@evil.example/", "backslashes"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://1.2.3.999/", "larger than 255"),
        ("https://1.2.300.4/", "larger than 255"),
        ("https://08.0.0.1/", "octal"),
        ("https://example.com:0/", "port 0"),
        ("https://" + "a" * 9000 + ".com/", "longer than 8192"),
    ],
)
def test_invalid_url_rejected(settings, url, hint):
    error = rejected_field({"url": url}, settings)

    assert error.field == "payload.url"
    assert hint in error.message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",
        "http://0xa9fea9fe/",
        "http://169.254.43518/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
    ],
)
def test_metadata_literal_rejected_at_submission(settings, url):
    error = rejected_field({"url": url}, settings)

    assert error.field == "payload.url"
    assert "JOBS_HTTP_ALLOW_LINK_LOCAL" in error.message


def test_denied_hostname_rejected_at_submission(make_settings):
    settings = make_settings(JOBS_HTTP_DENY_HOSTS="*.corp.example")

    error = rejected_field({"url": "https://db.corp.example/"}, settings)

    assert error.field == "payload.url"
    assert "JOBS_HTTP_DENY_HOSTS" in error.message


def test_hostname_outside_allow_list_rejected_at_submission(make_settings):
    settings = make_settings(JOBS_HTTP_ALLOW_HOSTS="api.example.com")

    error = rejected_field({"url": "https://other.example.com/"}, settings)

    assert error.field == "payload.url"
    assert "JOBS_HTTP_ALLOW_HOSTS" in error.message


def test_unknown_field_rejected(settings):
    error = rejected_field({"url": "https://example.com/", "header": {"A": "b"}}, settings)

    assert error.field == "payload.header"
    assert "known fields" in error.message


def test_payload_must_be_object(settings):
    error = rejected_field(["https://example.com/"], settings)

    assert error.field == "payload"


@pytest.mark.parametrize(
    ("headers", "field", "hint"),
    [
        ({"X-Count": 3}, "payload.headers.X-Count", "quote numbers"),
        ({"X-Inject": "a\r\nEvil: 1"}, "payload.headers.X-Inject", "CR, LF"),
        ({"X-Null": "a\x00b"}, "payload.headers.X-Null", "control characters"),
        ({"Bad Name": "v"}, "payload.headers.Bad Name", "invalid header name"),
        ({"Host": "internal"}, "payload.headers.Host", "set by the client"),
        ({"Content-Length": "5"}, "payload.headers.Content-Length", "set by the client"),
        ({"X-Emoji": "\U0001f600"}, "payload.headers.X-Emoji", "Latin-1"),
    ],
)
def test_invalid_headers_rejected(settings, headers, field, hint):
    error = rejected_field({"url": "https://example.com/", "headers": headers}, settings)

    assert error.field == field
    assert hint in error.message


def test_headers_must_be_object(settings):
    error = rejected_field({"url": "https://example.com/", "headers": ["X-A: b"]}, settings)

    assert error.field == "payload.headers"


def test_tab_allowed_in_header_value(settings):
    normalised = http_request.validate({"url": "https://example.com/", "headers": {"X-A": "a\tb"}}, settings)

    assert normalised["headers"] == {"X-A": "a\tb"}


def test_invalid_query_value_rejected(settings):
    error = rejected_field({"url": "https://example.com/", "query": {"filter": {"a": 1}}}, settings)

    assert error.field == "payload.query.filter"


def test_json_and_body_together_rejected(settings):
    error = rejected_field({"url": "https://example.com/", "json": {"a": 1}, "body": "a=1"}, settings)

    assert error.field == "payload.body"
    assert "payload.json" in error.message


def test_body_must_be_string(settings):
    error = rejected_field({"url": "https://example.com/", "body": {"a": 1}}, settings)

    assert error.field == "payload.body"


def test_json_body_kept(settings):
    normalised = http_request.validate({"url": "https://example.com/", "json": [1, "two"]}, settings)

    assert normalised["json"] == [1, "two"]


@pytest.mark.parametrize("timeout", [0, -5, "100", True, 1.5, 86_400_001])
def test_invalid_timeout_rejected(settings, timeout):
    error = rejected_field({"url": "https://example.com/", "timeout": timeout}, settings)

    assert error.field == "payload.timeout"


@pytest.mark.parametrize("max_redirects", [-1, 21, "3", False])
def test_invalid_max_redirects_rejected(settings, max_redirects):
    error = rejected_field({"url": "https://example.com/", "maxRedirects": max_redirects}, settings)

    assert error.field == "payload.maxRedirects"


def test_follow_redirects_must_be_boolean(settings):
    error = rejected_field({"url": "https://example.com/", "followRedirects": "yes"}, settings)

    assert error.field == "payload.followRedirects"


# -- Status patterns ---------------------------------------------------------------------------------------------


def test_status_patterns_normalised():
    patterns = parse_status_patterns(["2XX", "200", 201, " 300-304 "], "payload.expectStatus")

    assert patterns == ["2xx", 200, 201, "300-304"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([], "payload.expectStatus"),
        ("2xx", "payload.expectStatus"),
        (["6xx"], "payload.expectStatus[0]"),
        ([200, 99], "payload.expectStatus[1]"),
        (["abc"], "payload.expectStatus[0]"),
        (["300-200"], "payload.expectStatus[0]"),
        ([True], "payload.expectStatus[0]"),
    ],
)
def test_invalid_status_patterns_rejected(value, field):
    with pytest.raises(ValidationError) as caught:
        parse_status_patterns(value, "payload.expectStatus")

    assert caught.value.field == field


def test_invalid_retry_on_names_field(settings):
    error = rejected_field({"url": "https://example.com/", "retryOn": [503, "5x"]}, settings)

    assert error.field == "payload.retryOn[1]"


@pytest.mark.parametrize(
    ("status", "patterns", "expected"),
    [
        (200, ["2xx"], True),
        (299, ["2xx"], True),
        (300, ["2xx"], False),
        (404, [404], True),
        (405, [404], False),
        (302, ["300-304"], True),
        (305, ["300-304"], False),
        (503, [429, "5xx"], True),
    ],
)
def test_status_matches(status, patterns, expected):
    assert status_matches(status, patterns) is expected


# -- Retry-After ---------------------------------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Fri, 02 Jan 2026 03:05:05 GMT", 60.0),
        ("Fri, 02 Jan 2026 03:00:00 GMT", 0.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        (None, None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


# -- Response bodies ------------------------------------------------------------------------------------------------


def test_decode_body_json_as_text():
    assert decode_body(b'{"a": 1}', "application/json", False) == ('{"a": 1}', "text")


def test_decode_body_charset_used():
    assert decode_body("café".encode("latin-1"), "text/plain; charset=iso-8859-1", False) == ("café", "text")


def test_decode_body_binary_as_base64():
    data = b"\x89PNG\r\n\x1a\n\x00\xff"

    text, encoding = decode_body(data, "image/png", False)

    assert encoding == "base64"
    assert base64.b64decode(text) == data


def test_decode_body_undecodable_text_as_base64():
    text, encoding = decode_body(b"\xff\xfe\xfa", None, False)

    assert encoding == "base64"


def test_decode_body_truncated_character_dropped():
    data = "aé".encode("utf-8")[:-1]

    assert decode_body(data, "text/plain", True) == ("a", "text")
