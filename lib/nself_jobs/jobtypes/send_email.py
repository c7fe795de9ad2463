"""The ``send-email`` job type: send one e-mail through an SMTP server.

Settings (read from the environment and the nself env files):

``JOBS_SMTP_HOST`` (default ``localhost``)
    SMTP server host name. TLS certificates are checked against this name.
``JOBS_SMTP_PORT`` (default ``587``)
    SMTP server port: usually 587 for ``starttls``, 465 for ``tls`` and 25 for ``none``.
``JOBS_SMTP_USER``, ``JOBS_SMTP_PASSWORD`` (default: not set)
    Credentials for SMTP AUTH. Without a user the job sends without logging in.
``JOBS_SMTP_FROM`` (default: not set)
    Sender used when a payload has no ``from``, for example ``App <app@example.com>``.
``JOBS_SMTP_SECURITY`` (default ``starttls``)
    ``starttls`` upgrades a plain connection and fails if the server does not offer
    STARTTLS, ``tls`` connects with TLS from the start, and ``none`` sends in clear
    text. Certificates are verified against the system CA store, which OpenSSL's
    ``SSL_CERT_FILE`` variable can replace for a private CA.
``JOBS_SMTP_TIMEOUT`` (default ``30000``)
    Maximum time in ms for each network operation. The job's own deadline lowers it.
``JOBS_EMAIL_ATTACHMENT_DIR`` (default: not set)
    The only directory that ``path`` attachments may be read from. Without it,
    attachments must carry their content as base64.

Payload:

``to``, ``cc``, ``bcc``
    A string or a list of strings, each an address such as ``a@example.com`` or
    ``"Ann Example" <a@example.com>``. A string may hold a comma-separated list.
    At least one recipient is required. Bcc recipients get the message but never
    appear in its headers. An address listed more than once, compared without
    regard to case, gets one copy.
``from``
    The sender. Defaults to ``JOBS_SMTP_FROM``.
``replyTo``
    A string or a list of addresses for the Reply-To header.
``subject``
    The subject line (required, may be empty).
``text``, ``html``
    The plain-text and HTML bodies; at least one is required. ``body`` is an older
    name for ``text``.
``attachments``
    A list of ``{filename, contentType, content}`` with base64 ``content``, or
    ``{filename, contentType, path}`` with a path inside
    ``JOBS_EMAIL_ATTACHMENT_DIR``. ``contentType`` defaults to a guess from the
    file name, and ``filename`` defaults to the name of ``path``.

Header values must not contain line breaks or other control characters. Non-ASCII
display names, subjects and attachment file names are encoded by the standard
library's ``email`` package (RFC 2047 encoded words and RFC 2231 parameters).

Result: ``messageId``, ``acceptedCount`` (recipients the server accepted) and
``rejectedRecipients`` (address to SMTP reply, for recipients rejected while others
were accepted).

SMTP replies with a 5xx code, a server without the STARTTLS that ``starttls`` needs
and a failed certificate check raise :class:`~nself_jobs.errors.PermanentJobFailure`,
so the job fails without retries. Replies with a 4xx code, refused connections, other
TLS errors and network timeouts raise :class:`SmtpTemporaryError`, so the queue
retries the job.
"""

import base64
import binascii
import email.utils
import logging
import mimetypes
import os
import re
import smtplib
import socket
import ssl
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

from ..errors import ConfigError, JobsError, JobTimeout, PermanentJobFailure, ValidationError
from .base import JobType

logger = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "tls", "none")

# Headers are encoded for 7-bit transport and bodies get base64 or quoted-printable,
# so the message never needs the server's 8BITMIME or SMTPUTF8 extensions.
MESSAGE_POLICY = policy.SMTP.clone(cte_type="7bit")

_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ADDRESS_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]|\[IPv6:[0-9A-Fa-f:.]+\]")


