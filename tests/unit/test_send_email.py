"""Unit tests of the send-email job type: payload validation, message building, error mapping."""

import base64
import email
import os
import smtplib
from email import policy

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies

from nself_jobs.errors import ConfigError, JobFailed, JobTimeout, PermanentJobFailure, ValidationError
from nself_jobs.jobtypes import JobContext, send_email
from nself_jobs.settings import load_settings


def b64(data):
    return base64.b64encode(data).decode()


@pytest.fixture
def attachment_dir(tmp_path):
    directory = tmp_path / "attachments"
    directory.mkdir()
    return directory


@pytest.fixture
def settings(tmp_path, attachment_dir):
    environ = {
        "HOME": str(tmp_path),
        "JOBS_SMTP_FROM": "App <app@example.test>",
        "JOBS_EMAIL_ATTACHMENT_DIR": str(attachment_dir),
    }
    return load_settings(environ=environ, project_dir=tmp_path)


def payload(**fields):
    base = {"to": "a@example.test", "subject": "Hello", "text": "Body"}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def build(settings, normalised):
    return send_email.build_message(normalised, send_email.from_settings(settings))


def header_lines(message):
    data = message.as_bytes(policy=send_email.MESSAGE_POLICY)
    head = data.split(b"\r\n\r\n", 1)[0]
    return head.decode("ascii").split("\r\n")


def validation_error(settings, data):
    with pytest.raises(ValidationError) as caught:
        send_email.validate(data, settings)
    return caught.value


# --- Normalisation --------------------------------------------------------------------


def test_validate_turns_strings_into_lists(settings):
    normalised = send_email.validate(payload(cc="b@example.test, c@example.test"), settings)

    assert normalised["to"] == ["a@example.test"]
    assert normalised["cc"] == ["b@example.test", "c@example.test"]
    assert normalised["bcc"] == []


def test_validate_reads_body_as_text(settings):
    normalised = send_email.validate(payload(text=None, body="Old style"), settings)

    assert normalised["text"] == "Old style"
    assert "body" not in normalised


def test_validate_keeps_display_names(settings):
    normalised = send_email.validate(payload(to=['"Doe, Jane" <jane@example.test>']), settings)

    assert normalised["to"] == ['"Doe, Jane" <jane@example.test>']


def test_validate_rejects_text_and_body_together(settings):
    error = validation_error(settings, payload(body="also"))

    assert error.field == "payload.body"


def test_validate_requires_a_body(settings):
    error = validation_error(settings, payload(text=None))

    assert error.field == "payload.text"
    assert "text, html or both" in error.message


def test_validate_accepts_html_only(settings):
    normalised = send_email.validate(payload(text=None, html="<p>Hi</p>"), settings)

    assert normalised["html"] == "<p>Hi</p>"
    assert "text" not in normalised


def test_validate_requires_a_recipient(settings):
    error = validation_error(settings, payload(to=None))

    assert error.field == "payload.to"


def test_validate_requires_a_subject(settings):
    data = payload()
    del data["subject"]

    error = validation_error(settings, data)

    assert error.field == "payload.subject"


def test_validate_requires_a_sender_without_setting(tmp_path):
    settings = load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path)

    error = validation_error(settings, payload())

    assert error.field == "payload.from"
    assert "JOBS_SMTP_FROM" in error.message


# --- Header injection and addresses ----------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field_path",
    [
        ({"subject": "Hi\r\nBcc: victim@example.test"}, "payload.subject"),
        ({"subject": "Hi\nthere"}, "payload.subject"),
        ({"subject": "Hi\rthere"}, "payload.subject"),
        ({"from": "x@example.test\r\nBcc: v@example.test"}, "payload.from"),
        ({"to": ["a@example.test", "b@example.test\nBcc: v@example.test"]}, "payload.to[1]"),
        ({"cc": "b@example.test\r\n"}, "payload.cc"),
        ({"bcc": ["c@example.test\n"]}, "payload.bcc[0]"),
        ({"replyTo": "r@example.test\r\nX-Evil: 1"}, "payload.replyTo"),
        (
            {"attachments": [{"filename": "a.txt\r\nX-Evil: 1", "content": "eA=="}]},
            "payload.attachments[0].filename",
        ),
        (
            {"attachments": [{"filename": "a.txt", "contentType": "text/plain\nX-Evil: 1", "content": "eA=="}]},
            "payload.attachments[0].contentType",
        ),
    ],
)
def test_validate_rejects_line_breaks_in_headers(settings, fields, field_path):
    error = validation_error(settings, payload(**fields))

    assert error.field == field_path
    assert "line break" in error.message


