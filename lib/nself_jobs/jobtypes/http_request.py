"""The http-request job type and the HTTP client that custom jobs share.

Payload fields:

``method``
    GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS (default GET).
``url``
    An http:// or https:// URL without user name or password. The target must pass
    the address policy of :mod:`nself_jobs.net_guard`.
``headers``
    Object of header names to string values. Host, Content-Length,
    Transfer-Encoding and Connection are set by the client and cannot be given.
``query``
    Object of query parameters appended to the URL's query. A value is a string,
    number, boolean or a list of those, and a list repeats the parameter.
``json`` or ``body``
    Request body, not both: ``json`` is any JSON value except null, sent with
    ``Content-Type: application/json`` unless ``headers`` sets one. ``body`` is a
    string sent as UTF-8.
``timeout``
    Maximum time in ms for the whole exchange, redirects included. The job's own
    deadline caps it, and without it the job's deadline is the only limit.
``followRedirects``, ``maxRedirects``
    Follow 301, 302, 303, 307 and 308 responses (default true) up to
    ``maxRedirects`` hops (default 5, maximum 20). More hops fail the job. A 303
    response, or a 301 or 302 response to a POST, is followed with a GET without
    a body. On a redirect to another origin only content negotiation headers
    (Accept, Accept-Language, Content-Type, Content-Language, User-Agent) are
    kept, so credentials in any other header do not reach the new host.
``expectStatus``
    Status codes that count as success: numbers, classes such as ``"2xx"`` or
    ranges such as ``"200-204"`` (default ``["2xx"]``).
``retryOn``
    Status codes, in the same forms, that raise :class:`RetryableHttpError` so the
    queue retries the job (default ``[429, 502, 503, 504]``). ``expectStatus`` is
    checked first. Any other status raises PermanentJobFailure, so the job fails
    without retries. Refused or reset connections and an expired ``timeout`` also
    raise RetryableHttpError. A rejected target, an invalid redirect, too many
    redirects or a failed certificate check raise PermanentJobFailure. Other
    failures, an unknown host included, raise JobFailed and are retried.

The result contains ``status``, ``reason``, ``headers`` (lower-case names, repeated
headers joined with ", "), ``body``, ``bodyEncoding`` (``text``, or ``base64`` for
content that is not text), ``truncated``, ``durationMs``, ``url`` (the final URL)
and ``redirects`` (the URLs that responded with a redirect). The body is cut at
``JOBS_HTTP_MAX_RESPONSE_BYTES`` bytes (default 65536, from 0 to 64 MiB), and the
rest of the response is not read.

Every blocking step (DNS lookup, connect, TLS handshake, each send and receive) is
bounded by the time left before the job's deadline, so a server that trickles its
response fails the job with JobTimeout at the deadline.
"""

import base64
import codecs
import email.message
import email.utils
import functools
import http.client
import io
import json
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from .. import __version__
from ..errors import JobFailed, JobTimeout, PermanentJobFailure, ValidationError
from ..net_guard import RESOLVE_NOT_FOUND_CODES, AddressPolicy, TargetRejected, parse_host, vet_target
from .base import JobType

logger = logging.getLogger(__name__)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_EXPECT_STATUS = ("2xx",)
DEFAULT_RETRY_ON = (429, 502, 503, 504)
DEFAULT_MAX_REDIRECTS = 5
MAX_REDIRECTS_LIMIT = 20
MAX_URL_LENGTH = 8192
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
USER_AGENT = f"nself-jobs/{__version__}"

_FIELDS = (
    "method",
    "url",
    "headers",
    "query",
    "json",
    "body",
    "timeout",
    "followRedirects",
    "maxRedirects",
    "expectStatus",
    "retryOn",
)
_HEADERS_SET_BY_CLIENT = ("host", "content-length", "transfer-encoding", "connection")
_HEADERS_KEPT_ACROSS_ORIGINS = ("accept", "accept-language", "content-type", "content-language", "user-agent")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FORBIDDEN_HEADER_VALUE_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NETLOC = re.compile(r"(\[[^\[\]]+\]|[^\[\]:]+)(:[0-9]*)?")
_URL_FORBIDDEN_CHARACTER = re.compile(r"[\x00-\x20\x7f\\]")
_STATUS_CLASS = re.compile(r"([1-5])xx")
_STATUS_RANGE = re.compile(r"([1-5][0-9]{2})-([1-5][0-9]{2})")
_TEXT_SUBTYPES = ("json", "xml", "javascript", "x-www-form-urlencoded", "csv", "yaml", "graphql")
_READ_CHUNK_BYTES = 65536
_ERROR_BODY_CHARACTERS = 500


