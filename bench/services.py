"""Servers, child processes and measuring helpers of one benchmark run, all on 127.0.0.1.

The run starts its own Redis and PostgreSQL with the plugin's embedded-server
code in a temporary directory under /tmp, unless it is given URLs. Every child
process it starts is registered in a :class:`ProcessSet` and stopped at exit.
"""

import contextlib
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from nself_jobs.embedded import EmbeddedPostgres, EmbeddedRedis

log = logging.getLogger("bench")

# Preferred ports of the run's own servers; the embedded-server code moves to a free one when taken.
REDIS_PORT = 16480
POSTGRES_PORT = 16490
# The plugin's tables live in this schema, created at the start and dropped at the end.
BENCH_SCHEMA = "nself_jobs_bench"


def make_run_directory():
    """Create the run's directory under /tmp with mode 0755.

    PostgreSQL runs as the unprivileged user ``nself`` when the bench runs as root,
    so that user must be able to reach its data directory below this one.
    """
    path = Path(tempfile.mkdtemp(prefix="nself-jobs-bench-", dir="/tmp"))
    os.chmod(path, 0o755)
    return path


def with_database_number(url, number):
    """Return the Redis URL with its database number replaced by ``number``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


class Servers:
    """The Redis and PostgreSQL of one run: started here, or given as URLs and left running."""

    def __init__(self, run_dir, redis_url=None, database_url=None):
        self.run_dir = run_dir
        self.redis_url = redis_url
        self.database_url = database_url
        self._started = []
        self.started_redis = False

    def start(self, aof=False):
        """Start the servers that have no URL; ``aof`` turns on Redis's append-only file (fsync every second)."""
        if self.redis_url is None:
            server = EmbeddedRedis(self.run_dir / "redis", preferred_port=REDIS_PORT, appendonly=aof)
            self.redis_url = server.start()
            self._started.append(server)
            self.started_redis = True
            # RDB snapshots would fork a copy of Redis in the middle of a measurement; this Redis is thrown away.
            client = self.redis(0)
            try:
                client.config_set("save", "")
            finally:
                client.close()
        if self.database_url is None:
            server = EmbeddedPostgres(self.run_dir / "postgres", preferred_port=POSTGRES_PORT,
                                      database="nself_jobs_bench", user="nself_jobs_bench")
            self.database_url = server.start()
            self._started.append(server)
        return self

    def stop(self):
        for server in reversed(self._started):
            try:
                server.stop()
            except Exception as error:  # noqa: BLE001 - stop the others whatever this one raised
                log.warning("stopping %r failed: %s", server, error)
        self._started.clear()

    def server_pids(self):
        """Return the pids of the servers this run started: redis-server and the postmaster."""
        return [server.pid for server in self._started if server.pid]

    def redis(self, number):
        """Return a client of Redis database ``number``, with decoded replies."""
        return redis.Redis.from_url(with_database_number(self.redis_url, number), decode_responses=True)

    def check_empty(self, numbers):
        """Raise SystemExit when a Redis database that the run flushes already contains keys."""
        for number in numbers:
            client = self.redis(number)
            try:
                size = client.dbsize()
            finally:
                client.close()
            if size:
                raise SystemExit(
                    f"bench: Redis database {number} at {urlsplit(self.redis_url).hostname} is not empty "
                    f"({size} keys), and the benchmark flushes it. Point --redis-url at a server whose databases "
                    f"{', '.join(map(str, numbers))} are empty."
                )

    def reset_schema(self):
        """Drop and create the benchmark's PostgreSQL schema; return it."""
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{BENCH_SCHEMA}" CASCADE')
            connection.execute(f'CREATE SCHEMA "{BENCH_SCHEMA}"')
        return BENCH_SCHEMA

    def drop_schema(self):
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{BENCH_SCHEMA}" CASCADE')

    def truncate_history(self):
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(f'TRUNCATE "{BENCH_SCHEMA}".jobs, "{BENCH_SCHEMA}".job_results, '
                               f'"{BENCH_SCHEMA}".job_failures')

    def database_transactions(self):
        """Return committed plus rolled-back transactions of the run's database so far.

        A PostgreSQL 15 backend publishes its counts at most once a second while it
        works, and when it exits, so read this after the measured clients have closed.
        """
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            row = connection.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return int(row[0])

    def versions(self):
        """Return the Redis and PostgreSQL server versions."""
        client = self.redis(0)
        try:
            redis_version = client.info("server")["redis_version"]
        finally:
            client.close()
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            postgres_version = connection.execute("SHOW server_version").fetchone()[0]
        return redis_version, postgres_version


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ProcessSet:
    """Child processes of the run, each in its own session so its whole process group can be stopped."""

    def __init__(self):
        self.processes = []

    def start(self, command, log_path, **kwargs):
        log_file = open(log_path, "ab")
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True, **kwargs)
        finally:
            log_file.close()
        self.processes.append(process)
        return process

    def stop(self, process, grace_s=20):
        """Send SIGTERM to the process, wait up to ``grace_s`` seconds, then SIGKILL what is left of its group."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("process %d did not stop within %d s after SIGTERM; killing its group", process.pid,
                            grace_s)
        # The group id is the child's pid (start_new_session), so this reaches only processes the run started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self):
        for process in list(self.processes):
            self.stop(process, grace_s=10)


def _parent_pids():
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so split after its closing bracket.
        fields = stat_line.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(pid):
    """Return ``pid`` and the pids of all its descendants."""
    parents = _parent_pids()
    tree = [pid]
    for candidate in tree:
        tree.extend(child for child, parent in parents.items() if parent == candidate)
    return tree


def _status_kib(pid, field_name, file_name="status"):
    try:
        for line in Path(f"/proc/{pid}/{file_name}").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_memory_mib(pid):
    """Return ``(processes, RSS MiB, PSS MiB)`` summed over ``pid`` and its descendants.

    RSS counts pages shared between the processes once per process; PSS splits
    each shared page between its sharers, so its sum is the memory really used.
    """
    pids = process_tree(pid)
    rss_kib = sum(_status_kib(each, "VmRSS") for each in pids)
    pss_kib = sum(_status_kib(each, "Pss", "smaps_rollup") for each in pids)
    return len(pids), rss_kib / 1024, pss_kib / 1024


class RoundTripCounter:
    """A TCP relay on 127.0.0.1 that counts request-response round trips to one server.

    A round trip starts each time a client sends bytes after the server last sent
    bytes on that connection (or for the first time). Pipelined statements sent
    before any reply arrives therefore count once, as they cost the client one wait.
    """

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.round_trips = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="round-trip-counter", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=5)

    def reset(self):
        with self._lock:
            self.round_trips = 0

    def _accept_loop(self):
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._relay, args=(client,), name="round-trip-relay", daemon=True).start()

    def _relay(self, client):
        try:
            server = socket.create_connection(self.target, timeout=10)
        except OSError as error:
            log.warning("round-trip counter cannot reach %s:%d: %s", *self.target, error)
            client.close()
            return
        server.settimeout(None)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        client_spoke_last = False
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
                    if key.fileobj is client:
                        if not client_spoke_last:
                            with self._lock:
                                self.round_trips += 1
                        client_spoke_last = True
                    else:
                        client_spoke_last = False
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()


def relay_url(database_url, port):
    """Return the PostgreSQL URL with its host and port replaced by 127.0.0.1 and ``port``."""
    parts = urlsplit(database_url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{port}"))


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _machine_cpu_seconds():
    """Return ``(busy, idle)`` CPU seconds of the whole machine since boot, summed over its cores."""
    with open("/proc/stat", encoding="ascii") as stat_file:
        fields = [int(value) for value in stat_file.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS, (idle + iowait) / _CLOCK_TICKS


def _process_cpu_seconds(pid, with_children):
    """Return the user plus system CPU seconds of ``pid``, plus those of its reaped children when asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 to 17 of /proc/PID/stat (utime, stime, cutime, cstime) sit at 11 to 14 after the name.
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLOCK_TICKS