def test_validate_rejects_other_control_characters(settings):
    error = validation_error(settings, payload(subject="Hi\x00there"))

    assert error.field == "payload.subject"
    assert "U+0000" in error.message


def test_validate_allows_tab_in_subject(settings):
    assert send_email.validate(payload(subject="a\tb"), settings)["subject"] == "a\tb"


@pytest.mark.parametrize(
    "address",
    ["not-an-address", "a@", "@example.test", "a b@example.test", "a@exa mple.test", "a@-bad-.test", "a@b..test", ""],
)
def test_validate_rejects_invalid_addresses(settings, address):
    error = validation_error(settings, payload(to=["ok@example.test", address]))

    assert error.field == "payload.to[1]"


def test_validate_rejects_non_ascii_address(settings):
    error = validation_error(settings, payload(to="jörg@example.test"))

    assert error.field == "payload.to"
    assert "xn--" in error.message


def test_validate_accepts_single_label_and_literal_domains(settings):
    normalised = send_email.validate(payload(to=["root@localhost", "ops@[127.0.0.1]"]), settings)

    assert normalised["to"] == ["root@localhost", "ops@[127.0.0.1]"]


ADDRESS_CHARACTERS = 'ab@.<>"\\ ,:;()[]é=?\t-_'


@hypothesis_settings(max_examples=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strategies.text(alphabet=ADDRESS_CHARACTERS, max_size=25) | strategies.text(max_size=25))
def test_address_parsing_raises_only_validation_error(settings, text):
    try:
        normalised = send_email.validate(payload(to=[text]), settings)
    except ValidationError as error:
        assert error.field == "payload.to[0]"
        return

    message, _, recipients = build(settings, normalised)

    assert recipients
    assert message.as_bytes(policy=send_email.MESSAGE_POLICY).isascii()
    assert send_email.validate(normalised, settings) == normalised


def test_validate_rejects_recipient_of_wrong_type(settings):
    error = validation_error(settings, payload(to=42))

    assert error.field == "payload.to"


def test_validate_rejects_two_senders(settings):
    error = validation_error(settings, payload(**{"from": "a@example.test, b@example.test"}))

    assert error.field == "payload.from"
    assert "one address" in error.message


# --- Recipients and Bcc ---------------------------------------------------------------------


def test_bcc_is_envelope_only_and_deduplicated(settings):
    normalised = send_email.validate(
        payload(
            to=["a@example.test"],
            cc=["b@example.test"],
            bcc=["c@example.test", "d@example.test", "a@example.test"],
        ),
        settings,
    )

    message, sender, recipients = build(settings, normalised)
    lines = header_lines(message)

    assert recipients == ["a@example.test", "b@example.test", "c@example.test", "d@example.test"]
    assert sender == "app@example.test"
    assert "To: a@example.test" in lines
    assert "Cc: b@example.test" in lines
    assert not any(line.lower().startswith("bcc") for line in lines)
    assert b"c@example.test" not in message.as_bytes(policy=send_email.MESSAGE_POLICY)


def test_duplicates_ignore_case_of_address(settings):
    normalised = send_email.validate(
        payload(to=["A@Example.TEST", "a@example.test"], cc=['"Other Name" <a@EXAMPLE.test>', "b@example.test"]),
        settings,
    )

    _, _, recipients = build(settings, normalised)

    assert recipients == ["A@Example.TEST", "b@example.test"]
    assert normalised["to"] == ["A@Example.TEST"]
    assert normalised["cc"] == ["b@example.test"]