class SmtpTemporaryError(JobsError):
    """Raised when sending failed in a way a later attempt may fix, such as a 4xx reply."""


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP server and sender settings of the send-email job type."""

    host: str
    port: int
    user: str | None
    sender: Address | None
    security: str
    timeout_ms: int
    attachment_dir: Path | None
    password: str | None = field(default=None, repr=False)


def from_settings(settings):
    """Read the ``JOBS_SMTP_*`` and ``JOBS_EMAIL_ATTACHMENT_DIR`` settings."""
    env = settings.env
    sender_text = env.str("JOBS_SMTP_FROM")
    sender = None
    if sender_text is not None:
        try:
            sender = _parse_single_address("JOBS_SMTP_FROM", sender_text)
        except ValidationError as error:
            raise ConfigError("JOBS_SMTP_FROM", sender_text, f"one e-mail address ({error.message})") from None

    attachment_dir = env.str("JOBS_EMAIL_ATTACHMENT_DIR")
    return SmtpSettings(
        host=env.str("JOBS_SMTP_HOST", "localhost"),
        port=env.int("JOBS_SMTP_PORT", 587, minimum=1, maximum=65535),
        user=env.str("JOBS_SMTP_USER"),
        sender=sender,
        security=env.choice("JOBS_SMTP_SECURITY", "starttls", SECURITY_MODES),
        timeout_ms=env.int("JOBS_SMTP_TIMEOUT", 30_000, minimum=1, maximum=3_600_000),
        attachment_dir=Path(attachment_dir).expanduser().resolve() if attachment_dir else None,
        password=env.str("JOBS_SMTP_PASSWORD"),
    )


# --- Header values and addresses -------------------------------------------------


def _check_header_value(field_path, value):
    """Raise ValidationError unless ``value`` is a string that is safe in a header."""
    if not isinstance(value, str):
        raise ValidationError(field_path, f"must be a string, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValidationError(
            field_path, "contains a line break (CR or LF), which is not allowed in an e-mail header; remove it"
        )
    for character in value:
        if (ord(character) < 32 and character != "\t") or ord(character) == 127:
            raise ValidationError(
                field_path, f"contains the control character U+{ord(character):04X}, which is not allowed in a header"
            )


def _check_address(field_path, address):
    if not address.username or not address.domain:
        raise ValidationError(field_path, f"invalid address {address.addr_spec!r}: expected name@domain")
    if not address.addr_spec.isascii():
        raise ValidationError(
            field_path,
            f"invalid address {address.addr_spec!r}: non-ASCII addresses are not supported; "
            "write the domain in its xn-- (IDNA) form",
        )
    domain = address.domain
    if _ADDRESS_LITERAL.fullmatch(domain):
        return
    labels = domain.rstrip(".").split(".")
    if len(domain) > 253 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        raise ValidationError(field_path, f"invalid address {address.addr_spec!r}: {domain!r} is not a valid domain")


def _parse_address_list(field_path, text):
    """Parse one header-style address list and return its addresses. Raises ValidationError on any defect."""
    _check_header_value(field_path, text)
    try:
        header = MESSAGE_POLICY.header_factory("To", text)
    except Exception:
        # On some malformed input the standard library's address parser raises
        # (HeaderParseError for "a@", AttributeError for ":;a") instead of recording a defect.
        raise ValidationError(field_path, f"invalid address {text!r}: expected name@domain") from None
    if not header.addresses:
        raise ValidationError(field_path, f"no address found in {text!r}; expected name@domain")
    for address in header.addresses:
        _check_address(field_path, address)
    if header.defects:
        raise ValidationError(field_path, f"invalid address list {text!r}: {header.defects[0]}")
    return list(header.addresses)


def _parse_single_address(field_path, text):
    addresses = _parse_address_list(field_path, text)
    if len(addresses) != 1:
        raise ValidationError(field_path, f"expected one address, found {len(addresses)} in {text!r}")
    return addresses[0]


def _parse_recipient_field(payload, name):
    """Return the addresses of payload field ``name``: a string, a list of strings, or missing."""
    value = payload.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return _parse_address_list(f"payload.{name}", value)
    if not isinstance(value, list):
        raise ValidationError(f"payload.{name}", "must be a string or a list of strings")
    addresses = []
    for index, item in enumerate(value):
        addresses += _parse_address_list(f"payload.{name}[{index}]", item)
    return addresses


def _without_duplicates(addresses, seen):
    """Return the addresses whose lowercased addr-spec is not in ``seen``, adding each to ``seen``."""
    unique = []
    for address in addresses:
        key = address.addr_spec.lower()
        if key not in seen:
            seen.add(key)
            unique.append(address)
    return unique


def _recipients(payload):
    """Return the deduplicated To, Cc and Bcc addresses. An address stays only in the first list that names it."""
    seen = set()
    to = _without_duplicates(_parse_recipient_field(payload, "to"), seen)
    cc = _without_duplicates(_parse_recipient_field(payload, "cc"), seen)
    bcc = _without_duplicates(_parse_recipient_field(payload, "bcc"), seen)
    if not (to or cc or bcc):
        raise ValidationError("payload.to", "missing recipient; give at least one address in to, cc or bcc")
    return to, cc, bcc


# --- Bodies and attachments --------------------------------------------------------


def _bodies(payload):
    """Return ``(text, html)``, reading ``body`` as ``text``. At least one of the two is set."""
    text_field = "text"
    if payload.get("body") is not None:
        if payload.get("text") is not None:
            raise ValidationError("payload.body", "give either text or body (the older name for text), not both")
        text_field = "body"
    text = payload.get(text_field)
    html = payload.get("html")
    for name, value in ((text_field, text), ("html", html)):
        if value is not None and not isinstance(value, str):
            raise ValidationError(f"payload.{name}", f"must be a string, not {type(value).__name__}")
    if text is None and html is None:
        raise ValidationError("payload.text", "missing message body; give text, html or both")
    return text, html


def _decode_base64(field_path, content):
    if not isinstance(content, str):
        raise ValidationError(field_path, f"must be a base64 string, not {type(content).__name__}")
    compact = "".join(content.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(field_path, "invalid base64; encode the file's bytes with standard base64") from None


def _resolve_attachment_path(field_path, path_text, attachment_dir):
    """Return the real path of an attachment, which must be inside ``attachment_dir``."""
    if attachment_dir is None:
        raise ValidationError(
            field_path,
            "file attachments are disabled; set JOBS_EMAIL_ATTACHMENT_DIR or send the file as base64 content",
        )
    if not isinstance(path_text, str) or not path_text:
        raise ValidationError(field_path, "must be a non-empty string")
    if "\0" in path_text:
        raise ValidationError(field_path, "must not contain a NUL character")
    real_path = Path(os.path.realpath(attachment_dir / path_text))
    if not real_path.is_relative_to(attachment_dir):
        raise ValidationError(
            field_path,
            f"{path_text!r} resolves outside JOBS_EMAIL_ATTACHMENT_DIR ({attachment_dir}); "
            "attachments must be files inside that directory",
        )
    return real_path


def _read_attachment_file(field_path, real_path, attachment_dir):
    """Read a regular file that is still inside ``attachment_dir`` once it is open.

    The path was resolved before opening, so a symlink or directory swapped in since
    then could point elsewhere. O_NOFOLLOW rejects a symlink as the last component,
    and where ``/proc`` exists the open file's own path is checked again.
    """
    try:
        fd = os.open(real_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ValidationError(field_path, f"file not found: {real_path}") from None
    except OSError as error:
        raise ValidationError(field_path, f"cannot open {real_path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        proc_link = f"/proc/self/fd/{fd}"
        if os.path.exists(proc_link) and not Path(os.readlink(proc_link)).is_relative_to(attachment_dir):
            raise ValidationError(field_path, f"{real_path} moved outside JOBS_EMAIL_ATTACHMENT_DIR while opening")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValidationError(field_path, f"{real_path} is not a regular file")
        return file.read()


def _normalise_attachment(index, attachment, config, read_file):
    """Check one attachment and return ``(normalised, data)``. ``data`` is None unless ``read_file`` is true."""
    prefix = f"payload.attachments[{index}]"
    if not isinstance(attachment, dict):
        raise ValidationError(prefix, "must be an object with filename and content or path")
    has_content = attachment.get("content") is not None
    has_path = attachment.get("path") is not None
    if has_content == has_path:
        raise ValidationError(prefix, "give exactly one of content (base64) or path")

    normalised = {}
    data = None
    if has_content:
        data = _decode_base64(f"{prefix}.content", attachment["content"])
        normalised["content"] = "".join(attachment["content"].split())
        default_name = None
    else:
        real_path = _resolve_attachment_path(f"{prefix}.path", attachment["path"], config.attachment_dir)
        normalised["path"] = attachment["path"]
        default_name = real_path.name
        if read_file:
            data = _read_attachment_file(f"{prefix}.path", real_path, config.attachment_dir)
        elif not real_path.is_file():
            raise ValidationError(f"{prefix}.path", f"file not found: {real_path}")

    filename = attachment.get("filename") or default_name
    if not filename:
        raise ValidationError(f"{prefix}.filename", "missing file name for base64 content")
    _check_header_value(f"{prefix}.filename", filename)
    normalised["filename"] = filename

    content_type = attachment.get("contentType")
    if content_type is None:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    _check_header_value(f"{prefix}.contentType", content_type)
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValidationError(
            f"{prefix}.contentType", f"invalid MIME type {content_type!r}; expected type/subtype such as application/pdf"
        )
    normalised["contentType"] = content_type.lower()
    return normalised, data


def _attachments(payload, config, read_files):
    value = payload.get("attachments")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("payload.attachments", "must be a list of attachment objects")
    return [_normalise_attachment(index, item, config, read_files) for index, item in enumerate(value)]


# --- Validation and message building -----------------------------------------------


def _sender(payload, config):
    if payload.get("from") is not None:
        return _parse_single_address("payload.from", payload["from"])
    if config.sender is None:
        raise ValidationError("payload.from", "missing sender; give payload.from or set JOBS_SMTP_FROM")
    return config.sender


def _reply_to(payload):
    addresses = _parse_recipient_field(payload, "replyTo")
    return _without_duplicates(addresses, set())


def _subject(payload):
    if "subject" not in payload or payload["subject"] is None:
        raise ValidationError("payload.subject", "missing subject; give a string (it may be empty)")
    _check_header_value("payload.subject", payload["subject"])
    return payload["subject"]


def validate(payload, settings):
    """Check a send-email payload and return it normalised, with ``body`` renamed to ``text``."""
    if not isinstance(payload, dict):
        raise ValidationError("payload", "must be an object")
    config = from_settings(settings)
    to, cc, bcc = _recipients(payload)
    sender = _sender(payload, config)
    reply_to = _reply_to(payload)
    subject = _subject(payload)
    text, html = _bodies(payload)
    attachments = _attachments(payload, config, read_files=False)

    normalised = {
        "to": [str(address) for address in to],
        "cc": [str(address) for address in cc],
        "bcc": [str(address) for address in bcc],
        "subject": subject,
    }
    if payload.get("from") is not None:
        normalised["from"] = str(sender)
    if reply_to:
        normalised["replyTo"] = [str(address) for address in reply_to]
    if text is not None:
        normalised["text"] = text
    if html is not None:
        normalised["html"] = html
    if attachments:
        normalised["attachments"] = [item for item, _ in attachments]
    return normalised


def build_message(payload, config, now=None):
    """Build the message and return ``(message, sender, recipients)`` for the SMTP envelope.

    ``recipients`` lists each To, Cc and Bcc address once. The message has no Bcc
    header, so every copy shows only To and Cc.
    """
    to, cc, bcc = _recipients(payload)
    sender = _sender(payload, config)
    reply_to = _reply_to(payload)
    text, html = _bodies(payload)
    attachments = _attachments(payload, config, read_files=True)

    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = sender
    if to:
        message["To"] = to
    if cc:
        message["Cc"] = cc
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = _subject(payload)
    message["Date"] = email.utils.format_datetime(now or datetime.now(timezone.utc))
    message["Message-ID"] = email.utils.make_msgid(domain=sender.domain)

    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")

    for attachment, data in attachments:
        maintype, subtype = attachment["contentType"].split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=attachment["filename"])

    recipients = [address.addr_spec for address in to + cc + bcc]
    return message, sender.addr_spec, recipients


# --- SMTP conversation ---------------------------------------------------------------


def _bound_timeout(smtp, config, ctx):
    """Set the socket timeout to the smaller of JOBS_SMTP_TIMEOUT and the job's time left."""
    smtp.sock.settimeout(min(config.timeout_ms / 1000.0, ctx.remaining_s()))


