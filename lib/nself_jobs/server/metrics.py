"""``GET /metrics`` in the Prometheus text exposition format (version 0.0.4).

Sources:

- queue depth per queue and state, paused queues and live workers come from
  Redis at each scrape;
- ``nself_jobs_completed_total``, ``nself_jobs_failed_attempts_total`` and the
  ``nself_jobs_duration_seconds`` histogram are counted from the PostgreSQL
  history (``job_results`` and ``job_failures``), where every completed or failed
  attempt is a row that is never updated. That keeps them monotonic across
  server restarts and across several servers, which counters kept in one
  process's memory would not be. They drop only if history rows are deleted,
  and Prometheus treats that drop as a counter reset;
- ``nself_jobs_history_jobs`` is a gauge of jobs in the history per status.

The history queries scan the tables, so their result is cached for
HISTORY_CACHE_S seconds; a scrape every 15 s costs one scan per 15 s.
"""

import logging
import threading
import time

from .. import keys
from ..errors import ServiceUnavailable
from ..history.dashboard_queries import DURATION_BUCKETS_S, metrics_counts
from ..settings import QUEUE_NAMES
from .control import QueueControl

log = logging.getLogger(__name__)

HISTORY_CACHE_S = 10.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value):
    """Escape a label value as the exposition format requires: backslash, double quote and newline."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{escape_label(value)}"' for name, value in labels.items()) + "}"


def _number(value):
    if isinstance(value, float):
        return repr(value)
    return str(value)


class MetricsWriter:
    """Lines of one exposition, each metric family with its HELP and TYPE."""

    def __init__(self):
        self.lines = []

    def family(self, name, kind, help_text):
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name, value, **labels):
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def text(self):
        return "\n".join(self.lines) + "\n"


class Metrics:
    """Builds the exposition from Redis and a cached read of the history."""

    def __init__(self, queue, store, clock=time.monotonic):
        self.queue = queue
        self.store = store
        self.control = QueueControl(queue)
        self.clock = clock
        self._cached = None
        self._cached_at = None
        self._lock = threading.Lock()
        self._history_down = False

    def history_counts(self):
        """Return the history counts, at most HISTORY_CACHE_S seconds old."""
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._cached_at >= HISTORY_CACHE_S:
                self._cached = metrics_counts(self.store)
                self._cached_at = now
            return self._cached

    def render(self):
        """Return the exposition text; history families are left out while PostgreSQL is down."""
        writer = MetricsWriter()
        self._write_live(writer)
        try:
            history = self.history_counts()
        except ServiceUnavailable as error:
            if not self._history_down:
                log.warning("metrics: history metrics left out until PostgreSQL is reachable again: %s", error)
            self._history_down = True
            history = None
        else:
            if self._history_down:
                log.info("metrics: history metrics are back")
            self._history_down = False
        writer.family("nself_jobs_history_up", "gauge", "1 when the PostgreSQL history could be read")
        writer.sample("nself_jobs_history_up", 0 if history is None else 1)
        if history is not None:
            self._write_history(writer, history)
        return writer.text()

    def _write_live(self, writer):
        counts = self.queue.counts()
        workers = self.control.alive_workers()
        writer.family("nself_jobs_queue_jobs", "gauge",
                      "Jobs in Redis per queue and state; completed, failed and cancelled until their cleanup age")
        for queue in QUEUE_NAMES:
            for state in ("waiting", "active", "delayed", "completed", "failed", "cancelled"):
                writer.sample("nself_jobs_queue_jobs", counts[queue][state], queue=queue, state=state)
        writer.family("nself_jobs_queue_paused", "gauge", "1 when the queue is paused")
        for queue in QUEUE_NAMES:
            writer.sample("nself_jobs_queue_paused", int(counts[queue]["paused"]), queue=queue)
        writer.family("nself_jobs_workers_alive", "gauge",
                      f"Worker processes with a heartbeat in the last {keys.WORKER_TTL_S} s")
        writer.sample("nself_jobs_workers_alive", len(workers))
        writer.family("nself_jobs_workers_busy", "gauge", "Live worker processes running a job")
        writer.sample("nself_jobs_workers_busy", sum(1 for worker in workers if worker["job"]))

    def _write_history(self, writer, history):
        writer.family("nself_jobs_history_jobs", "gauge", "Jobs in the PostgreSQL history per app, type and status")
        for row in history["jobs"]:
            writer.sample("nself_jobs_history_jobs", row["jobs"], app=row["app"], type=row["type"],
                          status=row["status"])

        writer.family("nself_jobs_completed_total", "counter", "Jobs completed, per app and type")
        for (app, job_type), entry in sorted(history["durations"].items()):
            writer.sample("nself_jobs_completed_total", sum(entry["buckets"]), app=app, type=job_type)

        writer.family("nself_jobs_failed_attempts_total", "counter",
                      "Failed attempts per app and type, those retried afterwards included")
        for row in history["failed_attempts"]:
            writer.sample("nself_jobs_failed_attempts_total", row["attempts"], app=row["app"], type=row["type"])

        writer.family("nself_jobs_duration_seconds", "histogram", "Run time of completed attempts, per app and type")
        for (app, job_type), entry in sorted(history["durations"].items()):
            cumulative = 0
            for bound, attempts in zip((*DURATION_BUCKETS_S, "+Inf"), entry["buckets"]):
                cumulative += attempts
                writer.sample("nself_jobs_duration_seconds_bucket", cumulative, app=app, type=job_type,
                              le=bound if bound == "+Inf" else _number(float(bound)))
            writer.sample("nself_jobs_duration_seconds_sum", entry["sum_ms"] / 1000, app=app, type=job_type)
            writer.sample("nself_jobs_duration_seconds_count", cumulative, app=app, type=job_type)