def test_bcc_only_message_has_no_to_header(settings):
    normalised = send_email.validate(payload(to=None, bcc="hidden@example.test"), settings)

    message, _, recipients = build(settings, normalised)
    lines = header_lines(message)

    assert recipients == ["hidden@example.test"]
    assert not any(line.startswith(("To:", "Cc:", "Bcc:")) for line in lines)


# --- Encodings ------------------------------------------------------------------------------


def test_non_ascii_headers_use_rfc_2047_and_2231(settings):
    normalised = send_email.validate(
        payload(
            **{"from": '"José Müller" <jose@example.test>'},
            subject="Rapport été — ✓",
            attachments=[
                {"filename": "Prüfbericht Q1.pdf", "content": b64(b"%PDF-1.4")},
                {"filename": "テスト文書.txt", "content": b64("テスト".encode())},
            ],
        ),
        settings,
    )

    message, _, _ = build(settings, normalised)
    data = message.as_bytes(policy=send_email.MESSAGE_POLICY)
    lines = header_lines(message)

    assert "From: =?utf-8?q?Jos=C3=A9_M=C3=BCller?= <jose@example.test>" in lines
    assert "Subject: Rapport =?utf-8?b?w6l0w6kg4oCUIOKckw==?=" in lines
    assert b"Content-Disposition: attachment; filename*=utf-8''Pr%C3%BCfbericht%20Q1.pdf\r\n" in data
    assert b"filename*=utf-8''%E3%83%86%E3%82%B9%E3%83%88%E6%96%87%E6%9B%B8.txt\r\n" in data
    assert data.isascii()


def test_encoded_filenames_decode_to_originals(settings):
    names = ["Prüfbericht Q1.pdf", "テスト文書.txt"]
    attachments = [{"filename": name, "content": b64(b"data")} for name in names]
    normalised = send_email.validate(payload(attachments=attachments), settings)

    message, _, _ = build(settings, normalised)
    parsed = email.message_from_bytes(message.as_bytes(policy=send_email.MESSAGE_POLICY), policy=policy.default)

    assert [part.get_filename() for part in parsed.iter_attachments()] == names
    for part in parsed.iter_attachments():
        assert "=?" not in part["Content-Disposition"]


def test_non_ascii_body_is_sent_as_seven_bit(settings):
    normalised = send_email.validate(payload(text="Grüße\n" * 3, html="<p>Grüße</p>"), settings)

    message, _, _ = build(settings, normalised)
    data = message.as_bytes(policy=send_email.MESSAGE_POLICY)
    parsed = email.message_from_bytes(data, policy=policy.default)

    # Text parts travel in canonical form, with CRLF line breaks.
    assert data.isascii()
    assert parsed.get_body(("plain",)).get_content() == "Grüße\r\n" * 3
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Grüße</p>"


def test_message_id_uses_sender_domain(settings):
    normalised = send_email.validate(payload(), settings)

    message, _, _ = build(settings, normalised)

    assert message["Message-ID"].endswith("@example.test>")


# --- Attachments ----------------------------------------------------------------------------


def test_attachment_content_type_is_guessed(settings):
    normalised = send_email.validate(payload(attachments=[{"filename": "r.pdf", "content": "eA=="}]), settings)

    assert normalised["attachments"][0]["contentType"] == "application/pdf"


def test_attachment_of_unknown_type_is_octet_stream(settings):
    normalised = send_email.validate(payload(attachments=[{"filename": "r.zzz9", "content": "eA=="}]), settings)

    assert normalised["attachments"][0]["contentType"] == "application/octet-stream"


def test_attachment_base64_may_contain_line_breaks(settings):
    content = b64(b"x" * 100)
    wrapped = content[:40] + "\n" + content[40:]

    normalised = send_email.validate(payload(attachments=[{"filename": "a.bin", "content": wrapped}]), settings)

    assert normalised["attachments"][0]["content"] == content