def _open_connection(config, ctx):
    """Connect, send EHLO, upgrade to TLS if configured, log in and return the SMTP client."""
    timeout_s = min(config.timeout_ms / 1000.0, ctx.remaining_s())
    # socket.getfqdn(), smtplib's default EHLO name, can block on DNS without a timeout.
    local_hostname = socket.gethostname()
    tls_context = ssl.create_default_context()
    if config.security == "tls":
        smtp = smtplib.SMTP_SSL(
            config.host, config.port, local_hostname=local_hostname, timeout=timeout_s, context=tls_context
        )
    else:
        smtp = smtplib.SMTP(config.host, config.port, local_hostname=local_hostname, timeout=timeout_s)

    try:
        _bound_timeout(smtp, config, ctx)
        smtp.ehlo_or_helo_if_needed()
        if config.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise PermanentJobFailure(
                    f"SMTP server {config.host}:{config.port} does not offer STARTTLS; "
                    "set JOBS_SMTP_SECURITY=tls for an implicit-TLS port or none to send unencrypted"
                )
            _bound_timeout(smtp, config, ctx)
            smtp.starttls(context=tls_context)
            _bound_timeout(smtp, config, ctx)
            smtp.ehlo_or_helo_if_needed()
        if config.user:
            if config.security == "none":
                logger.warning("Sending the SMTP password to %s:%d without TLS", config.host, config.port)
            _bound_timeout(smtp, config, ctx)
            smtp.login(config.user, config.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _deliver(smtp, config, ctx, sender, recipients, data):
    """Run MAIL, RCPT and DATA and return the rejected recipients as ``{address: (code, reply)}``.

    Each command gets its own bounded timeout, which ``SMTP.sendmail`` cannot do.
    """
    options = [f"SIZE={len(data)}"] if smtp.has_extn("size") else []
    _bound_timeout(smtp, config, ctx)
    code, reply = smtp.mail(sender, options)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)

    rejected = {}
    for recipient in recipients:
        _bound_timeout(smtp, config, ctx)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            rejected[recipient] = (code, reply)
    if len(rejected) == len(recipients):
        raise smtplib.SMTPRecipientsRefused(rejected)

    _bound_timeout(smtp, config, ctx)
    code, reply = smtp.data(data)
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return rejected


