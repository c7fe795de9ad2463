"""The dashboard's pages: overview, job lists, one job, failures, schedules, login.

Pages are server-rendered Bottle templates from ``templates/`` and work without
JavaScript; ``static/dashboard.js`` only refreshes them and requests
confirmation before destructive actions. Lists come from the PostgreSQL history of the request's
app; live counts, workers and paused queues come from Redis. The POST handlers
are in ``dashboard_actions.py``.
"""

import logging
from datetime import datetime, timedelta, timezone

import bottle

from .. import cron, jobtypes
from ..errors import NotFound, ServiceUnavailable, ValidationError
from ..history.dashboard_queries import JobFilter, count_jobs, failure_groups, hourly_outcomes, job_page
from ..history.schedules import ScheduleStore
from ..jobview import job_details
from ..paths import TEMPLATES_DIR
from ..scheduler import ScheduleService
from ..settings import QUEUE_NAMES
from .api import JOB_STATUSES, check_job_id
from .charts import hourly_chart
from .control import QueueControl
from .dashboard_actions import BULK_RETRY_LIMIT, DashboardActions
from .pages import page_errors, render
from .responses import query_text, request_account

log = logging.getLogger(__name__)

PAGE_SIZE = 50
STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
FAILURE_WINDOWS_H = (1, 24, 168)
# Maximum length of an error message passed as an exact filter in a link; longer ones are searched by their start.
MAX_ERROR_FILTER = 1000
ENDED = ("completed", "failed", "cancelled")


def job_filter_from_query(queue_name=None):
    """Build a JobFilter from the query string; raise ValidationError for an unknown status or queue."""
    status = query_text("status")
    if status is not None and status not in JOB_STATUSES:
        raise ValidationError("status", f"unknown status {status!r}: expected one of {', '.join(JOB_STATUSES)}")
    queue_name = queue_name or query_text("queue")
    if queue_name is not None and queue_name not in QUEUE_NAMES:
        raise NotFound(f"queue {queue_name!r} not found; queues: {', '.join(QUEUE_NAMES)}")
    return JobFilter(status=status, queue=queue_name, type=query_text("type", 100), text=query_text("q", 200),
                     error=query_text("error", MAX_ERROR_FILTER))


def filter_params(job_filter):
    """Return the query parameters that reproduce ``job_filter`` in a link."""
    return {"status": job_filter.status, "queue": job_filter.queue, "type": job_filter.type,
            "q": job_filter.text, "error": job_filter.error}


