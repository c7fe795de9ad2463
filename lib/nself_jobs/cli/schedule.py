"""``nself-jobs schedule``: create, change, list, preview and run recurring jobs.

Every subcommand prints JSON with ``--json``, never prompts, and exits with the
codes of ``runtime.py``: 8 for an invalid schedule, 9 for an unknown name and
10 for a name that is already taken.
"""

import click

from ..cron import PREVIEW_MAX_COUNT
from ..errors import Conflict, JobsError, NotFound, ValidationError
from ..history.schedules import ScheduleStore
from ..jsonio import dumps, loads_strict
from ..scheduler import MISFIRE_POLICIES, OVERLAP_POLICIES, ScheduleService
from . import runtime
from .runtime import CommandError, fail_for

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _main():
    from . import main  # main imports this module when it loads, so not at the top
    return main


def _context():
    return click.get_current_context().ensure_object(_main().Context)


def _fail(error):
    """Translate a plugin error into a CommandError with the documented exit code."""
    if isinstance(error, ValidationError):
        return CommandError(f"invalid schedule: {error.field}: {error.message}", runtime.EXIT_INVALID_JOB)
    if isinstance(error, NotFound):
        return CommandError(str(error), runtime.EXIT_NOT_FOUND)
    if isinstance(error, Conflict):
        return CommandError(str(error), runtime.EXIT_CONFLICT)
    return fail_for(error)


def _call(operation, *args):
    try:
        return operation(*args)
    except JobsError as error:
        raise _fail(error) from error


def _service():
    """Return a ScheduleService on the configured Redis and PostgreSQL, after checking both."""
    settings = _context().services()
    try:
        queue = runtime.check_redis(settings)
        store = runtime.open_store(settings)
        runtime.check_schema(store)
    except JobsError as error:
        raise fail_for(error) from error
    return ScheduleService(settings, ScheduleStore(store), queue)


def _emit(data, as_json, human):
    _main().emit(data, as_json, human)


# ------------------------------------------------------------------ output


def _print_summary(data):
    state = "enabled" if data["enabled"] else "disabled"
    click.echo(f"{data['name']}  {state}  '{data['cron']}' {data['timezone']}  {data['type']} on {data['queue']}")
    click.echo(f"  next run {data['nextRunAt'] or '-'}  last run {data['lastRunAt'] or '-'}")


def _print_details(data):
    _print_summary(data)
    if data["description"]:
        click.echo(f"  description: {data['description']}")
    grace = "no limit" if data["misfireGraceMs"] is None else f"{data['misfireGraceMs']} ms"
    click.echo(f"  misfire {data['misfirePolicy']} (grace {grace}), overlap {data['overlapPolicy']}")
    click.echo(f"  payload {dumps(data['payload'])}  options {dumps(data['options'])}")
    for run in data.get("recentRuns", []):
        click.echo(f"  run {run['id']}  {run['status']}  scheduled for {run['scheduledFor'] or 'run-now'}")
    for miss in data.get("misses", []):
        click.echo(f"  missed {miss['missedCount']} ({miss['reason']}) from {miss['firstScheduledFor']} "
                   f"to {miss['lastScheduledFor']}, {miss['lateRuns']} run late")


def _print_list(data):
    if not data["schedules"]:
        click.echo("No schedules.")
    for item in data["schedules"]:
        _print_summary(item)


def _print_preview(data):
    for utc_time, local_time in zip(data["times"], data["localTimes"]):
        click.echo(f"{utc_time}  ({local_time} {data['timezone']})")


# ------------------------------------------------------------------ request bodies


def _definition_options(create):
    """Add the options that define a schedule; ``create`` makes --name, --type and --cron required."""
    options = [
        click.option("--type", "type_name", required=create, help="Job type, such as http-request."),
        click.option("--cron", "cron_expression", required=create,
                     help="Cron expression: 5 fields, or 6 with seconds first, or an alias such as @daily."),
        click.option("--payload", default=None, help="The job payload as a JSON object. Default: {}."),
        click.option("--queue", default=None, help="Queue: high-priority, default (the default) or low-priority."),
        click.option("--desc", "description", default=None, help="Description of the schedule."),
        click.option("--timezone", "timezone_name", default=None,
                     help="IANA time zone of the cron fields. Default: JOBS_SCHEDULE_TIMEZONE, else UTC."),
        click.option("--misfire", type=click.Choice(MISFIRE_POLICIES), default=None,
                     help="Occurrences missed while no scheduler ran: skip, run-once (default) or run-all."),
        click.option("--misfire-grace", "misfire_grace_ms", type=click.IntRange(0), default=None,
                     help="How late in ms a missed occurrence may still run. Required with run-all."),
        click.option("--overlap", type=click.Choice(OVERLAP_POLICIES), default=None,
                     help="allow (default), or skip an occurrence while the previous run waits or runs."),
        click.option("--priority", default=None, help="Job priority: critical, high, normal (default) or low."),
        click.option("--max-retries", type=int, default=None,
                     help="Retries after the first attempt. Default: JOBS_RETRY_ATTEMPTS."),
        click.option("--timeout", type=int, default=None,
                     help="Milliseconds one attempt may run. Default: JOBS_JOB_TIMEOUT."),
    ]
    if create:
        options.insert(0, click.option("--name", required=True, help="Unique schedule name, such as nightly-backup."))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _request_body(values, base_options=None):
    """Build a schedule request from the option values that were given."""
    fields = (("type", "type_name"), ("cron", "cron_expression"), ("queue", "queue"),
              ("description", "description"), ("timezone", "timezone_name"), ("misfirePolicy", "misfire"),
              ("misfireGraceMs", "misfire_grace_ms"), ("overlapPolicy", "overlap"))
    body = {field: values[name] for field, name in fields if values.get(name) is not None}
    if values.get("name") is not None:
        body["name"] = values["name"]
    if values.get("payload") is not None:
        body["payload"] = _call(loads_strict, values["payload"], "payload")

    job_options = {option: values[name] for option, name in
                   (("priority", "priority"), ("maxRetries", "max_retries"), ("timeout", "timeout"))
                   if values.get(name) is not None}
    if job_options:
        body["options"] = dict(base_options or {}, **job_options)
    return body