def _quit_after_delivery(smtp, config, ctx):
    """Send QUIT, ignoring network errors and the deadline, because the server has already accepted the message."""
    try:
        _bound_timeout(smtp, config, ctx)
        smtp.quit()
    except (smtplib.SMTPException, OSError, JobTimeout):
        smtp.close()


def _reply_text(code, reply):
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}"


def _translate_smtp_error(error, config, ctx):
    """Return PermanentJobFailure for a permanent failure, or SmtpTemporaryError for one worth retrying.

    Raises JobTimeout instead when the job's deadline has passed, because the
    socket timeouts are bounded by it.
    """
    ctx.remaining_s()
    server = f"{config.host}:{config.port}"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = "; ".join(f"{address}: {_reply_text(*reply)}" for address, reply in error.recipients.items())
        message = f"SMTP server {server} rejected every recipient ({replies})"
        permanent = all(code >= 500 for code, _ in error.recipients.values())
        return PermanentJobFailure(message) if permanent else SmtpTemporaryError(message)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return PermanentJobFailure(f"SMTP server {server} does not support a required extension: {error}")
    if isinstance(error, smtplib.SMTPResponseException):
        message = f"SMTP server {server} rejected the message: {_reply_text(error.smtp_code, error.smtp_error)}"
        return PermanentJobFailure(message) if error.smtp_code >= 500 else SmtpTemporaryError(message)
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentJobFailure(
            f"TLS certificate of SMTP server {server} failed verification: {error.verify_message}; "
            "check JOBS_SMTP_HOST, or point SSL_CERT_FILE at the CA that signed it"
        )
    if isinstance(error, ssl.SSLError):
        return SmtpTemporaryError(
            f"TLS with SMTP server {server} failed: {error}; check that JOBS_SMTP_SECURITY matches the port "
            "(tls for 465, starttls for 587)"
        )
    # smtplib reports a read timeout as SMTPServerDisconnected raised while handling the TimeoutError.
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        return SmtpTemporaryError(f"SMTP server {server} timed out after {config.timeout_ms} ms (JOBS_SMTP_TIMEOUT)")
    return SmtpTemporaryError(f"sending through SMTP server {server} failed: {error}")


