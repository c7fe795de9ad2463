"""Benchmark the jobs plugin against plain RQ and BullMQ on one Redis and one PostgreSQL.

Run it as ``bench/run`` (or ``python -m bench.run`` from the repository root with
``lib`` and the root on PYTHONPATH); ``bench/README.md`` explains each figure.
"""

import argparse
import json
import logging
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from . import report
from .figures import Figures, percentile
from .http_load import client_name

# Modules that import nself_jobs; import_measuring_modules() loads them from the plugin checkout chosen.
bullmq = plugin = rq_bench = services = None

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
PLUGIN_CONCURRENCIES = (1, 2, 4, 5, 8)
BULLMQ_CONCURRENCIES = (1, 10, 50)
HTTP_CONNECTIONS = 8
LATENCY_GAP_S = 0.020
LATENCY_CONCURRENCY = 5
# Seconds a whole run may spend waiting for other processes to leave the CPU idle, or repeating
# rounds they disturbed, by --quick.
QUIET_BUDGET_S = {False: 300.0, True: 45.0}
# The docs page counts the figures measured while other processes used more than this share of the CPU.
BUSY_SHARE = 0.25


@dataclass(frozen=True)
class Sizes:
    """Jobs, requests and durations of one run; every measurement is repeated ``rounds`` times."""

    rounds: int
    enqueue_one: int
    enqueue_many: int
    http_seconds: int
    plugin_jobs: int
    latency_jobs: int
    rq_jobs: dict
    bullmq_add: int
    bullmq_add_bulk: int
    bullmq_jobs: int


# Sized so that a round takes a few seconds on 2 cores and the whole default run about 11 minutes
# on an idle machine.
DEFAULT_SIZES = Sizes(
    rounds=5, enqueue_one=5_000, enqueue_many=20_000, http_seconds=5, plugin_jobs=10_000, latency_jobs=500,
    rq_jobs={"rq.worker": 250, "rq.pool2": 500, "rq.simple1": 1_000, "rq.simple2": 1_500, "rq.simple4": 1_500},
    bullmq_add=5_000, bullmq_add_bulk=20_000, bullmq_jobs=20_000,
)
QUICK_SIZES = Sizes(
    rounds=2, enqueue_one=1_000, enqueue_many=5_000, http_seconds=2, plugin_jobs=3_000, latency_jobs=100,
    rq_jobs={"rq.worker": 60, "rq.pool2": 120, "rq.simple1": 250, "rq.simple2": 400, "rq.simple4": 400},
    bullmq_add=1_000, bullmq_add_bulk=5_000, bullmq_jobs=5_000,
)


def import_measuring_modules(plugin_dir):
    """Put ``plugin_dir/lib`` first on sys.path, then import the modules that use ``nself_jobs``."""
    global bullmq, plugin, rq_bench, services
    sys.path.insert(0, str(plugin_dir / "lib"))
    from . import bullmq, plugin, rq_bench, services  # noqa: F811 - fills the module-level names