class RetryableHttpError(JobFailed):
    """Raised for a failed attempt that a later attempt may fix.

    ``status`` is the response status, or None for a connection failure or a
    request timeout. ``retry_after_s`` is the wait in seconds that the server
    requested with Retry-After, or None when it sent none.
    """

    def __init__(self, message, status=None, retry_after_s=None):
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(message)


@dataclass(frozen=True)
class HttpSettings:
    """Settings of outgoing HTTP requests, read from ``Settings.env``."""

    max_response_bytes: int

    @classmethod
    def from_settings(cls, settings):
        return cls(
            max_response_bytes=settings.env.int(
                "JOBS_HTTP_MAX_RESPONSE_BYTES", 65536, minimum=0, maximum=64 * 1_048_576
            ),
        )


# -- URLs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A parsed request URL: where to connect and what to send in the request line and Host header."""

    scheme: str
    host: object
    port: int
    host_header: str
    request_target: str

    @property
    def origin(self):
        return (self.scheme, self.host, self.port)

    @property
    def server_name(self):
        """The name for TLS SNI and certificate checks: the hostname, or the IP address."""
        return str(self.host)


def parse_url(url):
    """Parse an http(s) URL into a :class:`Target`, or raise ValueError with the reason."""
    if not isinstance(url, str) or not url:
        raise ValueError("must be a non-empty string such as https://example.com/path")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"is longer than {MAX_URL_LENGTH} characters")
    if _URL_FORBIDDEN_CHARACTER.search(url):
        raise ValueError("must not contain spaces, control characters or backslashes; percent-encode them")

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"must start with http:// or https://, not {parts.scheme or url!r}")
    if "@" in parts.netloc:
        raise ValueError("must not contain a user name or password; send credentials in headers.Authorization")
    if not parts.netloc or not _NETLOC.fullmatch(parts.netloc):
        raise ValueError(f"has an invalid host and port {parts.netloc!r}")

    explicit_port = parts.port
    if explicit_port == 0:
        raise ValueError("has port 0, which no server listens on")
    default_port = 443 if scheme == "https" else 80
    port = explicit_port or default_port
    host = parse_host(parts.hostname)

    host_text = f"[{host}]" if getattr(host, "version", 4) == 6 else str(host)
    host_header = host_text if port == default_port else f"{host_text}:{port}"
    path = _percent_encode_non_ascii(parts.path or "/")
    query = _percent_encode_non_ascii(parts.query)
    request_target = f"{path}?{query}" if query else path
    return Target(scheme, host, port, host_header, request_target)


def _percent_encode_non_ascii(text):
    return "".join(character if ord(character) < 128 else _percent_encode(character) for character in text)


def _percent_encode(character):
    return "".join(f"%{byte:02X}" for byte in character.encode("utf-8"))