@pytest.mark.parametrize(
    "attachment, field_path",
    [
        ({"filename": "a.bin", "content": "not base64!"}, "payload.attachments[0].content"),
        ({"filename": "a.bin", "content": 12}, "payload.attachments[0].content"),
        ({"filename": "a.bin"}, "payload.attachments[0]"),
        ({"filename": "a.bin", "content": "eA==", "path": "a.bin"}, "payload.attachments[0]"),
        ({"content": "eA=="}, "payload.attachments[0].filename"),
        ({"filename": "a.bin", "content": "eA==", "contentType": "pdf"}, "payload.attachments[0].contentType"),
        ("a.bin", "payload.attachments[0]"),
    ],
)
def test_invalid_attachments_name_the_field(settings, attachment, field_path):
    error = validation_error(settings, payload(attachments=[attachment]))

    assert error.field == field_path


def test_path_attachment_is_read_from_directory(settings, attachment_dir):
    (attachment_dir / "report.csv").write_bytes(b"a,b\n1,2\n")
    normalised = send_email.validate(payload(attachments=[{"path": "report.csv"}]), settings)

    message, _, _ = build(settings, normalised)
    attachment = next(message.iter_attachments())

    assert normalised["attachments"][0]["filename"] == "report.csv"
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_payload(decode=True) == b"a,b\n1,2\n"


def test_path_attachment_may_be_absolute_inside_directory(settings, attachment_dir):
    (attachment_dir / "sub").mkdir()
    (attachment_dir / "sub" / "x.txt").write_text("x")

    normalised = send_email.validate(payload(attachments=[{"path": str(attachment_dir / "sub" / "x.txt")}]), settings)

    assert normalised["attachments"][0]["filename"] == "x.txt"