# ------------------------------------------------------------------ commands


@click.group()
def schedule():
    """Recurring jobs: cron schedules that enqueue a job at each fire time."""


@schedule.command("list")
@JSON_OPTION
def list_schedules(as_json):
    """List every schedule with its next and last run."""
    service = _service()
    _emit({"schedules": _call(service.list_schedules)}, as_json, _print_list)


@schedule.command()
@click.argument("name")
@JSON_OPTION
def show(name, as_json):
    """Show one schedule with its latest runs and missed occurrences."""
    service = _service()
    _emit(_call(service.details, name), as_json, _print_details)


@schedule.command()
@_definition_options(create=True)
@JSON_OPTION
def create(as_json, **values):
    """Create a schedule that enqueues a job of --type at each fire time of --cron."""
    service = _service()
    _emit(_call(service.create, _request_body(values)), as_json, _print_summary)


@schedule.command()
@click.argument("name")
@_definition_options(create=False)
@JSON_OPTION
def update(name, as_json, **values):
    """Change the given fields of schedule NAME; job options given here are merged into the stored ones."""
    service = _service()
    current = _call(service.get, name)
    body = _request_body(values, base_options=current["options"])
    _emit(_call(service.update, name, body), as_json, _print_summary)


@schedule.command()
@click.argument("name")
@JSON_OPTION
def enable(name, as_json):
    """Enable schedule NAME from its next occurrence on; occurrences while it was disabled do not run."""
    service = _service()
    _emit(_call(service.set_enabled, name, True), as_json, _print_summary)


@schedule.command()
@click.argument("name")
@JSON_OPTION
def disable(name, as_json):
    """Disable schedule NAME; runs already enqueued are not affected."""
    service = _service()
    _emit(_call(service.set_enabled, name, False), as_json, _print_summary)


@schedule.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm the deletion.")
@JSON_OPTION
def delete(name, yes, as_json):
    """Delete schedule NAME and its miss records; the history of its runs stays."""
    if not yes:
        raise CommandError(f"deleting schedule {name!r} cannot be undone; pass --yes to confirm", runtime.EXIT_USAGE)
    service = _service()
    _emit(_call(service.delete, name), as_json, lambda data: click.echo(f"schedule {data['name']} deleted"))


@schedule.command("run-now")
@click.argument("name")
@JSON_OPTION
def run_now(name, as_json):
    """Enqueue one run of schedule NAME now, outside its cron times, and print the job id."""
    service = _service()
    _emit(_call(service.run_now, name), as_json, lambda data: click.echo(data["id"]))


@schedule.command()
@click.argument("target", metavar="EXPR|NAME")
@click.option("--count", type=click.IntRange(1, PREVIEW_MAX_COUNT), default=5, show_default=True,
              help="Number of fire times to show.")
@click.option("--timezone", "timezone_name", default=None,
              help="IANA time zone of an expression. Default: JOBS_SCHEDULE_TIMEZONE, else UTC.")
@JSON_OPTION
def preview(target, count, timezone_name, as_json):
    """Show the next fire times of a cron expression or of the schedule called NAME.

    An argument with a space or a leading @ is an expression, such as '*/5 * * * *'
    or @daily. Any other argument is a schedule name.
    """
    if " " in target.strip() or target.startswith("@"):
        service = ScheduleService(_context().settings, schedules=None, queue=None)
        data = _call(service.preview_expression, target, timezone_name, count)
    else:
        if timezone_name is not None:
            raise CommandError("--timezone applies to an expression; schedule "
                               f"{target!r} uses its own time zone", runtime.EXIT_USAGE)
        data = _call(_service().preview, target, count)
    _emit(data, as_json, _print_preview)