def plugin_revision(plugin_dir):
    """Return the plugin checkout's commit, marked when lib/ or bin/ has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "-C", str(plugin_dir), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(plugin_dir), "status", "--porcelain", "--", "lib", "bin"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"{commit} with uncommitted changes in lib/ or bin/" if changes else commit


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="Fewer jobs and 2 rounds, about 2 minutes; writes no docs page unless --docs is given.")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Times each figure is measured (default 5, or 2 with --quick).")
    parser.add_argument("--jobs", type=int, default=None,
                        help="No-op jobs per plugin processing round (default 10000, or 3000 with --quick).")

    parser.add_argument("--redis-url", default=None,
                        help="Use this Redis instead of starting one; databases 1, 2 and 3 must be empty and are "
                             "flushed.")
    parser.add_argument("--database-url", default=None,
                        help="Use this PostgreSQL database instead of starting one; the schema nself_jobs_bench "
                             "is created in it and dropped at the end.")
    parser.add_argument("--aof", action="store_true",
                        help="Start Redis with appendonly yes and appendfsync everysec, as the plugin's own "
                             "embedded Redis runs (default: Redis's default, no AOF).")

    parser.add_argument("--plugin-dir", type=Path, default=REPO,
                        help="Benchmark the plugin in this checkout (its bin/nself-jobs, lib/ and .venv, where a "
                             "symlink to this .venv works); default: this repository.")
    parser.add_argument("--skip", action="append", default=[], choices=("http", "rq", "bullmq"),
                        help="Leave out a part of the run; may be repeated.")

    parser.add_argument("--docs", type=Path, default=None,
                        help=f"Write the Markdown page here (default {DEFAULT_DOCS.relative_to(REPO)} "
                             "for a full run).")
    parser.add_argument("--no-docs", action="store_true", help="Write no Markdown page.")
    parser.add_argument("--json", type=Path, default=None,
                        help="Also write the run (every round's value, the machine, the command) to this JSON file.")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="Measure nothing: print the table of a run saved with --json and write its docs page "
                             "(to --docs, or docs/benchmarks.md unless --no-docs).")
    parser.add_argument("--keep-run-dir", action="store_true", help="Keep the run directory with its logs.")

    arguments = parser.parse_args(argv)
    if arguments.rounds is not None and arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    if arguments.jobs is not None and arguments.jobs < 100:
        parser.error("--jobs must be at least 100")
    return arguments


def sizes_for(arguments):
    sizes = QUICK_SIZES if arguments.quick else DEFAULT_SIZES
    changes = {}
    if arguments.rounds is not None:
        changes["rounds"] = arguments.rounds
    if arguments.jobs is not None:
        changes["plugin_jobs"] = arguments.jobs
    return Sizes(**{**asdict(sizes), **changes})


def progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- plugin


def measure_plugin_enqueue(the_plugin, figures, sizes, rounds):
    for _ in range(sizes.rounds):
        rate, others = rounds.run(lambda: the_plugin.enqueue_one_rate(sizes.enqueue_one))
        figures.add("plugin.enqueue_one", "JobQueue.enqueue, one at a time", "jobs/s", rate, others)
        rate, others = rounds.run(lambda: the_plugin.enqueue_many_rate(sizes.enqueue_many))
        figures.add("plugin.enqueue_many", "JobQueue.enqueue_many, batches of 1000", "jobs/s", rate, others)
    progress(f"plugin enqueue: {figures.median('plugin.enqueue_one'):,.0f} jobs/s one at a time, "
             f"{figures.median('plugin.enqueue_many'):,.0f} jobs/s in bulk")


def measure_plugin_http(the_plugin, figures, sizes, rounds):
    client = client_name()
    for busy, key, wording in ((False, "plugin.http_idle", "no worker"), (True, "plugin.http_busy", "worker -c 5")):
        results = the_plugin.http_rounds(sizes.rounds, sizes.http_seconds, HTTP_CONNECTIONS, busy, rounds.run)
        for result, others in results:
            figures.add(f"{key}.rate", f"POST /api/jobs, {wording} ({HTTP_CONNECTIONS} connections, {client})",
                        "req/s", result.requests_per_s, others)
            figures.add(f"{key}.p50", f"POST /api/jobs, {wording}: latency p50", "ms", result.p50_ms, others)
            figures.add(f"{key}.p99", f"POST /api/jobs, {wording}: latency p99", "ms", result.p99_ms, others)
        progress(f"POST /api/jobs with {wording}: {figures.median(key + '.rate'):,.0f} req/s, "
                 f"p99 {figures.median(key + '.p99'):.1f} ms")


def measure_plugin_processing(the_plugin, figures, sizes, rounds):
    """Processing rates per concurrency with history on; at -c 5 also history held off, and memory.

    At -c 5 the rounds with the writer on and held off alternate, so a spell of
    other load on the machine falls on both kinds alike.
    """
    jobs = sizes.plugin_jobs
    for concurrency in PLUGIN_CONCURRENCIES:
        the_plugin.reset()
        worker = the_plugin.start_worker(concurrency)
        try:
            for _ in range(sizes.rounds):
                result, others = rounds.run(lambda: the_plugin.processing_round(concurrency, jobs, "on"))
                figures.add(f"plugin.c{concurrency}", f"worker -c {concurrency}, history on", "jobs/s", result.rate,
                            others)
                figures.add(f"cpu.plugin.c{concurrency}", f"plugin worker -c {concurrency}, history on", "us/job",
                            result.cpu_per_job_us, others)
                if concurrency != 5:
                    continue
                figures.add("plugin.c5.with_history", "worker -c 5, until PostgreSQL has every event", "jobs/s",
                            result.history_rate, others)

                result, others = rounds.run(lambda: the_plugin.processing_round(concurrency, jobs, "off"))
                figures.add("plugin.c5.history_off", "worker -c 5, history writer held off", "jobs/s",
                            result.rate, others)
                figures.add("cpu.plugin.c5.history_off", "plugin worker -c 5, history writer held off", "us/job",
                            result.cpu_per_job_us, others)
                figures.add("plugin.history_drain", "history drain after that run (writer alone)", "events/s",
                            result.drain_events_per_s, others)
            if concurrency == 5:
                processes, rss, pss = services.tree_memory_mib(worker.pid)
                figures.add("plugin.memory.rss", f"worker -c 5 memory, RSS summed over {processes} processes",
                            "MiB", rss)
                figures.add("plugin.memory.pss", "worker -c 5 memory, PSS (shared pages split)", "MiB", pss)
        finally:
            the_plugin.stop(worker)
        progress(f"plugin worker -c {concurrency}: {figures.median(f'plugin.c{concurrency}'):,.0f} jobs/s")
    progress(f"plugin worker -c 5 with the history writer held off: "
             f"{figures.median('plugin.c5.history_off'):,.0f} jobs/s")


def measure_plugin_history(the_plugin, figures, sizes, servers, rounds):
    """History lag and PostgreSQL round trips at -c 5, with the worker's database traffic relayed and counted."""
    jobs = sizes.plugin_jobs
    the_plugin.reset()
    target = urlsplit(servers.database_url)
    relay = services.RoundTripCounter(target.hostname, target.port or 5432).start()
    transactions_before = servers.database_transactions()
    worker = the_plugin.start_worker(5, services.relay_url(servers.database_url, relay.port))

    batches = 0
    try:
        for _ in range(sizes.rounds):
            result, others = rounds.run(lambda: the_plugin.processing_round(5, jobs, "lag", relay))
            figures.add("plugin.lag.p99", "history lag behind Redis at -c 5, p99 of 10 ms samples", "ms",
                        percentile(result.lag_samples_ms, 0.99), others)
            figures.add("plugin.lag.max", "history lag behind Redis at -c 5, max", "ms", max(result.lag_samples_ms),
                        others)
            figures.add("plugin.db_round_trips", "PostgreSQL round trips per job (relay count)", "per job",
                        result.round_trips / jobs, others)
            # NOTE: the batch count assumes one wakeup-list LTRIM per enqueue (see processing_round);
            # a count of zero or less means the enqueue script changed, and the figure is left out.
            if result.batches > 0:
                figures.add("plugin.batch_events", "history events per written batch", "events",
                            3 * jobs / result.batches, others)
                batches += result.batches
    finally:
        the_plugin.stop(worker)
        relay.stop()

    # Backends publish their transaction counts when they exit, so read them once the worker has stopped.
    time.sleep(1.0)
    transactions = servers.database_transactions() - transactions_before
    figures.add("plugin.db_transactions", "PostgreSQL transactions per job (pg_stat_database)", "per job",
                transactions / (jobs * sizes.rounds))
    progress(f"history lag p99 {figures.median('plugin.lag.p99'):.0f} ms; "
             f"{figures.median('plugin.db_round_trips'):.4f} PostgreSQL round trips per job; "
             f"{transactions} transactions for {batches} batches")


