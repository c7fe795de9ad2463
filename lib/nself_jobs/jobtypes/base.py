"""The contract every job type implements.

A job type is a name, a validator run at submission, and a handler run by the
worker. Validators raise :class:`~nself_jobs.errors.ValidationError` with a
dotted field path (``payload.url``); the REST API turns that into 422 and the
CLI into a non-zero exit. Handlers return a JSON-serialisable result or raise;
:class:`~nself_jobs.errors.JobFailed` marks an expected failure.
"""

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import JobTimeout


@dataclass(frozen=True)
class JobType:
    """A named job type: ``validate(payload, settings)`` returns the payload to store."""

    name: str
    description: str
    validate: Callable[[dict, Any], dict]
    run: Callable[[dict, "JobContext"], Any]


class JobContext:
    """What a running handler may use: its job id, attempt, settings, deadline and progress."""

    def __init__(self, job_id, attempt, settings, timeout_ms, report_progress=None, clock=time.monotonic):
        self.job_id = job_id
        self.attempt = attempt
        self.settings = settings
        self.timeout_ms = timeout_ms
        self._clock = clock
        self._deadline = clock() + timeout_ms / 1000.0
        self._report_progress = report_progress

    def remaining_s(self):
        """Return the seconds left before the job's deadline; raise JobTimeout when none are left."""
        left = self._deadline - self._clock()
        if left <= 0:
            raise JobTimeout(self.timeout_ms)
        return left

    def progress(self, percent, message=None):
        """Report progress from 0 to 100 with an optional message."""
        percent = max(0, min(100, int(percent)))
        if self._report_progress is not None:
            self._report_progress(percent, message)