def test_path_attachment_cannot_escape_with_dot_dot(settings, attachment_dir, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")

    error = validation_error(settings, payload(attachments=[{"path": "../secret.txt"}]))

    assert error.field == "payload.attachments[0].path"
    assert "outside JOBS_EMAIL_ATTACHMENT_DIR" in error.message


def test_path_attachment_cannot_escape_with_absolute_path(settings):
    error = validation_error(settings, payload(attachments=[{"path": "/etc/passwd"}]))

    assert error.field == "payload.attachments[0].path"


def test_path_attachment_cannot_escape_through_symlink(settings, attachment_dir, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", attachment_dir / "link.txt")
    os.symlink(tmp_path, attachment_dir / "linked-dir")

    file_error = validation_error(settings, payload(attachments=[{"path": "link.txt"}]))
    dir_error = validation_error(settings, payload(attachments=[{"path": "linked-dir/secret.txt"}]))

    assert file_error.field == "payload.attachments[0].path"
    assert dir_error.field == "payload.attachments[0].path"


def test_symlink_swapped_in_after_validation_is_rejected(settings, attachment_dir, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    (attachment_dir / "report.txt").write_text("fine")
    normalised = send_email.validate(payload(attachments=[{"path": "report.txt"}]), settings)
    (attachment_dir / "report.txt").unlink()
    os.symlink(tmp_path / "secret.txt", attachment_dir / "report.txt")

    with pytest.raises(ValidationError) as caught:
        build(settings, normalised)

    assert caught.value.field == "payload.attachments[0].path"


def test_symlink_inside_directory_is_allowed(settings, attachment_dir):
    (attachment_dir / "real.txt").write_text("inside")
    os.symlink(attachment_dir / "real.txt", attachment_dir / "alias.txt")

    normalised = send_email.validate(payload(attachments=[{"path": "alias.txt"}]), settings)

    assert normalised["attachments"][0]["filename"] == "real.txt"


def test_path_attachment_must_exist(settings):
    error = validation_error(settings, payload(attachments=[{"path": "missing.txt"}]))

    assert error.field == "payload.attachments[0].path"
    assert "not found" in error.message


def test_path_attachment_must_be_a_file(settings, attachment_dir):
    (attachment_dir / "folder").mkdir()

    error = validation_error(settings, payload(attachments=[{"path": "folder"}]))

    assert error.field == "payload.attachments[0].path"


def test_path_attachments_need_the_directory_setting(tmp_path):
    settings = load_settings(environ={"HOME": str(tmp_path), "JOBS_SMTP_FROM": "a@example.test"}, project_dir=tmp_path)

    error = validation_error(settings, payload(attachments=[{"path": "x.txt"}]))

    assert error.field == "payload.attachments[0].path"
    assert "JOBS_EMAIL_ATTACHMENT_DIR" in error.message


# --- Settings -----------------------------------------------------------------------------------


def test_settings_defaults(tmp_path):
    config = send_email.from_settings(load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path))

    assert (config.host, config.port, config.security, config.timeout_ms) == ("localhost", 587, "starttls", 30_000)
    assert config.user is None
    assert config.sender is None
    assert config.attachment_dir is None


def test_settings_reject_unknown_security(tmp_path):
    settings = load_settings(environ={"JOBS_SMTP_SECURITY": "ssl"}, project_dir=tmp_path)

    with pytest.raises(ConfigError) as caught:
        send_email.from_settings(settings)

    assert caught.value.variable == "JOBS_SMTP_SECURITY"


def test_settings_reject_invalid_sender(tmp_path):
    settings = load_settings(environ={"JOBS_SMTP_FROM": "nobody"}, project_dir=tmp_path)

    with pytest.raises(ConfigError) as caught:
        send_email.from_settings(settings)

    assert caught.value.variable == "JOBS_SMTP_FROM"


def test_settings_repr_hides_password(tmp_path):
    settings = load_settings(environ={"JOBS_SMTP_PASSWORD": "hunter2-secret"}, project_dir=tmp_path)

    config = send_email.from_settings(settings)

    assert config.password == "hunter2-secret"
    assert "hunter2-secret" not in repr(config)


# --- SMTP error mapping ---------------------------------------------------------------------------


@pytest.fixture
def config(settings):
    return send_email.from_settings(settings)


@pytest.fixture
def ctx(settings):
    return JobContext("job-1", 1, settings, timeout_ms=60_000)


@pytest.mark.parametrize(
    "error, expected",
    [
        (smtplib.SMTPDataError(554, b"rejected as spam"), PermanentJobFailure),
        (smtplib.SMTPDataError(451, b"try again later"), send_email.SmtpTemporaryError),
        (smtplib.SMTPSenderRefused(550, b"no relay", "a@example.test"), PermanentJobFailure),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), PermanentJobFailure),
        (smtplib.SMTPAuthenticationError(454, b"temporary auth failure"), send_email.SmtpTemporaryError),
        (smtplib.SMTPConnectError(421, b"too busy"), send_email.SmtpTemporaryError),
        (smtplib.SMTPServerDisconnected("gone"), send_email.SmtpTemporaryError),
        (smtplib.SMTPNotSupportedError("no AUTH"), PermanentJobFailure),
        (ConnectionRefusedError(111, "Connection refused"), send_email.SmtpTemporaryError),
        (TimeoutError("timed out"), send_email.SmtpTemporaryError),
    ],
)
def test_smtp_errors_map_to_permanent_or_temporary(config, ctx, error, expected):
    translated = send_email._translate_smtp_error(error, config, ctx)

    assert type(translated) is expected


def test_permanent_rejection_is_job_failed(config, ctx):
    error = smtplib.SMTPRecipientsRefused({"a@example.test": (550, b"no such user")})

    translated = send_email._translate_smtp_error(error, config, ctx)

    assert isinstance(translated, JobFailed)
    assert "a@example.test: 550 no such user" in str(translated)


def test_rejection_with_4xx_is_temporary(config, ctx):
    error = smtplib.SMTPRecipientsRefused({"a@example.test": (550, b"no"), "b@example.test": (450, b"busy")})

    translated = send_email._translate_smtp_error(error, config, ctx)

    assert isinstance(translated, send_email.SmtpTemporaryError)


def test_timeout_after_deadline_raises_job_timeout(settings, config):
    clock = iter([0.0, 5.0])
    expired = JobContext("job-1", 1, settings, timeout_ms=1000, clock=lambda: next(clock))

    with pytest.raises(JobTimeout):
        send_email._translate_smtp_error(TimeoutError("timed out"), config, expired)


def test_job_type_is_registered():
    from nself_jobs import jobtypes

    assert jobtypes.get("send-email") is send_email.JOB_TYPE