def measure_plugin_start_latency(the_plugin, figures, sizes, rounds):
    the_plugin.reset()
    worker = the_plugin.start_worker(LATENCY_CONCURRENCY)
    gap_ms = int(LATENCY_GAP_S * 1000)
    label = f"enqueue to start, {sizes.latency_jobs} jobs {gap_ms} ms apart, -c {LATENCY_CONCURRENCY}"
    try:
        for _ in range(sizes.rounds):
            samples, others = rounds.run(lambda: the_plugin.start_latency_round(sizes.latency_jobs, LATENCY_GAP_S))
            figures.add("plugin.start.p50", label + ", p50", "ms", percentile(samples, 0.50), others)
            figures.add("plugin.start.p99", label + ", p99", "ms", percentile(samples, 0.99), others)
    finally:
        the_plugin.stop(worker)
    progress(f"enqueue to start: p50 {figures.median('plugin.start.p50'):.1f} ms, "
             f"p99 {figures.median('plugin.start.p99'):.1f} ms")


# ---------------------------------------------------------------- RQ and BullMQ


def measure_rq(plain_rq, figures, sizes, rounds):
    for _ in range(sizes.rounds):
        rate, others = rounds.run(lambda: plain_rq.enqueue_one_rate(sizes.enqueue_one))
        figures.add("rq.enqueue_one", "RQ Queue.enqueue, one at a time", "jobs/s", rate, others)
        rate, others = rounds.run(lambda: plain_rq.enqueue_many_rate(sizes.enqueue_many))
        figures.add("rq.enqueue_many", "RQ Queue.enqueue_many, batches of 1000", "jobs/s", rate, others)
    for setup in rq_bench.WORKER_SETUPS:
        for _ in range(sizes.rounds):
            (rate, cpu_per_job_us), others = rounds.run(
                lambda: plain_rq.processing_rate(setup, sizes.rq_jobs[setup.key]))
            figures.add(setup.key, setup.label, "jobs/s", rate, others)
            figures.add(f"cpu.{setup.key}", setup.label, "us/job", cpu_per_job_us, others)
        progress(f"{setup.label}: {figures.median(setup.key):,.0f} jobs/s")


