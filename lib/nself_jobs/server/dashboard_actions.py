"""The dashboard's POST forms: job and queue actions, bulk retry, schedules, login and logout.

Every form carries a CSRF token (see security.py). Each handler returns a 303
redirect and sets a one-time message, so reloading the next page repeats nothing.
Jobs and schedules of another app are not found, as in the REST API.
"""

import logging

import bottle

from ..errors import Conflict, JobsError, NotFound
from ..history.dashboard_queries import JobFilter, failed_job_ids
from ..operations import Operations
from ..settings import QUEUE_NAMES
from .api import check_job_id
from .control import QueueControl
from .pages import dashboard_link, redirect_after_post, render, set_flash
from .responses import request_account

log = logging.getLogger(__name__)

# Maximum jobs moved by one bulk-retry form; the confirmation page states it, and the form can be sent again.
BULK_RETRY_LIMIT = 1000
JOB_ACTIONS = ("retry", "cancel", "delete", "promote")
QUEUE_ACTIONS = ("pause", "resume")
SCHEDULE_ACTIONS = ("enable", "disable", "run-now")


def _form_text(name, max_length=1000):
    value = bottle.request.forms.getunicode(name)
    if not value or "\x00" in value:
        return None
    return value[:max_length]


class DashboardActions:
    """POST handlers of the dashboard."""

    def __init__(self, settings, queue, store, security, schedules):
        self.settings = settings
        self.queue = queue
        self.store = store
        self.security = security
        self.schedules = schedules
        self.operations = Operations(queue)
        self.control = QueueControl(queue)
        self.base = settings.dashboard_path

    def link(self, path="", **params):
        return dashboard_link(self.base, path, request_account(), **params)

    def _check_csrf(self):
        problem = self.security.csrf_problem()
        if problem:
            log.warning("dashboard %s rejected: %s", bottle.request.path, problem)
            raise bottle.HTTPResponse(
                render("error", self.settings, self.security, "Form rejected", None, status=403,
                       heading="Form rejected", message=problem),
                status=403, headers={"Content-Type": "text/html; charset=utf-8"})

    def _done(self, location, kind, text):
        set_flash(self.base, kind, text)
        return redirect_after_post(location)

    def _back(self, default):
        """Return the form's ``back`` field when it is a dashboard path, else ``default``."""
        back = _form_text("back", 2000)
        if back and back.startswith(self.base) and not back.startswith("//") and "\\" not in back:
            return back
        return default

    # ------------------------------------------------------------ jobs

    def job_action(self, job_id, action):
        self._check_csrf()
        if action not in JOB_ACTIONS:
            raise NotFound(f"unknown job action {action!r}; actions: {', '.join(JOB_ACTIONS)}")
        check_job_id(job_id)
        back = self._back(self.link(f"/jobs/{job_id}"))
        account = self.control.job_account(job_id)
        if account is None or account != request_account():
            return self._done(back, "error", f"Job {job_id} is no longer in Redis (or belongs to another app); "
                                             "its history stays, but it cannot be changed.")
        try:
            text = self._run_job_action(job_id, action)
        except Conflict as error:
            return self._done(back, "error", str(error))
        log.info("dashboard: %s job %s (%s)", action, job_id, text)
        return self._done(back, "ok", text)

    def _run_job_action(self, job_id, action):
        if action == "retry":
            self.operations.retry(job_id)
            return f"Job {job_id} queued again."
        if action == "promote":
            self.operations.promote(job_id)
            return f"Job {job_id} moved to its queue; it runs next in its priority level."
        outcome = self.operations.delete(job_id) if action == "delete" else self.operations.cancel(job_id)
        return {"cancelled": f"Job {job_id} cancelled.",
                "requested": f"Job {job_id} is running; it stops within about a second.",
                "removed": f"Job {job_id} removed from Redis; its history is kept."}[outcome]

    def retry_matching(self):
        """Retry up to BULK_RETRY_LIMIT failed jobs matching the submitted filter, oldest failure first."""
        self._check_csrf()
        queue_name = _form_text("queue", 100)
        if queue_name is not None and queue_name not in QUEUE_NAMES:
            raise NotFound(f"queue {queue_name!r} not found; queues: {', '.join(QUEUE_NAMES)}")
        job_filter = JobFilter(status="failed", queue=queue_name, type=_form_text("type", 100),
                               text=_form_text("q", 200), error=_form_text("error"))
        retried = skipped = 0
        for job_id in failed_job_ids(self.store, request_account(), job_filter, BULK_RETRY_LIMIT):
            try:
                self.operations.retry(job_id)
                retried += 1
            except (Conflict, NotFound):
                skipped += 1  # retried meanwhile, or its cleanup age passed
        log.info("dashboard: bulk retry of %s: %d retried, %d skipped", job_filter, retried, skipped)
        text = f"{retried} failed job{'s' if retried != 1 else ''} queued again."
        if skipped:
            text += (f" {skipped} skipped: they were no longer failed, or Redis no longer holds them "
                     "(JOBS_CLEAN_FAILED_AFTER).")
        location = self.link("/jobs", queue=job_filter.queue, type=job_filter.type, q=job_filter.text,
                             error=job_filter.error, status="failed")
        return self._done(location, "ok" if retried or not skipped else "error", text)

    # ------------------------------------------------------------ queues

    def queue_action(self, queue_name, action):
        self._check_csrf()
        if action not in QUEUE_ACTIONS:
            raise NotFound(f"unknown queue action {action!r}; actions: {', '.join(QUEUE_ACTIONS)}")
        self.control.set_paused(queue_name, action == "pause")
        log.info("dashboard: queue %s %sd", queue_name, action)
        text = (f"Queue {queue_name} paused: workers take no new jobs from it; running jobs finish."
                if action == "pause" else f"Queue {queue_name} resumed.")
        return self._done(self._back(self.link(f"/queues/{queue_name}")), "ok", text)

    # ------------------------------------------------------------ schedules

    def schedule_action(self, name, action):
        self._check_csrf()
        if action not in SCHEDULE_ACTIONS:
            raise NotFound(f"unknown schedule action {action!r}; actions: {', '.join(SCHEDULE_ACTIONS)}")
        back = self.link("/schedules")
        schedule = self.schedules.get(name)
        if schedule["account"] != request_account():
            raise NotFound(f"schedule {name!r} not found")
        try:
            if action == "run-now":
                job = self.schedules.run_now(name)
                text = f"Schedule {name}: job {job['id']} queued now."
            else:
                self.schedules.set_enabled(name, action == "enable")
                text = f"Schedule {name} {action}d."
        except JobsError as error:
            return self._done(back, "error", f"Schedule {name}: {error}")
        log.info("dashboard: schedule %s %s", name, action)
        return self._done(back, "ok", text)

    # ------------------------------------------------------------ login

    def login(self):
        self._check_csrf()
        if not self.security.enabled:
            return redirect_after_post(self.base)
        client = bottle.request.remote_addr or "unknown"
        next_path = _form_text("next", 2000) or self.base
        if not next_path.startswith(self.base) or next_path.startswith("//") or "\\" in next_path:
            next_path = self.base
        if self.security.login_blocked(client):
            log.warning("dashboard login from %s blocked after repeated failures", client)
            return render("login", self.settings, self.security, "Log in", None, status=429, next_path=next_path,
                          error="Too many failed logins from this address; wait five minutes.")
        token = bottle.request.forms.getunicode("token") or ""
        if not self.security.token_matches(token.encode("utf-8")):
            self.security.record_login_failure(client)
            log.warning("dashboard login from %s failed: wrong token", client)
            return render("login", self.settings, self.security, "Log in", None, status=401, next_path=next_path,
                          error="Wrong token. Enter the value of JOBS_API_TOKEN.")
        self.security.start_session()
        log.info("dashboard login from %s", client)
        return redirect_after_post(next_path)

    def logout(self):
        self._check_csrf()
        self.security.end_session()
        return self._done(f"{self.base}/login" if self.security.enabled else self.base, "ok", "Logged out.")