class Dashboard:
    """Page handlers over one queue, history store and schedule service."""

    def __init__(self, settings, queue, store, security):
        self.settings = settings
        self.queue = queue
        self.store = store
        self.security = security
        self.control = QueueControl(queue)
        self.schedules = ScheduleService(settings, ScheduleStore(store), queue)

    def render(self, template, title, active, **values):
        return render(template, self.settings, self.security, title, active, **values)

    # ------------------------------------------------------------ overview

    def overview(self):
        counts = self.queue.counts()
        workers = self.control.alive_workers()
        for worker in workers:
            worker["last_seen_at"] = datetime.fromtimestamp(worker["lastSeen"], timezone.utc)
        try:
            start, completed, failed = hourly_outcomes(self.store, request_account())
        except ServiceUnavailable as error:
            # The live part comes from Redis, so the page stays useful while PostgreSQL is down.
            log.warning("dashboard overview without charts: %s", error)
            charts, history_error = [], str(error)
        else:
            charts = [hourly_chart("Completed, last 24 h", "completed", completed, start, "completed"),
                      hourly_chart("Failed, last 24 h", "failed", failed, start, "failed")]
            history_error = None
        totals = {state: sum(row[state] for row in counts.values())
                  for state in ("waiting", "active", "delayed", "failed")}
        serving = {name: sum(1 for worker in workers if name in worker["queues"]) for name in QUEUE_NAMES}
        return self.render("overview", "Overview", "overview", queues=QUEUE_NAMES, counts=counts, totals=totals,
                           workers=workers, serving=serving, charts=charts, types=jobtypes.names(),
                           history_error=history_error)

    # ------------------------------------------------------------ job lists

    def jobs(self, queue_name=None):
        job_filter = job_filter_from_query(queue_name)
        before, after = query_text("before"), query_text("after")
        try:
            page_size = int(bottle.request.query.get("pageSize") or PAGE_SIZE)
        except ValueError:
            raise ValidationError("pageSize", "expected a whole number") from None
        pager = job_page(self.store, request_account(), job_filter, page_size, before=before, after=after)
        total, capped = count_jobs(self.store, request_account(), job_filter)
        counts = self.queue.counts()
        live = counts[job_filter.queue] if job_filter.queue else {
            state: sum(row[state] for row in counts.values()) for state in
            ("waiting", "active", "delayed", "completed", "failed", "cancelled")}
        title = f"Queue {job_filter.queue}" if job_filter.queue else "Jobs"
        types = sorted(set(jobtypes.names()) | ({job_filter.type} if job_filter.type else set()))
        return self.render("jobs", title, "jobs" if not job_filter.queue else "queue:" + job_filter.queue,
                           job_filter=job_filter, params=filter_params(job_filter), pager=pager, total=total,
                           capped=capped, live=live, paused=counts[job_filter.queue]["paused"]
                           if job_filter.queue else None, statuses=JOB_STATUSES, types=types,
                           first_page=not (before or after), queue_name=job_filter.queue, ended=ENDED,
                           page_size=page_size if page_size != PAGE_SIZE else None)

    def retry_matching_form(self):
        """Show how many failed jobs match the filter before a bulk retry."""
        job_filter = job_filter_from_query()
        failed_filter = JobFilter(status="failed", queue=job_filter.queue, type=job_filter.type,
                                  text=job_filter.text, error=job_filter.error)
        total, capped = count_jobs(self.store, request_account(), failed_filter)
        return self.render("confirm_retry", "Retry failed jobs", "jobs", job_filter=failed_filter,
                           params=filter_params(failed_filter), total=total, capped=capped, limit=BULK_RETRY_LIMIT)

    # ------------------------------------------------------------ one job

    def job(self, job_id):
        check_job_id(job_id)
        details = job_details(job_id, self.queue, self.store)
        if details is None or details.get("account") != request_account():
            raise NotFound(f"job {job_id} not found")
        attempts = _attempt_rows(details)
        in_redis = self.control.job_account(job_id) is not None
        return self.render("job", f"Job {job_id[:8]}", "jobs", job=details, attempts=attempts, in_redis=in_redis,
                           ended=details["status"] in ENDED)

    # ------------------------------------------------------------ failures

    def failures(self):
        try:
            hours = int(bottle.request.query.get("hours") or 24)
        except ValueError:
            raise ValidationError("hours", "expected a whole number of hours") from None
        if hours not in FAILURE_WINDOWS_H:
            raise ValidationError("hours", f"expected one of {', '.join(map(str, FAILURE_WINDOWS_H))}")
        since = datetime.now(timezone.utc) - timedelta(hours=hours)
        groups = failure_groups(self.store, request_account(), since)
        for group in groups:
            error = group["error"] or ""
            group["filter"] = ({"status": "failed", "error": error} if len(error) <= MAX_ERROR_FILTER
                               else {"status": "failed", "q": error[:200]})
        return self.render("failures", "Failures", "failures", groups=groups, hours=hours,
                           windows=FAILURE_WINDOWS_H)

    # ------------------------------------------------------------ schedules

    def schedules_page(self):
        account = request_account()
        now = datetime.now(timezone.utc)
        rows = [row for row in self.schedules.list_schedules() if row["account"] == account]
        for row in rows:
            row["upcoming"] = _upcoming(row, now) if row["enabled"] else []
        return self.render("schedules", "Schedules", "schedules", schedules=rows)

    # ------------------------------------------------------------ login

    def login_form(self):
        if not self.security.enabled:
            return self.render("error", "Login", None, heading="No login needed",
                               message="JOBS_API_TOKEN is not set, so the dashboard is open to every client that "
                                       "can reach it. Set it before exposing the port.")
        return self.render("login", "Log in", None, next_path=_safe_next(self.settings.dashboard_path,
                                                                          bottle.request.query.getunicode("next")),
                           error=None)

    def static(self, name):
        if name not in STATIC_FILES:
            raise bottle.HTTPError(404, "not found")
        response = bottle.static_file(name, root=str(TEMPLATES_DIR / "static"), mimetype=STATIC_FILES[name],
                                      charset="utf-8")
        response.set_header("Cache-Control", "public, max-age=3600")
        return response


def _safe_next(base, target):
    """Return ``target`` when it is a path inside the dashboard, else the dashboard's root (no open redirect)."""
    if target and target.startswith(base) and not target.startswith("//") and "\\" not in target:
        return target
    return base


def _upcoming(schedule, now, count=3):
    try:
        return cron.parse(schedule["cron"], schedule["timezone"]).next_n(now, count)
    except ValidationError:
        return []


def _attempt_rows(details):
    """Merge failures and results into one list of attempts, oldest first."""
    rows = [{"attempt": failure["attempt"], "outcome": "failed", "at": failure["failedAt"],
             "error": failure["error"], "stack": failure["stack"], "duration_ms": None}
            for failure in details["failures"]]
    rows += [{"attempt": result["attempt"], "outcome": "completed", "at": result["completedAt"], "error": None,
              "stack": None, "duration_ms": result["durationMs"]}
             for result in details["results"]]
    return sorted(rows, key=lambda row: (row["attempt"] or 0, row["at"] or ""))


def register_dashboard_routes(app, settings, queue, store, security):
    """Add the dashboard's pages, forms and static files under JOBS_DASHBOARD_PATH."""
    pages = Dashboard(settings, queue, store, security)
    actions = DashboardActions(settings, queue, store, security, pages.schedules)
    wrap = page_errors(settings, security)
    base = settings.dashboard_path
    routes = [
        ("GET", "", pages.overview),
        ("GET", "/", pages.overview),
        ("GET", "/jobs", pages.jobs),
        ("GET", "/queues/<queue_name>", pages.jobs),
        ("GET", "/jobs/<job_id>", pages.job),
        ("GET", "/failures", pages.failures),
        ("GET", "/schedules", pages.schedules_page),
        ("GET", "/retry", pages.retry_matching_form),
        ("GET", "/login", pages.login_form),
        ("POST", "/login", actions.login),
        ("POST", "/logout", actions.logout),
        ("POST", "/retry", actions.retry_matching),
        ("POST", "/jobs/<job_id>/<action>", actions.job_action),
        ("POST", "/queues/<queue_name>/<action>", actions.queue_action),
        ("POST", "/schedules/<name>/<action>", actions.schedule_action),
    ]
    for method, path, handler in routes:
        app.route(base + path, method, wrap(handler))
    app.route(base + "/static/<name>", "GET", pages.static)
    return pages
