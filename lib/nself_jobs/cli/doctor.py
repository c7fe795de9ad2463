"""The ``doctor`` command: check the queue's invariants and optionally repair them."""

import click
import psycopg
import redis

from ..doctor import CHECKS, Doctor
from ..errors import JobsError, ServiceUnavailable
from ..history.schedules import ScheduleStore
from ..queue import redis_target
from . import runtime
from .main import emit, pass_context
from .runtime import fail_for


def _open_history(settings):
    """Return ``(store, reason)``: the history store, or None and why PostgreSQL cannot be used."""
    try:
        store = runtime.open_store(settings)
    except ServiceUnavailable as error:
        return None, str(error)
    runtime.check_schema(store)
    return store, None


def _summary(report, name):
    if name in report.skipped:
        return f"skipped: {report.skipped[name]}"
    problems = report.problems_of(name)
    if problems:
        return f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    if name == "placement":
        return f"ok, {report.jobs} jobs"
    if name == "history":
        return f"ok, {report.compared} jobs compared, {report.pending_history} with history events still pending"
    return "ok"


def _print_report(report):
    for name in CHECKS:
        click.echo(f"{name:<10} {_summary(report, name)}")
        for problem in report.problems_of(name):
            click.echo(f"  {problem.subject}: {problem.message}")
            if problem.repair:
                click.echo(f"    {'repaired' if problem.repaired else 'repair'}: {problem.repair}")


def _print_result(data):
    _print_report(data["report"])
    after = data["after"]
    if after is None:
        if data["report"].clean:
            click.echo("Clean: every invariant holds.")
        else:
            click.echo("Run `nself-jobs doctor --repair` to fix what can be fixed safely.")
        return
    repaired = sum(problem.repaired for problem in data["report"].problems)
    click.echo(f"\n{len(data['report'].problems)} problems found, {repaired} repaired. Checked again:")
    _print_report(after)
    click.echo("Clean: every invariant holds." if after.clean else "Problems remain; see the lines above.")


@click.command()
@click.option("--repair", is_flag=True,
              help="Fix what is safe to fix, then run every check again and report what remains.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def doctor(context, repair, as_json):
    """Check the queue's invariants: each job in exactly one Redis state that matches its
    status, no running job without a live worker, Redis and PostgreSQL agreeing on each
    job's status, and every enabled schedule having a next run.

    Exit codes: 0 every invariant holds (after the repairs, with --repair), 11 a problem
    remains, 4 Redis unreachable, 5 PostgreSQL unreachable (the Redis checks still run),
    6 the plugin's tables are missing.
    """
    settings = context.services()
    try:
        queue = runtime.check_redis(settings)
        store, database_down = _open_history(settings)
    except JobsError as error:
        raise fail_for(error) from error
    skipped = {name: f"PostgreSQL unreachable: {database_down}" for name in ("history", "schedules")} \
        if database_down else {}
    checker = Doctor(queue.redis, settings, store=store, schedules=ScheduleStore(store) if store else None)

    try:
        report = checker.check(skipped)
        after = None
        if repair and not report.clean:
            checker.repair(report)
            after = checker.check(skipped)
    except redis.RedisError as error:
        raise fail_for(ServiceUnavailable("Redis", redis_target(settings.redis_url), str(error))) from error
    except psycopg.Error as error:
        raise fail_for(store.translate(error)) from error
    except JobsError as error:
        raise fail_for(error) from error

    final = after or report
    data = {"report": report, "after": after}
    if as_json:
        emit({"clean": final.clean, "report": report.as_dict(), "afterRepair": after and after.as_dict()},
             True, None)
    else:
        _print_result(data)
    if not final.clean:
        raise SystemExit(runtime.EXIT_INVARIANT)
    if database_down:
        raise SystemExit(runtime.EXIT_DATABASE)