def measure_bullmq(the_bullmq, figures, sizes, rounds):
    for _ in range(sizes.rounds):
        rate, others = rounds.run(lambda: the_bullmq.add_rate(sizes.bullmq_add))
        figures.add("bullmq.add", "BullMQ Queue.add, one at a time", "jobs/s", rate, others)
        rate, others = rounds.run(lambda: the_bullmq.add_bulk_rate(sizes.bullmq_add_bulk))
        figures.add("bullmq.add_bulk", "BullMQ Queue.addBulk, batches of 1000", "jobs/s", rate, others)
    for concurrency in BULLMQ_CONCURRENCIES:
        for _ in range(sizes.rounds):
            rate, others = rounds.run(lambda: the_bullmq.processing_rate(sizes.bullmq_jobs, concurrency))
            figures.add(f"bullmq.c{concurrency}", f"BullMQ Worker, concurrency {concurrency}", "jobs/s", rate, others)
        progress(f"BullMQ concurrency {concurrency}: {figures.median(f'bullmq.c{concurrency}'):,.0f} jobs/s")


def skip_bullmq(figures, reason):
    for key, label in (("bullmq.add", "BullMQ Queue.add"), ("bullmq.add_bulk", "BullMQ Queue.addBulk"),
                       *((f"bullmq.c{c}", f"BullMQ Worker, concurrency {c}") for c in BULLMQ_CONCURRENCIES)):
        figures.skip(key, label, "jobs/s", reason)


# ---------------------------------------------------------------- machine and page


def _first_line_with(path, prefix):
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _package_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _redis_persistence(aof):
    return " (appendonly yes, fsync every second; RDB snapshots off)" if aof else " (no AOF, RDB snapshots off)"


def machine_details(servers, bullmq_version, aof, plugin_dir):
    redis_version, postgres_version = servers.versions()
    memory_kib = _first_line_with("/proc/meminfo", "MemTotal").split()[0]
    return {
        "Plugin code": plugin_revision(plugin_dir),
        "CPUs (nproc)": str(len(os.sched_getaffinity(0))),
        "CPU model": _first_line_with("/proc/cpuinfo", "model name"),
        "Memory": f"{int(memory_kib) / 1_048_576:.1f} GiB" if memory_kib.isdigit() else "unknown",
        "Kernel": platform.release(),
        "Python": platform.python_version(),
        "Redis": redis_version + (_redis_persistence(aof) if servers.started_redis else " (given server)"),
        "PostgreSQL": postgres_version,
        "rq": _package_version("rq"),
        "redis-py": _package_version("redis"),
        "psycopg": _package_version("psycopg"),
        "waitress": _package_version("waitress"),
        "Node.js": bullmq.node_version() if bullmq_version else "not used",
        "BullMQ": bullmq_version or "not installed",
        "HTTP load client": client_name(),
    }