def run(payload, ctx):
    """Send the e-mail and return its Message-ID and recipient counts."""
    config = from_settings(ctx.settings)
    message, sender, recipients = build_message(payload, config)
    data = message.as_bytes(policy=MESSAGE_POLICY)
    ctx.progress(10, f"connecting to {config.host}:{config.port}")

    try:
        smtp = _open_connection(config, ctx)
        try:
            ctx.progress(40, f"sending to {len(recipients)} recipients")
            rejected = _deliver(smtp, config, ctx, sender, recipients, data)
        except BaseException:
            smtp.close()
            raise
    except (smtplib.SMTPException, OSError) as error:
        raise _translate_smtp_error(error, config, ctx) from error
    _quit_after_delivery(smtp, config, ctx)

    message_id = str(message["Message-ID"])
    accepted = len(recipients) - len(rejected)
    logger.info(
        "Sent message %s for job %s to %d of %d recipients through %s:%d",
        message_id, ctx.job_id, accepted, len(recipients), config.host, config.port,
    )
    ctx.progress(100, "sent")
    return {
        "messageId": message_id,
        "acceptedCount": accepted,
        "rejectedRecipients": {address: _reply_text(*reply) for address, reply in rejected.items()},
    }


JOB_TYPE = JobType(
    name="send-email",
    description="Send an e-mail with optional CC, BCC and attachments through SMTP",
    validate=validate,
    run=run,
)