def redact_url(url):
    """Return the URL without user info, query and fragment, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def add_query(url, pairs):
    """Return ``url`` with the query ``pairs`` appended to its own query and its fragment removed."""
    parts = urlsplit(url)
    extra = urlencode(pairs)
    query = "&".join(part for part in (parts.query, extra) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


# -- Status patterns and Retry-After ----------------------------------------------------------


def parse_status_patterns(value, field):
    """Validate a list of status codes, ``"Nxx"`` classes and ``"NNN-NNN"`` ranges and return it normalised."""
    if not isinstance(value, list) or not value:
        raise ValidationError(field, 'must be a non-empty list such as [200, "2xx", "300-304"]')
    patterns = []
    for index, item in enumerate(value):
        item_field = f"{field}[{index}]"
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if isinstance(item, int) and not isinstance(item, bool):
            if not 100 <= item <= 599:
                raise ValidationError(item_field, f"status {item} is outside 100-599")
            patterns.append(item)
            continue
        text = item.strip().lower() if isinstance(item, str) else None
        if text is not None and _STATUS_CLASS.fullmatch(text):
            patterns.append(text)
            continue
        match = _STATUS_RANGE.fullmatch(text) if text is not None else None
        if match and int(match.group(1)) <= int(match.group(2)):
            patterns.append(text)
            continue
        raise ValidationError(
            item_field,
            f'invalid status pattern {item!r}; use a code such as 200, a class such as "2xx" '
            'or a range such as "200-204"',
        )
    return patterns


def status_matches(status, patterns):
    """Return whether ``status`` matches one of the normalised ``patterns``."""
    for pattern in patterns:
        if isinstance(pattern, int):
            if status == pattern:
                return True
        elif pattern.endswith("xx"):
            if status // 100 == int(pattern[0]):
                return True
        else:
            low, high = (int(bound) for bound in pattern.split("-"))
            if low <= status <= high:
                return True
    return False


def parse_retry_after(value, now=None):
    """Return the wait in seconds that a Retry-After value requests, or None when it is invalid.

    The value is either a number of seconds or an HTTP date. A date in the past
    returns 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


# -- The client -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingRequest:
    """One request for :func:`send_request`. ``headers`` is a tuple of (name, value) pairs."""

    method: str
    url: str
    headers: tuple = ()
    body: bytes | None = None
    timeout_s: float | None = None
    follow_redirects: bool = True
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    operator_configured: bool = False