def render_page(figures, machine, command, sizes, elapsed_s, date):
    busy = [figure for figure in figures
            if figure.others_median is not None and figure.others_median > BUSY_SHARE]
    lines = [
        "# Benchmarks",
        "",
        "Throughput, latency and memory of the jobs plugin next to plain RQ and BullMQ, on the same",
        "Redis and with the same no-op job. `bench/run` measured every figure below and wrote this page;",
        "`bench/README.md` explains how each figure is measured and how to run it again.",
        "",
        f"Command: `{command}` ({elapsed_s / 60:.1f} minutes, {date}).",
        *(["`--plugin-dir` named the checkout measured; the \"Plugin code\" row gives its commit."]
          if "--plugin-dir" in command else []),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in machine.items()]
    lines += [
        "",
        "## Results",
        "",
        f"Each figure is the median of {sizes.rounds} rounds, with the lowest and highest round as its spread.",
        f"A plugin processing round runs {sizes.plugin_jobs:,} no-op jobs; RQ and BullMQ rounds are sized",
        "to take a few seconds each. \"Earlier\" figures were measured before, on the same kind of 2-core",
        "machine, not by this run; ratios and targets use this run's figures only.",
        report.render_markdown_table(figures),
        "",
        "## Targets",
        "",
        report.render_markdown_targets(figures),
        "",
        "## How to read it",
        "",
        "- \"Other CPU\": the median share of all cores that processes outside this run used during a",
        "  figure's rounds (the machine may be shared). Throughput measured at a high share is lower, and",
        "  latency higher, than on an idle machine; CPU time per job changes much less.",
        f"  {len(busy)} of {sum(1 for figure in figures if figure.others)} figures here were measured above "
        f"{BUSY_SHARE:.0%}.",
        "- CPU time per job: CPU seconds of the bench, its child processes and the Redis and PostgreSQL it",
        "  started, over the timed part of each processing round, divided by the jobs. The number of cores",
        "  divided by it estimates the most jobs per second that the machine can reach.",
        "- \"history on\" rows: the worker command's history writer drains every event of the round (created,",
        "  started, completed) into PostgreSQL while the jobs run; the clock stops when Redis has every job",
        "  finished. \"until PostgreSQL has every event\" stops the clock when the history list is empty.",
        "- \"history writer held off\": the bench holds the writer's Redis lease, so events pile up in Redis",
        "  while jobs run; the drain row is the writer alone writing that backlog afterwards. Jobs still push",
        "  their events, so this isolates the cost of writing to PostgreSQL.",
        "- History lag: every 10 ms during a -c 5 round, the age of the oldest event still in Redis.",
        "- PostgreSQL round trips: a TCP relay in front of PostgreSQL counts each time a client sends after",
        "  the server last answered. Transactions come from `pg_stat_database` (committed plus rolled back)",
        "  across those rounds, so they include the worker command's start-up checks and autovacuum.",
        "- Memory: RSS and PSS from /proc summed over the worker command and its worker processes after",
        "  the -c 5 rounds; PSS counts shared pages once.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(arguments):
    sizes = sizes_for(arguments)
    figures = Figures()
    began = time.monotonic()
    run_dir = services.make_run_directory()
    servers = services.Servers(run_dir, arguments.redis_url, arguments.database_url)
    processes = services.ProcessSet()
    bullmq_version = None
    cpu = services.CpuAccount(servers)
    busy_before = services.machine_busy_share()
    if busy_before > 0.2:
        progress(f"warning: other processes keep {busy_before:.0%} of the CPU busy; the figures will be lower")
    cpu_at_start = None
    try:
        progress(f"starting Redis and PostgreSQL in {run_dir}" if not (arguments.redis_url and arguments.database_url)
                 else "using the given Redis and PostgreSQL")
        servers.start(aof=arguments.aof)
        cpu_at_start = cpu.snapshot()
        servers.check_empty((plugin.REDIS_DB, rq_bench.REDIS_DB, bullmq.REDIS_DB))
        if "bullmq" not in arguments.skip:
            try:
                bullmq_version = bullmq.install()
            except bullmq.BullMQUnavailable as error:
                progress(f"BullMQ is left out: {error}")
                skip_bullmq(figures, str(error))

        rounds = services.QuietRounds(cpu, budget_s=QUIET_BUDGET_S[arguments.quick])
        the_plugin = plugin.Plugin(servers, run_dir, processes, arguments.plugin_dir, cpu)
        measure_plugin_enqueue(the_plugin, figures, sizes, rounds)
        if "http" not in arguments.skip:
            measure_plugin_http(the_plugin, figures, sizes, rounds)
        measure_plugin_processing(the_plugin, figures, sizes, rounds)
        measure_plugin_history(the_plugin, figures, sizes, servers, rounds)
        measure_plugin_start_latency(the_plugin, figures, sizes, rounds)
        the_plugin.reset()
        if "rq" not in arguments.skip:
            measure_rq(rq_bench.PlainRQ(servers, run_dir, processes, cpu), figures, sizes, rounds)
        if bullmq_version:
            measure_bullmq(bullmq.BullMQ(servers), figures, sizes, rounds)
        machine = machine_details(servers, bullmq_version, arguments.aof, arguments.plugin_dir)
    finally:
        processes.stop_all()
        others = cpu.others_share(cpu_at_start) if cpu_at_start else None
        for number in (plugin.REDIS_DB, rq_bench.REDIS_DB, bullmq.REDIS_DB):
            try:
                client = servers.redis(number)
                client.flushdb()
                client.close()
            except Exception as error:  # noqa: BLE001 - cleanup goes on whatever one step raised
                log.warning("flushing Redis database %d failed: %s", number, error)
        if servers.database_url:
            try:
                servers.drop_schema()
            except Exception as error:  # noqa: BLE001
                log.warning("dropping the benchmark schema failed: %s", error)
        servers.stop()
        if arguments.keep_run_dir:
            progress(f"run directory kept: {run_dir}")
        else:
            services.remove_run_directory(run_dir)
    machine["CPU used by other processes"] = (
        f"{busy_before:.0%} of all cores just before the run, {others:.0%} on average during it; "
        f"the run spent {rounds.waited_s:.0f} s waiting for quieter moments and repeating disturbed "
        f"rounds ({rounds.repeated} repeated)")
    return figures, machine, sizes, time.monotonic() - began


def load_record(path):
    """Read a run saved with --json; return ``(figures, machine, command, sizes, elapsed seconds, date)``."""
    record = json.loads(path.read_text(encoding="utf-8"))
    return (Figures.from_json(record["figures"]), record["machine"], record["command"], Sizes(**record["sizes"]),
            record["elapsed_s"], record["date"])


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    if arguments.render:
        figures, machine, command, sizes, elapsed_s, date = load_record(arguments.render)
    else:
        date = time.strftime("%Y-%m-%d")
        arguments.plugin_dir = arguments.plugin_dir.resolve()
        import_measuring_modules(arguments.plugin_dir)
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
        figures, machine, sizes, elapsed_s = run(arguments)
        command = ("bench/run " + shlex.join(sys.argv[1:] if argv is None else argv)).strip()
    print(report.render_text(figures))
    print(f"\n{command}: {elapsed_s / 60:.1f} minutes; "
          f"CPU used by other processes: {machine['CPU used by other processes']}")

    if arguments.json and not arguments.render:
        record = {"command": command, "date": date, "elapsed_s": elapsed_s, "machine": machine,
                  "sizes": asdict(sizes), "figures": figures.to_json()}
        arguments.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    docs = arguments.docs
    if docs is None and not arguments.quick:
        docs = DEFAULT_DOCS
    if arguments.no_docs:
        docs = None
    if docs:
        docs.write_text(render_page(figures, machine, command, sizes, elapsed_s, date), encoding="utf-8")
        print(f"wrote {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
