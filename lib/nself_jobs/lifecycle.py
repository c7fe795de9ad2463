"""The end of an attempt: completed, retried later or now, failed, or cancelled.

The worker and the recovery of lost jobs both end attempts through
:class:`Lifecycle`, so the retry rules hold the same way for a job that raised,
timed out, was stopped by a shutdown or lost its worker.
"""

import json
import time
from dataclasses import dataclass

from . import keys
from .errors import PermanentJobFailure
from .queue import load_script, rq_time
from .retry import backoff_ms


@dataclass(frozen=True)
class Settlement:
    """The keys and arguments of one settle-script call, built now and run later."""

    keys: list
    args: list


class Lifecycle:
    """Record attempt outcomes with the settle script; every method returns True when recorded."""

    def __init__(self, connection, settings, clock=time.time):
        self.redis = connection
        self.settings = settings
        self.clock = clock
        self._settle = connection.register_script(load_script("settle"))

    def _call(self, job_id, rq_queue, owner, attempt, outcome, target, score, expiry_ms, fields, events, run):
        """Run the settle script, or with ``run=False`` return the call as a :class:`Settlement`."""
        flat = [item for pair in fields.items() for item in pair]
        encoded = [json.dumps(event, ensure_ascii=False, allow_nan=False, default=str) for event in events]
        settlement = Settlement(
            keys=[keys.job_key(job_id), keys.registry_key("wip", rq_queue), keys.HISTORY_KEY, target, keys.WAKEUP_KEY],
            args=[job_id, owner or "", attempt, outcome, score, expiry_ms, keys.WAKEUP_MAX_TOKENS, *flat, "--", *encoded],
        )
        if not run:
            return settlement
        return bool(self._settle(keys=settlement.keys, args=settlement.args))

    def completed(self, job_id, rq_queue, owner, attempt, result, duration_ms, account="primary", run=True):
        now = self.clock()
        now_ms = int(now * 1000)
        ttl_ms = self.settings.clean_completed_after_ms
        result_json = json.dumps(result, ensure_ascii=False, allow_nan=False)
        fields = {"status": "finished", "ended_at": rq_time(now), "nj_ended_ms": now_ms,
                  "nj_result": result_json, "nj_duration_ms": duration_ms, "nj_progress": 100}
        event = {"e": "completed", "id": job_id, "t": now_ms, "attempt": attempt, "account": account,
                 "result": result, "duration_ms": duration_ms}
        return self._call(job_id, rq_queue, owner, attempt, "completed",
                          keys.registry_key("finished", rq_queue), now + ttl_ms / 1000, max(ttl_ms, 1),
                          fields, [event], run)

    def cancelled(self, job_id, rq_queue, owner, attempt, run=True):
        now = self.clock()
        now_ms = int(now * 1000)
        ttl_ms = self.settings.clean_failed_after_ms
        fields = {"status": "canceled", "ended_at": rq_time(now), "nj_ended_ms": now_ms}
        event = {"e": "cancelled", "id": job_id, "t": now_ms}
        return self._call(job_id, rq_queue, owner, attempt, "cancelled", keys.registry_key("canceled", rq_queue),
                          now + ttl_ms / 1000, max(ttl_ms, 1), fields, [event], run)

    def failed_attempt(self, job_id, rq_queue, owner, attempt, job, error_message, stack,
                       retry_after_s=None, retryable=True, account="primary", run=True):
        """End a failed attempt: retry it when attempts remain and the error allows, else fail the job.

        ``job`` holds the job's retry settings: ``max_attempts``, ``retry_delay_ms`` and ``backoff``.
        """
        attempt = int(attempt)
        now = self.clock()
        now_ms = int(now * 1000)
        final = not retryable or attempt >= job["max_attempts"]
        event = {"e": "attempt_failed", "id": job_id, "t": now_ms, "attempt": attempt, "account": account,
                 "error": error_message, "stack": stack}
        fields = {"nj_error": error_message, "nj_ended_ms": now_ms, "ended_at": rq_time(now)}

        if final:
            ttl_ms = self.settings.clean_failed_after_ms
            fields["status"] = "failed"
            event["next"] = "failed"
            return self._call(job_id, rq_queue, owner, attempt, "failed",
                              keys.registry_key("failed", rq_queue), now + ttl_ms / 1000, max(ttl_ms, 1),
                              fields, [event], run)

        wait_ms = backoff_ms(attempt, job["retry_delay_ms"], job["backoff"], self.settings.retry_max_delay_ms)
        if retry_after_s is not None:
            wait_ms = min(max(wait_ms, int(retry_after_s * 1000)), self.settings.retry_max_delay_ms)
        if wait_ms <= 0:
            fields["status"] = "queued"
            event["next"] = "pending"
            return self._call(job_id, rq_queue, owner, attempt, "retry-now", keys.queue_key(rq_queue),
                              0, 0, fields, [event], run)
        due_ms = now_ms + wait_ms
        fields.update(status="scheduled", nj_run_at_ms=due_ms)
        event.update(next="delayed", run_at=due_ms)
        return self._call(job_id, rq_queue, owner, attempt, "retry-later", keys.registry_key("scheduled", rq_queue),
                          due_ms / 1000, 0, fields, [event], run)

    def failure_from_exception(self, job_id, rq_queue, owner, attempt, job, error, stack, account="primary",
                               run=True):
        """End an attempt that raised ``error``, honouring PermanentJobFailure and ``retry_after_s``."""
        return self.failed_attempt(
            job_id, rq_queue, owner, attempt, job, str(error) or type(error).__name__, stack,
            retry_after_s=getattr(error, "retry_after_s", None),
            retryable=not isinstance(error, PermanentJobFailure), account=account, run=run,
        )
