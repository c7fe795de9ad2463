"""The ``stats`` command: live counts from Redis, and history over a time window from PostgreSQL."""

import time

import click

from ..errors import JobsError
from ..settings import QUEUE_NAMES
from . import runtime
from .main import emit, pass_context
from .runtime import fail_for

STATES = ("waiting", "active", "delayed", "completed", "failed", "cancelled")


def collect(settings, queue, hours, performance):
    queues = [queue] if queue else list(QUEUE_NAMES)
    queue_core = runtime.check_redis(settings)
    counts = queue_core.counts(queues)
    warning = queue_core.eviction_warning()
    data = {
        "queues": counts,
        "total": {state: sum(row[state] for row in counts.values()) for state in STATES},
        "windowHours": hours,
        "warnings": [warning] if warning else [],
    }
    store = runtime.open_store(settings)
    window = {}
    for row in store.fetch_all("window_totals", {"hours": hours, "queue": queue}):
        window.setdefault(row["queue"], {})[row["status"]] = row["jobs"]
    data["history"] = window
    if performance:
        data["performance"] = store.fetch_all("performance_by_type", {"hours": hours, "queue": queue})
    return data


def print_stats(data):
    for warning in data["warnings"]:
        click.echo(f"WARNING: {warning}", err=True)
    click.echo("Live (Redis):")
    click.echo(f"  {'queue':<15}" + "".join(f"{state:>11}" for state in STATES))
    for name, row in list(data["queues"].items()) + [("total", data["total"])]:
        paused = " (paused)" if row.get("paused") else ""
        click.echo(f"  {name:<15}" + "".join(f"{row[state]:>11}" for state in STATES) + paused)
    click.echo(f"\nHistory, last {data['windowHours']} h (PostgreSQL):")
    if not data["history"]:
        click.echo("  no jobs")
    for queue, statuses in data["history"].items():
        click.echo(f"  {queue}: " + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())))
    if "performance" in data:
        click.echo(f"\nPerformance by type, last {data['windowHours']} h:")
        click.echo(f"  {'type':<20}{'jobs':>8}{'jobs/h':>10}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'failed':>9}")
        for row in data["performance"]:
            rate = "-" if row["failure_rate"] is None else f"{row['failure_rate'] * 100:.1f}%"
            click.echo(f"  {row['type']:<20}{row['jobs']:>8}{row['jobs_per_hour']:>10}"
                       f"{_number(row['mean_ms']):>10}{_number(row['p50_ms']):>10}{_number(row['p95_ms']):>10}"
                       f"{rate:>9}")


def _number(value):
    return "-" if value is None else f"{value:.0f}"


@click.command()
@click.option("--queue", type=click.Choice(QUEUE_NAMES), default=None, help="Show one queue only.")
@click.option("--time", "hours", type=click.IntRange(1, 24 * 366), default=24, show_default=True,
              help="Window of the history figures, in hours.")
@click.option("--performance", is_flag=True,
              help="Add jobs per hour, mean, p50 and p95 duration (ms) and failure rate per job type.")
@click.option("--watch", type=click.IntRange(1, 3600), default=None, metavar="SECONDS",
              help="Refresh every SECONDS until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (one object per refresh).")
@pass_context
def stats(context, queue, hours, performance, watch, as_json):
    """Show job counts per queue from Redis and per status over a time window from PostgreSQL."""
    settings = context.services()
    try:
        while True:
            try:
                data = collect(settings, queue, hours, performance)
            except JobsError as error:
                raise fail_for(error) from error
            if watch and not as_json:
                click.clear()
            emit(data, as_json, print_stats)
            if not watch:
                return
            time.sleep(watch)
    except KeyboardInterrupt:
        click.echo("")