@dataclass(frozen=True)
class HttpResponse:
    """The final response of :func:`send_request`. ``body`` is cut at the configured maximum."""

    method: str
    url: str
    status: int
    reason: str
    headers: tuple
    body: bytes
    truncated: bool
    duration_ms: int
    redirects: tuple = ()

    def header(self, name):
        """Return the header's values joined with ", ", or None when it is missing."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None


class _RequestTimeout(Exception):
    """Raised when the request's own timeout, shorter than the job's deadline, passes."""


class _Deadline:
    """The earlier of the job's deadline and the request's timeout, and which one binds."""

    def __init__(self, ctx, timeout_s):
        self._ctx = ctx
        self._request_end = None if timeout_s is None else time.monotonic() + timeout_s
        self._job_binds = True

    def seconds_left(self):
        """Return the seconds left, or raise JobTimeout or _RequestTimeout when none are left."""
        job_left = self._ctx.remaining_s()
        if self._request_end is None:
            self._job_binds = True
            return job_left
        request_left = self._request_end - time.monotonic()
        if request_left <= 0:
            raise _RequestTimeout()
        self._job_binds = job_left <= request_left
        return min(job_left, request_left)

    def expired(self):
        """Return the error for a socket timeout that used the last ``seconds_left()``."""
        if self._job_binds:
            return JobTimeout(self._ctx.timeout_ms)
        return _RequestTimeout()


class _DeadlineReader(io.RawIOBase):
    """Raw reader whose every receive waits at most the time left before the deadline."""

    def __init__(self, owner):
        super().__init__()
        self._owner = owner

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._owner.recv_into(buffer)

    def close(self):
        if not self.closed:
            self._owner.reader_closed()
        super().close()


class _DeadlineSocket:
    """The part of the socket interface that http.client uses, bounded by a deadline.

    A plain socket timeout limits each receive on its own, so a server sending one
    byte at a time could hold the job forever. Here each send and receive gets the
    time left, and the total is bounded. Like ``socket.socket``, the socket stays
    open until ``close()`` was called and every reader from ``makefile()`` is
    closed. http.client relies on that, because it calls ``close()`` before the
    body is read when the server ends the connection after the response.
    """

    def __init__(self, sock, deadline):
        self._sock = sock
        self._deadline = deadline
        self._open_readers = 0
        self._close_requested = False

    def sendall(self, data):
        self._sock.settimeout(self._deadline.seconds_left())
        self._sock.sendall(data)

    def recv_into(self, buffer):
        self._sock.settimeout(self._deadline.seconds_left())
        return self._sock.recv_into(buffer)

    def makefile(self, mode="rb", buffering=None, **_ignored):
        if mode != "rb":
            raise ValueError(f"only mode 'rb' is supported, not {mode!r}")
        self._open_readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def reader_closed(self):
        self._open_readers -= 1
        self._close_if_unused()

    def close(self):
        self._close_requested = True
        self._close_if_unused()

    def _close_if_unused(self):
        if self._close_requested and self._open_readers == 0:
            self._sock.close()


@functools.lru_cache(maxsize=1)
def _tls_context():
    return ssl.create_default_context()


class _PinnedConnection(http.client.HTTPConnection):
    """HTTPConnection to addresses vetted by net_guard, never to a name resolved again at connect time."""

    def __init__(self, target, addresses, deadline):
        super().__init__(str(target.host), target.port)
        self._target = target
        self._addresses = addresses
        self._deadline = deadline

    def connect(self):
        sock = self._connect_first_address()
        try:
            if self._target.scheme == "https":
                sock.settimeout(self._deadline.seconds_left())
                sock = _tls_context().wrap_socket(sock, server_hostname=self._target.server_name)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self._deadline)

    def _connect_first_address(self):
        last_error = None
        for address in self._addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._deadline.seconds_left())
                sock.connect((str(address), self._target.port))
            except TimeoutError:
                sock.close()
                raise
            except OSError as error:
                # Refused or unreachable, so try the next vetted address.
                sock.close()
                last_error = error
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise last_error


def send_request(request, ctx, policy, max_response_bytes):
    """Send ``request``, follow its redirects and return the final :class:`HttpResponse`.

    Every hop is checked against ``policy``. Raises PermanentJobFailure (TargetRejected
    among them) when a retry cannot help, RetryableHttpError for a connection failure
    or request timeout, JobFailed for other failures, and JobTimeout when the job's
    deadline passes.
    """
    deadline = _Deadline(ctx, request.timeout_s)
    started = time.monotonic()
    method, url, headers, body = request.method, request.url, tuple(request.headers), request.body
    redirects = []

    while True:
        target = _parse_hop_url(url, redirects)
        logger.debug("job %s: %s %s", ctx.job_id, method, redact_url(url))
        status, reason, response_headers, data, truncated = _send_hop(
            method, url, target, headers, body, deadline, ctx, policy, request, max_response_bytes
        )

        location = _header_value(response_headers, "location")
        if not (request.follow_redirects and status in REDIRECT_STATUSES and location):
            break
        if len(redirects) >= request.max_redirects:
            raise PermanentJobFailure(
                f"{request.method} {redact_url(request.url)} stopped after {len(redirects)} redirects "
                f"(maxRedirects is {request.max_redirects}); the last one pointed to {redact_url(location)}"
            )

        next_url = urljoin(url, _decode_location(location))
        redirects.append(url)
        next_target = _parse_hop_url(next_url, redirects)
        method, body, headers = _redirected_request(status, method, body, headers, target, next_target)
        url = next_url

    return HttpResponse(
        method=method,
        url=url,
        status=status,
        reason=reason,
        headers=response_headers,
        body=data,
        truncated=truncated,
        duration_ms=round((time.monotonic() - started) * 1000),
        redirects=tuple(redirects),
    )


def _parse_hop_url(url, redirects):
    try:
        return parse_url(url)
    except ValueError as error:
        if not redirects:
            raise PermanentJobFailure(f"invalid URL {redact_url(url)}: {error}") from None
        raise PermanentJobFailure(
            f"redirect from {redact_url(redirects[-1])} to an invalid URL {redact_url(url)}: {error}"
        ) from None


def _send_hop(method, url, target, headers, body, deadline, ctx, policy, request, max_response_bytes):
    """Send one request without following redirects and return its status, headers and body."""
    request_label = f"{method} {redact_url(url)}"
    try:
        addresses = vet_target(policy, target.host, target.port, deadline.seconds_left(), request.operator_configured)
        connection = _PinnedConnection(target, addresses, deadline)
        try:
            _write_request(connection, method, target, headers, body)
            response = connection.getresponse()
            try:
                data, truncated = _read_body(response, max_response_bytes)
            finally:
                response.close()
            return response.status, response.reason, tuple(response.getheaders()), data, truncated
        finally:
            connection.close()
    except TargetRejected as error:
        logger.warning("job %s: %s rejected by the address policy: %s", ctx.job_id, request_label, error.reason)
        raise
    except TimeoutError:
        error = deadline.expired()
        if isinstance(error, JobTimeout):
            raise error from None
        raise _request_timeout_error(request_label, request) from None
    except _RequestTimeout:
        raise _request_timeout_error(request_label, request) from None
    except socket.gaierror as error:
        if error.errno in RESOLVE_NOT_FOUND_CODES:
            # Retried, because a Docker service that is not up yet is not found either.
            raise JobFailed(f"{request_label} failed: host {target.host} not found") from None
        raise RetryableHttpError(f"{request_label} failed: resolving {target.host} failed ({error})") from None
    except ssl.SSLCertVerificationError as error:
        raise PermanentJobFailure(
            f"{request_label} failed: TLS certificate verification failed ({error.verify_message})"
        ) from None
    except ssl.SSLError as error:
        raise JobFailed(f"{request_label} failed: TLS error ({error})") from None
    except (http.client.RemoteDisconnected, http.client.IncompleteRead) as error:
        raise RetryableHttpError(
            f"{request_label} failed: connection closed before the response was complete ({error!r})"
        ) from None
    except http.client.HTTPException as error:
        raise JobFailed(f"{request_label} failed: invalid HTTP response ({error!r})") from None
    except OSError as error:
        raise RetryableHttpError(f"{request_label} failed: {error.strerror or error}") from None


def _request_timeout_error(request_label, request):
    timeout_ms = round(request.timeout_s * 1000)
    return RetryableHttpError(f"{request_label} timed out after {timeout_ms} ms (payload.timeout)")


def _write_request(connection, method, target, headers, body):
    names = {name.lower() for name, _value in headers}
    connection.putrequest(
        method, target.request_target, skip_host=True, skip_accept_encoding="accept-encoding" in names
    )
    connection.putheader("Host", target.host_header)
    if "user-agent" not in names:
        connection.putheader("User-Agent", USER_AGENT)
    for name, value in headers:
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    elif method in ("POST", "PUT", "PATCH"):
        connection.putheader("Content-Length", "0")
    connection.putheader("Connection", "close")
    connection.endheaders(body)


def _read_body(response, max_bytes):
    """Read at most ``max_bytes`` of the body. Returns the bytes and whether the body was longer."""
    chunks = []
    total = 0
    while total <= max_bytes:
        chunk = response.read(min(_READ_CHUNK_BYTES, max_bytes + 1 - total))
        if not chunk:
            if response.length:
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            break
        chunks.append(chunk)
        total += len(chunk)
    data = b"".join(chunks)
    return data[:max_bytes], len(data) > max_bytes


def _header_value(headers, name):
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _decode_location(location):
    # http.client decodes header bytes as Latin-1, but servers send UTF-8 in Location.
    try:
        return location.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return location


def _redirected_request(status, method, body, headers, target, next_target):
    """Return the method, body and headers for following a redirect from ``target``."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
        body = None
        body_headers = ("content-type", "content-language")
        headers = tuple((name, value) for name, value in headers if name.lower() not in body_headers)
    if next_target.origin != target.origin:
        headers = tuple((name, value) for name, value in headers if name.lower() in _HEADERS_KEPT_ACROSS_ORIGINS)
    return method, body, headers


