"""Invalid payloads of the five built-in job types, through the REST API and the CLI.

Each payload is sent twice: to ``POST /api/jobs`` of the in-process app, which must
respond with 422 and ``field`` naming the payload field, and to ``nself-jobs submit``,
which must exit 8 with the same field and message on stderr. Neither may queue
anything. URLs that point at cloud metadata addresses are rejected during
validation, so no connection to them is ever opened.
"""

import ipaddress
import json
import socket

import pytest

from nself_jobs.keys import HISTORY_KEY
from nself_jobs.queue import JobQueue
from nself_jobs.server.app import create_app
from tests.conftest import run_plugin
from tests.wsgi import call

EXIT_INVALID_JOB = 8
MESSAGE = {"to": "ann@example.test", "from": "app@example.test", "subject": "Report", "text": "Hello"}


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


def assert_rejected(app, environ, tmp_path, job_type, payload, field):
    """Submit ``payload`` through the API and the CLI and check that both reject it for ``field``."""
    response = call(app, "POST", "/api/jobs", {"type": job_type, "payload": payload})
    assert response.status == 422
    body = response.json()
    assert body["field"] == field

    result = run_plugin(["submit", job_type, "--payload", json.dumps(payload)], environ, tmp_path)
    assert result.returncode == EXIT_INVALID_JOB
    assert f"{field}: {body['error']}" in result.stderr
    assert result.stdout == ""
    return body["error"]


def assert_nothing_queued(queue):
    counts = queue.counts()
    for queue_name, states in counts.items():
        for state, count in states.items():
            assert not count, f"{queue_name} has {count} {state} jobs"
    assert queue.redis.keys("rq:job:*") == []
    assert queue.redis.llen(HISTORY_KEY) == 0


def with_message(**changes):
    payload = dict(MESSAGE, **changes)
    return {name: value for name, value in payload.items() if value is not None}


# ------------------------------------------------------------------ send-email


@pytest.mark.parametrize("payload, field", [
    pytest.param(with_message(to=None), "payload.to", id="missing-to"),
    pytest.param(with_message(to="ann@example.test\r\nBcc: eve@example.test"), "payload.to", id="to-with-crlf"),
    pytest.param(with_message(to=["ann@example.test", "not-an-address"]), "payload.to[1]", id="to-invalid-address"),
    pytest.param(with_message(cc="bob@example.test\nX-Injected: 1"), "payload.cc", id="cc-with-lf"),
    pytest.param(with_message(subject="Report\r\nBcc: eve@example.test"), "payload.subject", id="subject-with-crlf"),
    pytest.param(with_message(subject="Report\x1b[2J"), "payload.subject", id="subject-with-escape"),
    pytest.param(with_message(replyTo="help@example.test\rX: y"), "payload.replyTo", id="reply-to-with-cr"),
    pytest.param(with_message(**{"from": None}), "payload.from", id="missing-from"),
    pytest.param(with_message(text=None), "payload.text", id="missing-body"),
    pytest.param(with_message(attachments=[{"filename": "a.txt", "content": "not base64!"}]),
                 "payload.attachments[0].content", id="attachment-invalid-base64"),
    pytest.param(with_message(attachments=[{"filename": "a.txt\r\nX: y", "content": "aGk="}]),
                 "payload.attachments[0].filename", id="attachment-name-with-crlf"),
    pytest.param(with_message(attachments=[{"path": "/etc/passwd"}]),
                 "payload.attachments[0].path", id="attachment-path-without-dir"),
])
def test_send_email_invalid_payload(app, queue, environ, tmp_path, payload, field):
    assert_rejected(app, environ, tmp_path, "send-email", payload, field)
    assert_nothing_queued(queue)


# ------------------------------------------------------------------ http-request


