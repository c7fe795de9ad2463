"""The send-email job against a real SMTP server (aiosmtpd) on 127.0.0.1.

Each test starts its own server on a free port and checks the envelope and the
exact bytes it received.
"""

import base64
import datetime
import email
import ipaddress
import logging
import socket
import ssl
import threading
import time
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nself_jobs.errors import JobFailed, JobTimeout
from nself_jobs.jobtypes import JobContext, send_email
from nself_jobs.settings import load_settings

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-Pa55word"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordingHandler:
    """An aiosmtpd handler that stores each accepted transaction and rejects recipients or data on request."""

    def __init__(self, refused=None, data_reply=None):
        self.refused = refused or {}
        self.data_reply = data_reply
        self.envelopes = []
        self.tls_sessions = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        self.tls_sessions.append(session.ssl is not None)
        return "250 Message accepted for delivery"


def check_password(server, session, envelope, mechanism, auth_data):
    valid = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
    # handled=False makes aiosmtpd send the standard 535 reply on failure.
    return AuthResult(success=valid, handled=False)


@pytest.fixture
def start_server():
    """Start aiosmtpd servers on free ports; every one is stopped after the test."""
    controllers = []

    def start(handler, **options):
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        controllers.append(controller)
        return controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def certificate(tmp_path):
    """Write a self-signed certificate for 127.0.0.1 and localhost and return ``(cert_path, key_path)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "smtp-cert.pem"
    key_path = tmp_path / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_tls_context(certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def make_settings(tmp_path, port, **extra):
    environ = {
        "HOME": str(tmp_path),
        "JOBS_SMTP_HOST": "127.0.0.1",
        "JOBS_SMTP_PORT": str(port),
        "JOBS_SMTP_SECURITY": "none",
        "JOBS_SMTP_FROM": "App <app@example.test>",
        "JOBS_SMTP_TIMEOUT": "5000",
    }
    environ.update(extra)
    return load_settings(environ=environ, project_dir=tmp_path)


def send(settings, payload, timeout_ms=10_000):
    """Validate and run one send-email job and return ``(result, bytes the job sent)``."""
    normalised = send_email.validate(payload, settings)
    sent = {}
    original_build = send_email.build_message

    def recording_build(*args, **kwargs):
        message, sender, recipients = original_build(*args, **kwargs)
        sent["message"] = message
        return message, sender, recipients

    send_email.build_message = recording_build
    try:
        result = send_email.run(normalised, JobContext("job-1", 1, settings, timeout_ms))
    finally:
        send_email.build_message = original_build
    # The boundary is stored on the message when first serialised, so this repeats the sent bytes.
    return result, sent["message"].as_bytes(policy=send_email.MESSAGE_POLICY)


def header_lines(data):
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


# --- Recipients and Bcc ------------------------------------------------------------------


def test_bcc_sent_once_without_header(tmp_path, start_server):
    handler = RecordingHandler()
    settings = make_settings(tmp_path, start_server(handler))
    payload = {
        "to": ["a@example.test"],
        "cc": ["b@example.test"],
        "bcc": ["c@example.test", "d@example.test", "a@example.test"],
        "subject": "Quarterly numbers",
        "text": "See attached.",
    }

    result, sent_bytes = send(settings, payload)

    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    lines = header_lines(envelope.original_content)
    assert envelope.mail_from == "app@example.test"
    assert envelope.rcpt_tos == ["a@example.test", "b@example.test", "c@example.test", "d@example.test"]
    assert "To: a@example.test" in lines
    assert "Cc: b@example.test" in lines
    assert not any(line.lower().startswith("bcc:") for line in lines)
    assert b"c@example.test" not in envelope.original_content
    assert envelope.original_content == sent_bytes
    assert result["acceptedCount"] == 4
    assert result["rejectedRecipients"] == {}
    assert f"Message-ID: {result['messageId']}" in lines


def test_duplicate_recipients_sent_once(tmp_path, start_server):
    handler = RecordingHandler()
    settings = make_settings(tmp_path, start_server(handler))

    result, _ = send(settings, {"to": "X@Example.test, x@example.TEST", "bcc": "x@example.test", "subject": "", "text": "."})

    assert handler.envelopes[0].rcpt_tos == ["X@Example.test"]
    assert result["acceptedCount"] == 1


# --- Encodings --------------------------------------------------------------------------------


def test_non_ascii_headers_arrive_encoded(tmp_path, start_server):
    handler = RecordingHandler()
    settings = make_settings(tmp_path, start_server(handler))
    pdf_bytes = b"%PDF-1.4\n" + bytes(range(256))
    text_bytes = "テスト".encode("utf-8")
    payload = {
        "from": '"José Müller" <jose@example.test>',
        "to": "a@example.test",
        "subject": "Rapport été — ✓",
        "text": "Bonjour",
        "attachments": [
            {"filename": "Prüfbericht Q1.pdf", "contentType": "application/pdf", "content": base64.b64encode(pdf_bytes).decode()},
            {"filename": "テスト文書.txt", "content": base64.b64encode(text_bytes).decode()},
        ],
    }

    _, sent_bytes = send(settings, payload)

    received = handler.envelopes[0].original_content
    lines = header_lines(received)
    parsed = email.message_from_bytes(received, policy=policy.default)
    attachments = list(parsed.iter_attachments())
    assert received == sent_bytes
    assert handler.envelopes[0].mail_from == "jose@example.test"
    assert "From: =?utf-8?q?Jos=C3=A9_M=C3=BCller?= <jose@example.test>" in lines
    assert "Subject: Rapport =?utf-8?b?w6l0w6kg4oCUIOKckw==?=" in lines
    assert b"\r\nContent-Disposition: attachment; filename*=utf-8''Pr%C3%BCfbericht%20Q1.pdf\r\n" in received
    assert b" filename*=utf-8''%E3%83%86%E3%82%B9%E3%83%88%E6%96%87%E6%9B%B8.txt\r\n" in received
    assert [part.get_filename() for part in attachments] == ["Prüfbericht Q1.pdf", "テスト文書.txt"]
    assert attachments[0].get_payload(decode=True) == pdf_bytes
    assert attachments[1].get_payload(decode=True) == text_bytes
    assert str(parsed["From"]) == "José Müller <jose@example.test>"
    assert str(parsed["Subject"]) == "Rapport été — ✓"


def test_dot_at_line_start_survives_transport(tmp_path, start_server):
    handler = RecordingHandler()
    settings = make_settings(tmp_path, start_server(handler))

    _, sent_bytes = send(settings, {"to": "a@example.test", "subject": "dots", "text": "line\n.\n..two\n"})

    assert handler.envelopes[0].original_content == sent_bytes


def test_path_attachment_is_sent(tmp_path, start_server):
    attachment_dir = tmp_path / "outbox"
    attachment_dir.mkdir()
    (attachment_dir / "invoice.pdf").write_bytes(b"%PDF-invoice")
    handler = RecordingHandler()
    settings = make_settings(tmp_path, start_server(handler), JOBS_EMAIL_ATTACHMENT_DIR=str(attachment_dir))

    send(settings, {"to": "a@example.test", "subject": "Invoice", "html": "<p>Attached</p>", "attachments": [{"path": "invoice.pdf"}]})

    parsed = email.message_from_bytes(handler.envelopes[0].original_content, policy=policy.default)
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_payload(decode=True) == b"%PDF-invoice"


# --- Server replies --------------------------------------------------------------------------


def test_rejected_recipient_is_reported(tmp_path, start_server):
    handler = RecordingHandler(refused={"gone@example.test": "550 5.1.1 No such user"})
    settings = make_settings(tmp_path, start_server(handler))

    result, _ = send(settings, {"to": ["a@example.test", "gone@example.test"], "subject": "Hi", "text": "."})

    assert handler.envelopes[0].rcpt_tos == ["a@example.test"]
    assert result["acceptedCount"] == 1
    assert result["rejectedRecipients"] == {"gone@example.test": "550 5.1.1 No such user"}


def test_all_recipients_rejected_fails_job(tmp_path, start_server):
    handler = RecordingHandler(refused={"gone@example.test": "550 5.1.1 No such user"})
    settings = make_settings(tmp_path, start_server(handler))

    with pytest.raises(JobFailed) as caught:
        send(settings, {"to": "gone@example.test", "subject": "Hi", "text": "."})

    assert "550 5.1.1 No such user" in str(caught.value)
    assert handler.envelopes == []


def test_temporary_rejection_is_retryable(tmp_path, start_server):
    handler = RecordingHandler(refused={"busy@example.test": "450 4.2.1 Mailbox busy"})
    settings = make_settings(tmp_path, start_server(handler))

    with pytest.raises(send_email.SmtpTemporaryError):
        send(settings, {"to": "busy@example.test", "subject": "Hi", "text": "."})


def test_permanent_data_reply_fails_job(tmp_path, start_server):
    handler = RecordingHandler(data_reply="554 5.7.1 Rejected as spam")
    settings = make_settings(tmp_path, start_server(handler))

    with pytest.raises(JobFailed) as caught:
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert "554 5.7.1 Rejected as spam" in str(caught.value)


def test_temporary_data_reply_is_retryable(tmp_path, start_server):
    handler = RecordingHandler(data_reply="451 4.3.0 Try again later")
    settings = make_settings(tmp_path, start_server(handler))

    with pytest.raises(send_email.SmtpTemporaryError) as caught:
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert "451 4.3.0 Try again later" in str(caught.value)


def test_connection_refused_is_retryable(tmp_path):
    settings = make_settings(tmp_path, free_port())

    with pytest.raises(send_email.SmtpTemporaryError) as caught:
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert "Connection refused" in str(caught.value)


# --- Timeouts --------------------------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a greeting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted = []
    stop = threading.Event()

    def accept_loop():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_silent_server_stops_at_job_deadline(tmp_path, silent_server):
    settings = make_settings(tmp_path, silent_server, JOBS_SMTP_TIMEOUT="60000")
    started = time.monotonic()

    with pytest.raises(JobTimeout):
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."}, timeout_ms=500)

    assert time.monotonic() - started < 2.0


def test_silent_server_stops_at_smtp_timeout(tmp_path, silent_server):
    settings = make_settings(tmp_path, silent_server, JOBS_SMTP_TIMEOUT="300")
    started = time.monotonic()

    with pytest.raises(send_email.SmtpTemporaryError) as caught:
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."}, timeout_ms=60_000)

    assert "timed out after 300 ms" in str(caught.value)
    assert time.monotonic() - started < 2.0


# --- Authentication and TLS ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_sends_and_never_logs_password(tmp_path, start_server, caplog):
    handler = RecordingHandler()
    port = start_server(handler, authenticator=check_password, auth_require_tls=False, auth_required=True)
    settings = make_settings(tmp_path, port, JOBS_SMTP_USER=SMTP_USER, JOBS_SMTP_PASSWORD=SMTP_PASSWORD)
    caplog.set_level(logging.DEBUG)

    result, _ = send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert result["acceptedCount"] == 1
    assert len(handler.envelopes) == 1
    assert SMTP_PASSWORD not in caplog.text
    assert SMTP_PASSWORD not in repr(result)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_wrong_password_fails_without_showing_it(tmp_path, start_server, caplog):
    handler = RecordingHandler()
    port = start_server(handler, authenticator=check_password, auth_require_tls=False, auth_required=True)
    settings = make_settings(tmp_path, port, JOBS_SMTP_USER=SMTP_USER, JOBS_SMTP_PASSWORD="wrong-" + SMTP_PASSWORD)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(JobFailed) as caught:
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert "535" in str(caught.value)
    assert SMTP_PASSWORD not in str(caught.value)
    assert SMTP_PASSWORD not in repr(caught.value.__cause__)
    assert SMTP_PASSWORD not in caplog.text
    assert handler.envelopes == []


def test_starttls_with_trusted_certificate(tmp_path, start_server, certificate, monkeypatch):
    handler = RecordingHandler()
    port = start_server(handler, tls_context=server_tls_context(certificate), require_starttls=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    settings = make_settings(tmp_path, port, JOBS_SMTP_SECURITY="starttls")

    result, sent_bytes = send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert result["acceptedCount"] == 1
    assert handler.tls_sessions == [True]
    assert handler.envelopes[0].original_content == sent_bytes


def test_starttls_with_untrusted_certificate_fails(tmp_path, start_server, certificate, monkeypatch):
    handler = RecordingHandler()
    port = start_server(handler, tls_context=server_tls_context(certificate), require_starttls=True)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    settings = make_settings(tmp_path, port, JOBS_SMTP_SECURITY="starttls")

    with pytest.raises(JobFailed) as caught:
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert "failed verification" in str(caught.value)
    assert handler.envelopes == []


def test_starttls_not_offered_fails(tmp_path, start_server):
    handler = RecordingHandler()
    settings = make_settings(tmp_path, start_server(handler), JOBS_SMTP_SECURITY="starttls")

    with pytest.raises(JobFailed) as caught:
        send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert "does not offer STARTTLS" in str(caught.value)
    assert handler.envelopes == []


def test_implicit_tls(tmp_path, start_server, certificate, monkeypatch):
    handler = RecordingHandler()
    port = start_server(handler, ssl_context=server_tls_context(certificate))
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    settings = make_settings(tmp_path, port, JOBS_SMTP_SECURITY="tls")

    result, sent_bytes = send(settings, {"to": "a@example.test", "subject": "Hi", "text": "."})

    assert result["acceptedCount"] == 1
    assert handler.envelopes[0].original_content == sent_bytes
