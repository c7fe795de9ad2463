"""Operator commands on jobs: retry, cancel and promote. Scripts and cron call these; none prompts."""

import click

from ..errors import Conflict, JobsError, NotFound
from ..operations import Operations
from ..settings import QUEUE_NAMES
from . import runtime
from .main import Context, emit, pass_context
from .runtime import CommandError, fail_for


def _operations(context):
    settings = context.services()
    try:
        return Operations(runtime.check_redis(settings))
    except JobsError as error:
        raise fail_for(error) from error


def _act_on_one(operation, job_id):
    try:
        return operation(job_id)
    except NotFound as error:
        raise CommandError(str(error), runtime.EXIT_NOT_FOUND) from error
    except Conflict as error:
        raise CommandError(str(error), runtime.EXIT_CONFLICT) from error
    except JobsError as error:
        raise fail_for(error) from error


@click.command()
@click.option("--queue", type=click.Choice(QUEUE_NAMES), default=None, help="Retry failed jobs of this queue only.")
@click.option("--type", "job_type", default=None, help="Retry failed jobs of this job type only.")
@click.option("--id", "job_id", default=None, help="Retry this one job; a job that is not failed is rejected with exit code 10.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=10, show_default=True,
              help="Maximum number of jobs to retry, oldest failure first.")
@click.option("--show", is_flag=True, help="List the jobs that would be retried and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def retry(context, queue, job_type, job_id, limit, show, as_json):
    """Move failed jobs back to their queues, each with a fresh set of retries.

    Exit codes: 0 retried or shown, 7 nothing to retry, 2 invalid option,
    4 or 5 connection failure, 9 unknown --id, 10 --id names a job that is not failed.
    Two retry commands at once still enqueue each failed job once.
    """
    operations = _operations(context)
    if job_id:
        if show:
            details = operations.queue.get_job(job_id)
            if details is None:
                raise CommandError(f"job {job_id} not found", runtime.EXIT_NOT_FOUND)
            if details["status"] != "failed":
                raise CommandError(f"job {job_id} is {details['status']}, not failed; only failed jobs can be retried",
                                   runtime.EXIT_CONFLICT)
            emit({"jobs": [details["id"]], "retried": 0}, as_json, lambda data: click.echo(job_id))
            return
        _act_on_one(operations.retry, job_id)
        emit({"retried": 1, "jobs": [job_id]}, as_json, lambda data: click.echo(f"retried {job_id}"))
        return

    try:
        candidates = operations.failed_jobs([queue] if queue else QUEUE_NAMES, job_type, limit)
    except JobsError as error:
        raise fail_for(error) from error
    if not candidates:
        emit({"retried": 0, "jobs": []}, as_json, lambda data: click.echo("No failed jobs to retry."))
        raise SystemExit(runtime.EXIT_NOTHING_TO_DO)
    if show:
        rows = [{"id": job.id, "type": job.type, "queue": job.queue, "attempts": job.attempts, "error": job.error}
                for job in candidates]
        emit({"jobs": rows, "retried": 0}, as_json, _print_failed)
        return

    retried = []
    for job in candidates:
        try:
            operations.retry(job.id, seen_attempts=job.attempts)
            retried.append(job.id)
        except (Conflict, NotFound):
            continue  # another retry or the cleanup got there first
        except JobsError as error:
            raise fail_for(error) from error
    emit({"retried": len(retried), "jobs": retried}, as_json,
         lambda data: click.echo(f"Retried {data['retried']} failed jobs."))
    if not retried:
        raise SystemExit(runtime.EXIT_NOTHING_TO_DO)


def _print_failed(data):
    for row in data["jobs"]:
        click.echo(f"{row['id']}  {row['type']}  {row['queue']}  attempts {row['attempts']}  {row['error']}")


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def cancel(context, job_id, as_json):
    """Cancel a waiting or delayed job, or stop a running one (within about a second)."""
    outcome = _act_on_one(_operations(context).cancel, job_id)
    emit({"id": job_id, "status": outcome}, as_json, lambda data: click.echo(f"{job_id} {outcome}"))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def promote(context, job_id, as_json):
    """Run a delayed job now: move it to the end of its priority level."""
    _act_on_one(_operations(context).promote, job_id)
    emit({"id": job_id, "status": "pending"}, as_json, lambda data: click.echo(f"{job_id} promoted"))


__all__ = ["Context", "cancel", "promote", "retry"]