@pytest.mark.parametrize("payload, field", [
    pytest.param({}, "payload.url", id="missing-url"),
    pytest.param({"url": "ftp://example.test/file"}, "payload.url", id="ftp-scheme"),
    pytest.param({"url": "file:///etc/passwd"}, "payload.url", id="file-scheme"),
    pytest.param({"url": "gopher://example.test/"}, "payload.url", id="gopher-scheme"),
    pytest.param({"url": "http://user:secret@example.test/"}, "payload.url", id="url-with-credentials"),
    pytest.param({"url": "http://0.0.0.0:8080/"}, "payload.url", id="unspecified-address"),
    pytest.param({"url": "http://example.test/", "method": "TRACE"}, "payload.method", id="unknown-method"),
    pytest.param({"url": "http://example.test/", "headers": {"X-Trace": "a\r\nInjected: 1"}},
                 "payload.headers.X-Trace", id="header-with-crlf"),
    pytest.param({"url": "http://example.test/", "headers": {"Host": "other.example.test"}},
                 "payload.headers.Host", id="host-header"),
    pytest.param({"url": "http://example.test/", "json": {"a": 1}, "body": "a=1"}, "payload.body",
                 id="json-and-body"),
    pytest.param({"url": "http://example.test/", "timeout": 0}, "payload.timeout", id="zero-timeout"),
    pytest.param({"url": "http://example.test/", "retryOn": ["6xx"]}, "payload.retryOn[0]",
                 id="invalid-status-pattern"),
    pytest.param({"url": "http://example.test/", "verify": False}, "payload.verify", id="unknown-field"),
])
def test_http_request_invalid_payload(app, queue, environ, tmp_path, payload, field):
    assert_rejected(app, environ, tmp_path, "http-request", payload, field)
    assert_nothing_queued(queue)


@pytest.fixture
def connections(monkeypatch):
    """Record the address of every socket connect in this process, then connect as usual."""
    addresses = []
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(sock, address):
        addresses.append(address)
        return original_connect(sock, address)

    def connect_ex(sock, address):
        addresses.append(address)
        return original_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return addresses


@pytest.mark.parametrize("url, address", [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://0xa9fea9fe/latest/meta-data/", "169.254.169.254"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "::ffff:a9fe:a9fe"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
    ("http://100.100.100.200/latest/meta-data/", "100.100.100.200"),
    ("http://169.254.170.2/v2/credentials", "169.254.170.2"),
])
def test_metadata_url_rejected_without_connecting(app, queue, environ, tmp_path, connections, url, address):
    message = assert_rejected(app, environ, tmp_path, "http-request", {"url": url}, "payload.url")

    assert message.startswith(f"request to {address} rejected")
    assert "link-local or cloud metadata address" in message
    assert_nothing_queued(queue)
    for connected in connections:
        if isinstance(connected, tuple):
            assert ipaddress.ip_address(connected[0]).is_loopback, f"connected to {connected}"


# ------------------------------------------------------------------ database-backup


@pytest.mark.parametrize("payload, field", [
    pytest.param({"destination": "/etc"}, "payload.destination", id="absolute-outside"),
    pytest.param({"destination": "/var/backups"}, "payload.destination", id="other-absolute-outside"),
    pytest.param({"destination": "../../escape"}, "payload.destination", id="relative-escape"),
    pytest.param({"destination": ""}, "payload.destination", id="empty-destination"),
    pytest.param({"compress": "zip"}, "payload.compress", id="unknown-compression"),
    pytest.param({"format": "tar"}, "payload.format", id="unknown-format"),
    pytest.param({"encrypt": True}, "payload.encrypt", id="encrypt-without-key"),
    pytest.param({"encrypt": "yes"}, "payload.encrypt", id="encrypt-not-boolean"),
    pytest.param({"database": "postgresql://app:secret@127.0.0.1:5432/app"}, "payload.database",
                 id="url-with-password"),
    pytest.param({"database": "app\nname"}, "payload.database", id="name-with-control-character"),
    pytest.param({"database": "d" * 64}, "payload.database", id="name-too-long"),
])
def test_database_backup_invalid_payload(app, queue, environ, tmp_path, payload, field):
    assert_rejected(app, environ, tmp_path, "database-backup", payload, field)
    assert_nothing_queued(queue)


def test_database_backup_names_allowed_directories(app, queue, environ, tmp_path, settings):
    message = assert_rejected(app, environ, tmp_path, "database-backup", {"destination": "/etc"},
                              "payload.destination")

    assert str(settings.home_dir / "backups" / "jobs") in message
    assert "JOBS_BACKUP_ALLOWED_DIRS" in message
    assert_nothing_queued(queue)


# ------------------------------------------------------------------ file-cleanup


def files_payload(root, pattern="*.log", older_than_ms=0):
    return {"target": "files", "root": root, "pattern": pattern, "olderThanMs": older_than_ms}


