"""The ``nself-jobs`` command line: one Click command per nself action.

Commands print human text by default and JSON with ``--json``; errors go to
stderr as ``nself-jobs: message`` with the exit codes listed in ``runtime.py``.
No command prompts.
"""

import json
import sys
import threading

import click

from .. import __version__, jobtypes
from ..errors import JobsError, ValidationError
from ..jobspec import parse_job_request
from ..history.store import TABLES, VIEWS
from ..jobview import job_details
from ..jsonio import dumps, loads_strict
from ..settings import QUEUE_NAMES, load_settings
from . import runtime
from .runtime import CommandError, fail_for


class Context:
    """Settings, loaded once per command; invalid settings fail with EXIT_CONFIG."""

    def __init__(self):
        self._settings = None
        self.started_servers = []

    @property
    def settings(self):
        if self._settings is None:
            try:
                self._settings = load_settings()
                jobtypes.load_user_modules(self._settings.env.list("JOBS_HANDLER_MODULES"))
            except JobsError as error:
                raise fail_for(error) from error
        return self._settings

    def services(self):
        try:
            self._settings = runtime.with_services(self.settings, self.started_servers)
        except JobsError as error:
            raise fail_for(error) from error
        return self._settings


pass_context = click.make_pass_decorator(Context, ensure=True)


def emit(data, as_json, human):
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        human(data)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nself-jobs")
def cli():
    """Background jobs for nself: Redis queues, PostgreSQL history, REST API on port 3105."""


# ------------------------------------------------------------------ init


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def init(context, as_json):
    """Check Redis and PostgreSQL, create the tables and views, and show the configuration.

    Safe to run again: it changes nothing that is already in place.
    """
    settings = context.services()
    try:
        queue = runtime.check_redis(settings)
        store = runtime.open_store(settings)
        store.apply_schema()
        runtime.check_schema(store)
        counts = queue.counts()
    except JobsError as error:
        raise fail_for(error) from error

    def human(data):
        click.echo(f"Redis: ok\nPostgreSQL: ok\nSchema: {len(TABLES)} tables and {len(VIEWS)} views in place"
                   "\n\nConfiguration:")
        for name, value in data["configuration"].items():
            click.echo(f"  {name}={value}")
        click.echo("\nQueues:")
        for name, row in data["queues"].items():
            click.echo(f"  {name}: " + ", ".join(f"{key} {value}" for key, value in row.items()))

    emit({"redis": "ok", "postgres": "ok", "schema": "ok", "configuration": settings.describe(), "queues": counts},
         as_json, human)


# ------------------------------------------------------------------ server, worker, up


def _ensure_schema(settings, embedded):
    store = runtime.open_store(settings)
    if embedded:
        store.apply_schema()
    runtime.check_schema(store)
    return store


def _make_server(settings, app):
    from waitress import create_server
    # Waitress refuses a body this large before reading it; the app answers 413 with the
    # limit for bodies between JOBS_MAX_PAYLOAD_BYTES and this.
    return create_server(app, host=settings.bind_host, port=settings.port, threads=8, ident="nself-jobs",
                         clear_untrusted_proxy_headers=True,
                         max_request_body_size=2 * settings.max_payload_bytes + 65_536)


def _start_server_thread(settings, stop_event, recover_lost_jobs=True):
    from ..history import HistoryWriter
    from ..maintenance import Maintenance
    from ..queue import connect_redis
    from ..server.app import create_app

    server = _make_server(settings, create_app(settings))
    writer = HistoryWriter(connect_redis(settings.redis_url), runtime.HistoryStore.from_settings(settings))
    writer.start_thread(stop_event)
    if recover_lost_jobs:
        Maintenance(connect_redis(settings.redis_url), settings).start_thread(stop_event)
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    return server


@cli.command()
@pass_context
def server(context):
    """Serve the REST API and dashboard on JOBS_DASHBOARD_PORT (3105) until stopped with Ctrl-C."""
    import signal
    embedded = not (context.settings.redis_url and context.settings.database_url)
    settings = context.services()
    runtime.configure_logging(settings, "server.log")
    try:
        runtime.check_redis(settings)
        _ensure_schema(settings, embedded)
    except JobsError as error:
        raise fail_for(error) from error
    stop_event = threading.Event()
    http = _start_server_thread(settings, stop_event)
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: stop_event.set())
    click.echo(f"nself-jobs server listening on http://{settings.bind_host}:{settings.port}")
    stop_event.wait()
    http.close()


def _queues_argument(queues):
    for queue in queues:
        if queue not in QUEUE_NAMES:
            raise click.BadParameter(f"unknown queue {queue!r}: expected one of {', '.join(QUEUE_NAMES)}",
                                     param_hint="QUEUE")
    return list(queues) or list(QUEUE_NAMES)


@cli.command()
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=None,
              help="Jobs run at once, one process each. Default: JOBS_DEFAULT_CONCURRENCY (5).")
@pass_context
def worker(context, queues, concurrency):
    """Run jobs from QUEUE (high-priority, default, low-priority); with no QUEUE, from all three.

    Queues listed first are served first. Within a queue, every critical job runs
    before any high one, then normal, then low. Stop with Ctrl-C or SIGTERM: jobs
    in hand finish within JOBS_SHUTDOWN_GRACE ms or are handed back.
    """
    from ..supervisor import Supervisor
    queue_list = _queues_argument(queues)
    embedded = not (context.settings.redis_url and context.settings.database_url)
    settings = context.services()
    runtime.configure_logging(settings, "worker.log")
    try:
        runtime.check_redis(settings)
        _ensure_schema(settings, embedded)
    except JobsError as error:
        raise fail_for(error) from error
    supervisor = Supervisor(settings, queue_list, concurrency or settings.concurrency,
                            log_config=runtime.LogConfig(settings, "worker.log"))
    sys.exit(supervisor.run())