def raise_for_status(response, expect_status, retry_on, failure=PermanentJobFailure):
    """Raise RetryableHttpError or ``failure`` unless the response status is expected."""
    if status_matches(response.status, expect_status):
        return
    summary = f"{response.method} {redact_url(response.url)} returned {response.status} {response.reason}".rstrip()
    if status_matches(response.status, retry_on):
        retry_after_s = parse_retry_after(response.header("retry-after"))
        wait = f"; retry after {retry_after_s:g} s" if retry_after_s is not None else ""
        raise RetryableHttpError(summary + wait, status=response.status, retry_after_s=retry_after_s)
    raise failure(f"{summary}; response body: {body_excerpt(response)}")


def body_excerpt(response):
    """Return the start of the response body as text for an error message."""
    text, encoding = decode_body(response.body, response.header("content-type"), response.truncated)
    if encoding != "text":
        return f"({len(response.body)} bytes of binary data)"
    if len(text) > _ERROR_BODY_CHARACTERS or response.truncated:
        return repr(text[:_ERROR_BODY_CHARACTERS]) + " (truncated)"
    return repr(text)


def decode_body(data, content_type, truncated):
    """Return ``(text, "text")`` for a textual body, else ``(base64, "base64")``.

    A body counts as text when its Content-Type is missing, text/*, JSON, XML or
    similar, or names a charset, and it decodes in that charset (default UTF-8).
    A truncated body drops a character cut in half at the end.
    """
    message = email.message.Message()
    if content_type:
        message["content-type"] = content_type
    mime_type = message.get_content_type() if content_type else None
    charset = message.get_content_charset() if content_type else None
    textual = (
        mime_type is None
        or charset is not None
        or mime_type.startswith("text/")
        or any(mime_type.endswith(("/" + subtype, "+" + subtype)) for subtype in _TEXT_SUBTYPES)
    )
    if textual:
        try:
            decoder = codecs.getincrementaldecoder(charset or "utf-8")()
            return decoder.decode(data, final=not truncated), "text"
        except (LookupError, UnicodeDecodeError):
            pass
    return base64.b64encode(data).decode("ascii"), "base64"