@pytest.mark.parametrize("payload, field", [
    pytest.param(files_payload("/"), "payload.root", id="root-of-file-system"),
    pytest.param(files_payload("//"), "payload.root", id="double-slash-root"),
    pytest.param(files_payload("/tmp/.."), "payload.root", id="dot-dot-to-root"),
    pytest.param(files_payload("/home"), "payload.root", id="home-parent"),
    pytest.param(files_payload("/home/ann"), "payload.root", id="user-home"),
    pytest.param(files_payload("/root"), "payload.root", id="root-home"),
    pytest.param(files_payload("tmp/logs"), "payload.root", id="relative-root"),
    pytest.param({"target": "files", "pattern": "*.log", "olderThanMs": 0}, "payload.root", id="missing-root"),
    pytest.param(files_payload("/tmp", pattern="../*"), "payload.pattern", id="pattern-leaves-root"),
    pytest.param(files_payload("/tmp", pattern="/etc/*"), "payload.pattern", id="absolute-pattern"),
    pytest.param({"target": "files", "root": "/tmp", "pattern": "*.log"}, "payload.olderThanMs",
                 id="missing-age"),
    pytest.param(files_payload("/tmp", older_than_ms=-1), "payload.olderThanMs", id="negative-age"),
    pytest.param({"target": "everything"}, "payload.target", id="unknown-target"),
    pytest.param({}, "payload.target", id="missing-target"),
    pytest.param({"target": "jobs", "batchSize": 0}, "payload.batchSize", id="zero-batch"),
    pytest.param({"target": "jobs", "completedOlderThanMs": "1d"}, "payload.completedOlderThanMs",
                 id="age-not-a-number"),
    pytest.param({"target": "jobs", "dryRun": "no"}, "payload.dryRun", id="dry-run-not-boolean"),
])
def test_file_cleanup_invalid_payload(app, queue, environ, tmp_path, payload, field):
    assert_rejected(app, environ, tmp_path, "file-cleanup", payload, field)
    assert_nothing_queued(queue)


def test_file_cleanup_rejects_symlink_to_root(app, queue, environ, tmp_path):
    link = tmp_path / "looks-harmless"
    link.symlink_to("/")

    message = assert_rejected(app, environ, tmp_path, "file-cleanup", files_payload(str(link)), "payload.root")

    assert "file system root" in message
    assert_nothing_queued(queue)


def test_file_cleanup_rejects_worker_home(app, queue, environ, tmp_path):
    message = assert_rejected(app, environ, tmp_path, "file-cleanup", files_payload(environ["HOME"]),
                              "payload.root")

    assert "home directory" in message
    assert_nothing_queued(queue)


# ------------------------------------------------------------------ custom


@pytest.mark.parametrize("payload, field", [
    pytest.param({"action": "drop table jobs"}, "payload.action", id="action-with-spaces"),
    pytest.param({"action": "sendEmail(to: 1)"}, "payload.action", id="action-with-arguments"),
    pytest.param({"action": "1stAction"}, "payload.action", id="action-starting-with-digit"),
    pytest.param({"action": "a { b }"}, "payload.action", id="action-with-selection"),
    pytest.param({"mode": "handler", "action": ""}, "payload.action", id="empty-action"),
    pytest.param({}, "payload.action", id="missing-action-and-handler"),
    pytest.param({"mode": "shell", "action": "sendWelcomeEmail"}, "payload.mode", id="unknown-mode"),
    pytest.param({"action": "sendWelcomeEmail", "handler": "welcome"}, "payload.mode", id="action-and-handler"),
    pytest.param({"action": "sendWelcomeEmail", "command": "rm -rf /"}, "payload.command", id="unknown-field"),
    pytest.param({"action": "sendWelcomeEmail", "input": [1, 2]}, "payload.input", id="input-not-object"),
    pytest.param({"action": "sendWelcomeEmail", "sessionVariables": {"x-hasura-admin-secret": "guess"}},
                 "payload.sessionVariables.x-hasura-admin-secret", id="admin-secret-as-session-variable"),
    pytest.param({"action": "sendWelcomeEmail", "sessionVariables": {"role": "admin"}},
                 "payload.sessionVariables.role", id="session-variable-without-prefix"),
    pytest.param({"action": "sendWelcomeEmail", "input": {"user-id": 1}}, "payload.input.user-id",
                 id="input-name-not-graphql"),
    pytest.param({"action": "sendWelcomeEmail", "selection": "id @skip(if: true)"}, "payload.selection",
                 id="selection-with-directive"),
    pytest.param({"handler": 42}, "payload.handler", id="handler-not-a-string"),
])
def test_custom_invalid_payload(app, queue, environ, tmp_path, payload, field):
    assert_rejected(app, environ, tmp_path, "custom", payload, field)
    assert_nothing_queued(queue)