@cli.command()
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=None,
              help="Worker processes. Default: JOBS_DEFAULT_CONCURRENCY (5).")
@pass_context
def up(context, concurrency):
    """Run the server and workers for all queues in one foreground process.

    With no JOBS_REDIS_URL or DATABASE_URL configured, it starts its own Redis and
    PostgreSQL under ~/.nself/data/jobs and stops them again on Ctrl-C.
    """
    from ..supervisor import Supervisor
    settings = context.services()
    runtime.configure_logging(settings, "worker.log")
    try:
        runtime.check_redis(settings)
        store = runtime.open_store(settings)
        store.apply_schema()
    except JobsError as error:
        raise fail_for(error) from error

    supervisor = Supervisor(settings, list(QUEUE_NAMES), concurrency or settings.concurrency,
                            log_config=runtime.LogConfig(settings, "worker.log"))
    http = _start_server_thread(settings, supervisor.stop_event, recover_lost_jobs=False)
    click.echo(f"nself-jobs up: API and dashboard on http://{settings.bind_host}:{settings.port}"
               f"{settings.dashboard_path}; Ctrl-C stops everything")
    try:
        code = supervisor.run()
    finally:
        http.close()
        for server_process in context.started_servers:
            server_process.stop()
    sys.exit(code)


# ------------------------------------------------------------------ submit, get


@cli.command()
@click.argument("job_type", metavar="TYPE")
@click.option("--payload", default="{}", help="The job's payload as a JSON object.")
@click.option("--queue", default="default", help="Queue: high-priority, default or low-priority.")
@click.option("--priority", default=None, help="critical, high, normal (default) or low.")
@click.option("--delay", type=int, default=None, help="Milliseconds to wait before the job may start.")
@click.option("--max-retries", type=int, default=None, help="Retries after the first attempt. Default: JOBS_RETRY_ATTEMPTS.")
@click.option("--timeout", type=int, default=None, help="Milliseconds one attempt may run. Default: JOBS_JOB_TIMEOUT.")
@click.option("--unique-key", default=None, help="A second job with the same key returns the first one instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def submit(context, job_type, payload, queue, priority, delay, max_retries, timeout, unique_key, as_json):
    """Enqueue a job of TYPE and print its id."""
    settings = context.services()
    options = {name: value for name, value in (("priority", priority), ("delay", delay), ("maxRetries", max_retries),
                                               ("timeout", timeout), ("uniqueKey", unique_key)) if value is not None}
    try:
        body = {"type": job_type, "queue": queue, "payload": loads_strict(payload, field="payload"), "options": options}
        spec = parse_job_request(body, settings)
        queue_core = runtime.check_redis(settings)
        job_id, created = queue_core.enqueue(spec)
    except ValidationError as error:
        raise CommandError(f"invalid job: {error.field}: {error.message}", runtime.EXIT_INVALID_JOB) from error
    except JobsError as error:
        raise fail_for(error) from error
    emit({"id": job_id, "created": created, "queue": queue, "type": job_type}, as_json,
         lambda data: click.echo(data["id"]))


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_context
def get(context, job_id, as_json):
    """Show one job: status, progress, attempts, result and failures."""
    settings = context.services()
    try:
        queue_core = runtime.check_redis(settings)
        store = runtime.open_store(settings)
        details = job_details(job_id, queue_core, store)
    except JobsError as error:
        raise fail_for(error) from error
    if details is None:
        raise CommandError(f"job {job_id} not found", runtime.EXIT_NOT_FOUND)

    def human(data):
        click.echo(f"{data['id']}  {data['type']}  {data['queue']}  {data['status']}  "
                   f"attempt {data['attemptLabel']}  progress {data['progress']}%")
        if data.get("result") is not None:
            click.echo("result: " + dumps(data["result"]))
        for failure in data["failures"]:
            click.echo(f"attempt {failure['attempt']} failed: {failure['error']}")

    emit(details, as_json, human)


@cli.command("drop-schema", hidden=True)
@click.option("--yes", is_flag=True, help="Confirm: drop the plugin's tables and views with all job history.")
@pass_context
def drop_schema(context, yes):
    """Drop the plugin's tables and views (uninstall.sh runs this without --keep-data)."""
    if not yes:
        raise CommandError("drop-schema deletes all job history; pass --yes to confirm", runtime.EXIT_USAGE)
    settings = context.settings
    if not settings.database_url:
        click.echo("No DATABASE_URL configured; nothing to drop.")
        return
    try:
        runtime.open_store(settings).drop_all()
    except JobsError as error:
        raise fail_for(error) from error
    click.echo("Dropped the jobs plugin's tables and views.")


from .schedule import schedule  # noqa: E402  (schedule.py imports this module only when a command runs)
cli.add_command(schedule)


def main():
    from .operate import cancel, promote, retry
    from .stats import stats
    from .doctor import doctor
    for command in (retry, cancel, promote, stats, doctor):
        cli.add_command(command)
    cli(prog_name="nself-jobs")


if __name__ == "__main__":
    main()