class CpuAccount:
    """CPU time of the whole machine, split into this run's and every other process's.

    This run's time is the bench process, its live descendants and every child
    it waited for, plus the Redis and PostgreSQL servers it started (the
    postmaster includes the backends it reaped). With given server URLs, their
    time counts as other processes' time.
    """

    def __init__(self, servers):
        self.servers = servers

    def _ours(self):
        times = os.times()
        seconds = times.user + times.system + times.children_user + times.children_system
        for pid in process_tree(os.getpid())[1:]:
            seconds += _process_cpu_seconds(pid, with_children=True)
        for pid in self.servers.server_pids():
            seconds += _process_cpu_seconds(pid, with_children=True)
            for child in process_tree(pid)[1:]:
                seconds += _process_cpu_seconds(child, with_children=False)
        return seconds

    def snapshot(self):
        busy, idle = _machine_cpu_seconds()
        return busy, idle, self._ours()

    def ours_seconds(self):
        """Return this run's CPU seconds so far; differences between two calls give the CPU a step used."""
        return self._ours()

    def others_share(self, since):
        """Return the share of all cores' capacity that other processes used since the snapshot ``since``."""
        busy_before, idle_before, ours_before = since
        busy_after, idle_after, ours_after = self.snapshot()
        capacity = (busy_after - busy_before) + (idle_after - idle_before)
        others = (busy_after - busy_before) - (ours_after - ours_before)
        return min(1.0, max(0.0, others) / capacity) if capacity > 0 else 0.0