# -- Payload validation ------------------------------------------------------------------------------


def _require_object(value, field):
    if not isinstance(value, dict):
        raise ValidationError(field, f"must be a JSON object, not {type(value).__name__}")
    return value


def _validate_method(value):
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise ValidationError("payload.method", f"invalid method {value!r}; use one of {', '.join(METHODS)}")
    return value.upper()


def validate_headers(value, field):
    """Validate an object of header names to string values and return it."""
    _require_object(value, field)
    for name, header_value in value.items():
        header_field = f"{field}.{name}"
        if not _HEADER_NAME.fullmatch(name):
            raise ValidationError(header_field, "invalid header name; use letters, digits and -")
        if name.lower() == "host":
            raise ValidationError(header_field, "is set by the client from the URL; put the host in payload.url")
        if name.lower() in _HEADERS_SET_BY_CLIENT:
            raise ValidationError(header_field, "is set by the client from the body and cannot be given; remove it")
        if not isinstance(header_value, str):
            raise ValidationError(header_field, f"must be a string, not {type(header_value).__name__}; quote numbers")
        if _FORBIDDEN_HEADER_VALUE_CHARACTER.search(header_value):
            raise ValidationError(header_field, "must not contain CR, LF or other control characters")
        try:
            header_value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValidationError(
                header_field, "must contain only Latin-1 characters; percent-encode others"
            ) from None
    return dict(value)


def _query_pairs(value):
    _require_object(value, "payload.query")
    pairs = []
    for name, item in value.items():
        items = item if isinstance(item, list) else [item]
        for element in items:
            if isinstance(element, bool):
                pairs.append((name, "true" if element else "false"))
            elif isinstance(element, (str, int, float)):
                pairs.append((name, str(element)))
            else:
                raise ValidationError(
                    f"payload.query.{name}", "must be a string, number, boolean or a list of those"
                )
    return pairs


