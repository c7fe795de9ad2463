"""Authentication, CSRF protection and security headers.

With ``JOBS_API_TOKEN`` set:

- the API and ``/metrics`` require ``Authorization: Bearer <token>``; ``/health``,
  ``/ready`` and the dashboard's static files stay open;
- the dashboard requires a session cookie from its login form, or the same bearer
  header. The cookie contains ``<expiry>.<nonce>.<signature>``, signed with HMAC-SHA256
  under a key derived from the token, so changing the token ends every session.

Every dashboard form carries a CSRF token: the HMAC of a random value that the
server keeps in a cookie, which a page on another site can neither read nor
compute. Both cookies are HttpOnly and SameSite=Strict, and Secure when the
request came over https.
"""

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time

import bottle

log = logging.getLogger(__name__)

SESSION_COOKIE = "nself_jobs_session"
CSRF_COOKIE = "nself_jobs_csrf"
SESSION_LIFETIME_S = 12 * 3600
CSRF_FIELD = "csrf"
# Failed logins allowed per client address and window before the login form returns 429.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_FAILURE_WINDOW_S = 300

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# Referrer-Policy same-origin rather than no-referrer: under no-referrer browsers send
# "Origin: null" with form posts, which the CSRF check would reject.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _derive_key(secret, purpose):
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def add_security_headers():
    """Add the security headers to the current response; an after_request hook."""
    for name, value in SECURITY_HEADERS.items():
        bottle.response.set_header(name, value)
    if "Cache-Control" not in bottle.response.headers:
        bottle.response.set_header("Cache-Control", "no-store")


def request_is_https():
    return bottle.request.urlparts.scheme == "https"


class Security:
    """The token checks, session cookies and CSRF tokens of one server."""

    def __init__(self, api_token, cookie_path, clock=time.time):
        self.api_token = api_token
        self.cookie_path = cookie_path
        self.clock = clock
        # Without a token there are no sessions, but forms still need CSRF tokens. They are
        # signed with a random key made at start-up, so a restart invalidates open forms.
        secret = api_token.encode("utf-8") if api_token else os.urandom(32)
        self._session_key = _derive_key(secret, "nself-jobs dashboard session")
        self._csrf_key = _derive_key(secret, "nself-jobs dashboard csrf")
        self._failures = {}
        self._failures_lock = threading.Lock()

    @property
    def enabled(self):
        """Return whether a token is configured, so that the API and the dashboard require it."""
        return bool(self.api_token)

    # ------------------------------------------------------------ tokens

    def token_matches(self, candidate):
        """Compare a presented token with the configured one in constant time."""
        if not self.enabled or candidate is None:
            return False
        return hmac.compare_digest(candidate, self.api_token.encode("utf-8"))

    def bearer_valid(self):
        """Return whether the request carries ``Authorization: Bearer <token>`` with the configured token."""
        header = bottle.request.environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # WSGI passes header bytes through latin-1, so this recovers the bytes the client sent.
        return self.token_matches(value.strip().encode("latin-1", errors="replace"))

    # ------------------------------------------------------------ sessions

    def _sign(self, key, text):
        return hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()

    def new_session(self):
        """Return a signed session cookie value that expires after SESSION_LIFETIME_S."""
        body = f"{int(self.clock()) + SESSION_LIFETIME_S}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(self._session_key, body)}"

    def session_valid(self):
        """Return whether the request's session cookie is signed with the current key and not expired."""
        value = bottle.request.get_cookie(SESSION_COOKIE)
        if not value or value.count(".") != 2:
            return False
        body, _, signature = value.rpartition(".")
        try:
            expected = self._sign(self._session_key, body)
            expiry = int(body.split(".", 1)[0])
        except (UnicodeEncodeError, ValueError):
            return False
        return hmac.compare_digest(signature.encode("latin-1", errors="replace"), expected.encode()) \
            and expiry > self.clock()

    def dashboard_allowed(self):
        """Return whether the request may see the dashboard: no token set, a valid session or the bearer token."""
        return not self.enabled or self.session_valid() or self.bearer_valid()

    def set_cookie(self, name, value, max_age=None):
        """Set an HttpOnly, SameSite=Strict cookie on the dashboard path; without ``max_age``, a browser-session cookie."""
        options = {"path": self.cookie_path, "httponly": True, "samesite": "strict", "secure": request_is_https()}
        if max_age is not None:
            options["max_age"] = max_age
        bottle.response.set_cookie(name, value, **options)

    def start_session(self):
        self.set_cookie(SESSION_COOKIE, self.new_session(), SESSION_LIFETIME_S)

    def end_session(self):
        bottle.response.delete_cookie(SESSION_COOKIE, path=self.cookie_path, httponly=True, samesite="strict",
                                      secure=request_is_https())

    # ------------------------------------------------------------ login throttling

    def login_blocked(self, client):
        """Return whether ``client`` had LOGIN_FAILURES_ALLOWED failed logins within the window."""
        now = self.clock()
        with self._failures_lock:
            recent = [moment for moment in self._failures.get(client, []) if now - moment < LOGIN_FAILURE_WINDOW_S]
            self._failures[client] = recent
            return len(recent) >= LOGIN_FAILURES_ALLOWED

    def record_login_failure(self, client):
        with self._failures_lock:
            self._failures.setdefault(client, []).append(self.clock())
            if len(self._failures) > 10_000:
                # Bound the memory a scan of many addresses can take; old entries go first.
                for stale in list(self._failures)[:5_000]:
                    del self._failures[stale]

    # ------------------------------------------------------------ CSRF

    def csrf_token(self):
        """Return the CSRF token for the current browser, setting its cookie on first use."""
        seed = bottle.request.environ.get("nself_jobs.csrf_seed") or bottle.request.get_cookie(CSRF_COOKIE)
        if not _usable_seed(seed):
            seed = secrets.token_urlsafe(24)
            # A second form on the same page must get the same token, so keep the new value for this request.
            bottle.request.environ["nself_jobs.csrf_seed"] = seed
            self.set_cookie(CSRF_COOKIE, seed)
        return self._sign(self._csrf_key, seed)

    def csrf_problem(self):
        """Return why a dashboard POST fails the CSRF check, or None when it passes.

        The form must carry the token of the browser's CSRF cookie, and an Origin
        header, when the browser sends one, must name this server's Host.
        """
        seed = bottle.request.get_cookie(CSRF_COOKIE)
        submitted = bottle.request.forms.get(CSRF_FIELD) or ""
        if not _usable_seed(seed):
            return "the CSRF cookie is missing; reload the page and submit the form again"
        if not submitted.isascii() or not hmac.compare_digest(submitted.encode(),
                                                              self._sign(self._csrf_key, seed).encode()):
            return "invalid or missing CSRF token; reload the page and submit the form again"
        origin = bottle.request.get_header("Origin")
        host = bottle.request.get_header("Host") or ""
        if origin is not None and origin.split("://", 1)[-1].rstrip("/") != host:
            return (f"the request's Origin {origin!r} does not match its Host {host!r}; a reverse proxy in front "
                    "of the dashboard must pass the original Host header")
        return None


def _usable_seed(seed):
    return bool(seed) and len(seed) <= 100 and seed.isascii()