class QuietRounds:
    """Run measurement rounds on a machine that other processes may share, keeping the quietest attempts.

    Before a round, it samples other processes' CPU share in ``SAMPLE_S`` steps
    until the share is below ``quiet_share`` or ``max_wait_s`` has passed. A round
    during which other processes used more than ``retry_share`` of the CPU is
    measured again, up to ``max_attempts`` times, and the attempt with the lowest
    share is kept. Waits and discarded attempts of a whole run stop after
    ``budget_s`` seconds, so a busy machine makes the run longer by that much at most.
    """

    SAMPLE_S = 0.5

    def __init__(self, cpu, budget_s, quiet_share=0.15, retry_share=0.25, max_wait_s=15.0, max_attempts=3):
        self.cpu = cpu
        self.budget_s = budget_s
        self.quiet_share = quiet_share
        self.retry_share = retry_share
        self.max_wait_s = max_wait_s
        self.max_attempts = max_attempts
        self.waited_s = 0.0
        self.repeated = 0

    def _wait_for_quiet(self):
        began = time.monotonic()
        while self.waited_s < self.budget_s and time.monotonic() - began < self.max_wait_s:
            since = self.cpu.snapshot()
            time.sleep(self.SAMPLE_S)
            self.waited_s += self.SAMPLE_S
            if self.cpu.others_share(since) < self.quiet_share:
                return

    def run(self, measure):
        """Call ``measure()`` as described above; return its kept result and other processes' CPU share then."""
        best = None
        for _ in range(self.max_attempts):
            self._wait_for_quiet()
            since = self.cpu.snapshot()
            began = time.monotonic()
            result = measure()
            share = self.cpu.others_share(since)
            if best is None or share < best[1]:
                best = (result, share)
            if share <= self.retry_share or self.waited_s >= self.budget_s:
                break
            # The attempt just made counts against the budget, whether it is kept or not.
            self.waited_s += time.monotonic() - began
            self.repeated += 1
        return best


def machine_busy_share(seconds=1.0):
    """Return the share of CPU capacity in use over the next ``seconds``, before the run starts anything."""
    busy_before, idle_before = _machine_cpu_seconds()
    time.sleep(seconds)
    busy_after, idle_after = _machine_cpu_seconds()
    total = (busy_after - busy_before) + (idle_after - idle_before)
    return (busy_after - busy_before) / total if total > 0 else 0.0


def remove_run_directory(path):
    shutil.rmtree(path, ignore_errors=True)


def wait_until(condition, timeout_s, interval_s=0.01, description="condition"):
    """Poll ``condition`` until it returns a true value, and return that value.

    Raises TimeoutError after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {description}")
        time.sleep(interval_s)
