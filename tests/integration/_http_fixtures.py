"""A local HTTP server for job type tests: 127.0.0.1 or ::1, a free port, one thread per request.

Tests register a function per path with :meth:`LocalHttpServer.route`. The function
gets the :class:`RecordedRequest` and the ``BaseHTTPRequestHandler`` and returns a
:class:`Reply`, or writes the response itself through the handler and returns None.
"""

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: str
    headers: object
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    """A complete response; ``json_body`` is encoded and sent with its Content-Type."""

    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    json_body: object = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = RecordedRequest(self.command, parts.path, parts.query, self.headers, body)
        server = self.server.owner
        server.requests.append(request)

        respond = server.routes.get(parts.path)
        if respond is None:
            reply = Reply(404, body=b"no route")
        else:
            reply = respond(request, self)
        if reply is None:
            self.close_connection = True
            return
        self._send_reply(reply)

    def _send_reply(self, reply):
        body = reply.body
        headers = dict(reply.headers)
        if reply.json_body is not None:
            body = json.dumps(reply.json_body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gives up mid-response, as the deadline tests do on purpose,
        # makes the handler's write fail. That is expected, so nothing is printed.
        pass


class _Server6(_Server):
    address_family = socket.AF_INET6


def ipv6_loopback_available():
    """Return whether a socket can listen on ::1."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class LocalHttpServer:
    """An HTTP server on a loopback address with a free port, serving in a daemon thread until ``close()``.

    ``address`` is 127.0.0.1 or ::1. With a server-side ``tls_context`` it serves HTTPS.
    """

    def __init__(self, address="127.0.0.1", tls_context=None):
        if address not in ("127.0.0.1", "::1"):
            raise ValueError(f"test servers listen on loopback only, not on {address!r}")
        self.routes = {}
        self.requests = []
        server_class = _Server6 if address == "::1" else _Server
        self._server = server_class((address, 0), _Handler)
        if tls_context is not None:
            self._server.socket = tls_context.wrap_socket(self._server.socket, server_side=True)
        self._server.owner = self
        self.address = address
        self.scheme = "https" if tls_context is not None else "http"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="local http server", daemon=True
        )
        self._thread.start()

    def url(self, path="/", host=None):
        if host is None:
            host = "[::1]" if self.address == "::1" else self.address
        return f"{self.scheme}://{host}:{self.port}{path}"

    def route(self, path, respond):
        self.routes[path] = respond

    def reply(self, path, reply):
        """Respond to every request to ``path`` with the same ``reply``."""
        self.routes[path] = lambda _request, _handler: reply

    def requests_to(self, path):
        return [request for request in self.requests if request.path == path]

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
