"""A private PostgreSQL server for integration tests, started from the Debian server binaries.

``initdb`` and ``postgres`` refuse to run as root, so under root they run as
``nobody:nogroup`` with no supplementary groups, in a directory under /tmp that
only ``nobody`` can enter. The server listens on 127.0.0.1 at a free port, keeps its
Unix socket in a private directory and requires a scram-sha-256 password.
"""

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

NOBODY_UID = 65534
NOGROUP_GID = 65534
START_TIMEOUT_S = 30.0


def find_server_bin_dir():
    """Return the newest ``/usr/lib/postgresql/<major>/bin`` that has initdb and postgres."""
    candidates = [
        Path(path).parent
        for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if os.access(Path(path).parent / "postgres", os.X_OK)
    ]
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; install the postgresql package"
        )
    return max(candidates, key=lambda path: int(path.parent.name))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user():
    """Return the subprocess options that switch from root to nobody:nogroup, or no options for other users."""
    if os.geteuid() != 0:
        return {}
    return {"user": NOBODY_UID, "group": NOGROUP_GID, "extra_groups": []}


class PostgresServer:
    """A running private PostgreSQL server; :meth:`stop` shuts it down and removes its files."""

    user = "postgres"

    def __init__(self, base_dir, bin_dir, port, password, process):
        self.base_dir = base_dir
        self.bin_dir = bin_dir
        self.host = "127.0.0.1"
        self.port = port
        self.password = password
        self.process = process

    def url(self, dbname="postgres"):
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def url_without_password(self, dbname="postgres"):
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname="postgres", **options):
        return psycopg.connect(self.url(dbname), connect_timeout=5, **options)

    def create_database(self, name):
        with self.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def client_env(self):
        """Return an environment in which psql and pg_restore reach this server."""
        return dict(os.environ, PGPASSWORD=self.password)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _make_private_dir(base_dir):
    if os.geteuid() == 0:
        os.chown(base_dir, NOBODY_UID, NOGROUP_GID)
    os.chmod(base_dir, 0o700)


def _write_password_file(base_dir, password):
    path = base_dir / "pwfile"
    path.write_text(password + "\n")
    if os.geteuid() == 0:
        os.chown(path, NOBODY_UID, NOGROUP_GID)
    os.chmod(path, 0o600)
    return path


def _wait_until_ready(server, log_path):
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"postgres exited with status {server.process.returncode}:\n{log_path.read_text()}")
        try:
            with server.connect():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections within {START_TIMEOUT_S} s") from None
            time.sleep(0.1)


def start_postgres():
    """Create a fresh cluster under /tmp, start it and return the :class:`PostgresServer`."""
    bin_dir = find_server_bin_dir()
    base_dir = Path(tempfile.mkdtemp(prefix="nself-jobs-pg-", dir="/tmp"))
    _make_private_dir(base_dir)
    password = secrets.token_urlsafe(16)
    password_file = _write_password_file(base_dir, password)
    user_options = _as_server_user()

    data_dir = base_dir / "data"
    socket_dir = base_dir / "socket"
    subprocess.run(
        [
            str(bin_dir / "initdb"), "-D", str(data_dir), "-U", PostgresServer.user, f"--pwfile={password_file}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
        ],
        check=True, capture_output=True, cwd=base_dir, timeout=120, **user_options,
    )
    subprocess.run(["mkdir", "-m", "0700", str(socket_dir)], check=True, cwd=base_dir, **user_options)

    port = free_port()
    log_path = base_dir / "postgres.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                str(bin_dir / "postgres"), "-D", str(data_dir),
                "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
                "-c", f"unix_socket_directories={socket_dir}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            ],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=base_dir, **user_options,
        )
    server = PostgresServer(base_dir, bin_dir, port, password, process)
    try:
        _wait_until_ready(server, log_path)
    except BaseException:
        server.stop()
        raise
    return server


def run_client(server, tool, *arguments, stdin=None):
    """Run a client tool (psql, pg_restore) from the server's bin directory and return its stdout."""
    completed = subprocess.run(
        [str(server.bin_dir / tool), *arguments],
        input=stdin, capture_output=True, env=server.client_env(), timeout=120, check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"{tool} failed with status {completed.returncode}: {completed.stderr.decode()}")
    return completed.stdout


def fetch_rows(server, dbname, query):
    with server.connect(dbname) as connection:
        return connection.execute(query).fetchall()