def validate_timeout(value, field):
    """Validate a timeout in ms from 1 to 24 hours and return it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 86_400_000:
        raise ValidationError(field, f"invalid timeout {value!r}; use whole milliseconds from 1 to 86400000")
    return value


def _validate_body(payload):
    has_json = payload.get("json") is not None
    has_body = payload.get("body") is not None
    if has_json and has_body:
        raise ValidationError("payload.body", "cannot be given together with payload.json; send one of them")
    if has_json:
        try:
            json.dumps(payload["json"], allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValidationError("payload.json", f"is not valid JSON ({error})") from None
    if has_body and not isinstance(payload["body"], str):
        raise ValidationError("payload.body", "must be a string; send structured data as payload.json")


def _normalise(payload):
    _require_object(payload, "payload")
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise ValidationError(f"payload.{unknown[0]}", f"unknown field; known fields: {', '.join(_FIELDS)}")

    normalised = {"method": _validate_method(payload.get("method", "GET"))}
    try:
        parse_url(payload.get("url"))
    except ValueError as error:
        raise ValidationError("payload.url", str(error)) from None
    normalised["url"] = payload["url"]
    normalised["headers"] = validate_headers(payload.get("headers", {}), "payload.headers")
    normalised["query"] = dict(_require_object(payload.get("query", {}), "payload.query"))
    _query_pairs(normalised["query"])

    _validate_body(payload)
    for name in ("json", "body"):
        if payload.get(name) is not None:
            normalised[name] = payload[name]
    if payload.get("timeout") is not None:
        normalised["timeout"] = validate_timeout(payload["timeout"], "payload.timeout")

    follow = payload.get("followRedirects", True)
    if not isinstance(follow, bool):
        raise ValidationError("payload.followRedirects", "must be true or false")
    normalised["followRedirects"] = follow
    max_redirects = payload.get("maxRedirects", DEFAULT_MAX_REDIRECTS)
    valid_number = isinstance(max_redirects, int) and not isinstance(max_redirects, bool)
    if not valid_number or not 0 <= max_redirects <= MAX_REDIRECTS_LIMIT:
        raise ValidationError("payload.maxRedirects", f"must be a whole number from 0 to {MAX_REDIRECTS_LIMIT}")
    normalised["maxRedirects"] = max_redirects

    normalised["expectStatus"] = parse_status_patterns(
        payload.get("expectStatus", list(DEFAULT_EXPECT_STATUS)), "payload.expectStatus"
    )
    normalised["retryOn"] = parse_status_patterns(payload.get("retryOn", list(DEFAULT_RETRY_ON)), "payload.retryOn")
    return normalised


def validate(payload, settings):
    """Validate and normalise an http-request payload.

    A target that the policy rejects without DNS, an IP literal or a listed name,
    raises ValidationError for ``payload.url`` here. Hostnames are checked again
    after resolution when the job runs.
    """
    normalised = _normalise(payload)
    policy = AddressPolicy.from_settings(settings)
    try:
        policy.check_literal(parse_url(normalised["url"]).host)
    except TargetRejected as error:
        raise ValidationError("payload.url", str(error)) from None
    return normalised


# -- Running ----------------------------------------------------------------------------------------------


def _build_request(payload):
    headers = dict(payload["headers"])
    body = None
    if "json" in payload:
        body = json.dumps(payload["json"], separators=(",", ":")).encode("utf-8")
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif "body" in payload:
        body = payload["body"].encode("utf-8")

    timeout_ms = payload.get("timeout")
    return OutgoingRequest(
        method=payload["method"],
        url=add_query(payload["url"], _query_pairs(payload["query"])),
        headers=tuple(headers.items()),
        body=body,
        timeout_s=None if timeout_ms is None else timeout_ms / 1000.0,
        follow_redirects=payload["followRedirects"],
        max_redirects=payload["maxRedirects"],
    )


def response_result(response):
    """Return the job result for a response."""
    headers = {}
    for name, value in response.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    body, encoding = decode_body(response.body, response.header("content-type"), response.truncated)
    return {
        "status": response.status,
        "reason": response.reason,
        "headers": headers,
        "body": body,
        "bodyEncoding": encoding,
        "truncated": response.truncated,
        "durationMs": response.duration_ms,
        "url": response.url,
        "redirects": list(response.redirects),
    }


def run(payload, ctx):
    """Send the request of an http-request job and return the response as the result."""
    try:
        payload = _normalise(payload)
    except ValidationError as error:
        raise PermanentJobFailure(f"invalid payload: {error}") from None
    request = _build_request(payload)
    policy = AddressPolicy.from_settings(ctx.settings)
    http_settings = HttpSettings.from_settings(ctx.settings)

    ctx.progress(0, f"sending {request.method} {redact_url(request.url)}")
    response = send_request(request, ctx, policy, http_settings.max_response_bytes)
    raise_for_status(response, payload["expectStatus"], payload["retryOn"])
    ctx.progress(100, f"received {response.status} {response.reason}".rstrip())
    return response_result(response)


JOB_TYPE = JobType(
    name="http-request",
    description="Send an HTTP request and store the response status, headers and body.",
    validate=validate,
    run=run,
)
