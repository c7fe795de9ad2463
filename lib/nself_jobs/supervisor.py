"""The worker command: N worker processes plus the background services they need.

The supervisor spawns ``concurrency`` worker processes, restarts any that dies,
and recovers the job a dead child held at once. In its own threads it runs the
history writer and the maintenance sweep (each behind a Redis lease, so any
number of supervisors and servers may run). SIGTERM or SIGINT is passed on to
the children, which finish or hand back their jobs (see ``worker.py``); a
second signal shortens their grace period to nothing.
"""

import logging
import multiprocessing
import signal
import threading
import time
import uuid

from . import keys
from .history import HistoryStore, HistoryWriter
from .maintenance import Maintenance
from .queue import JobQueue, connect_redis
from .scheduler import Scheduler
from .worker import run_worker_process, worker_name

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0


class Supervisor:
    """Run worker processes and the shared background services until stopped."""

    def __init__(self, settings, queues, concurrency, log_config=None, background_services=True):
        self.settings = settings
        self.queues = list(queues)
        self.concurrency = concurrency
        self.log_config = log_config
        self.background_services = background_services
        self.redis = connect_redis(settings.redis_url)
        self.stop_event = threading.Event()
        self.children = {}
        self._signals = 0
        self._context = multiprocessing.get_context("spawn")

    def _spawn(self):
        suffix = uuid.uuid4().hex[:6]
        process = self._context.Process(target=run_worker_process, name="nself-jobs-worker",
                                        args=(self.settings, self.queues, suffix, self.log_config))
        process.start()
        name = worker_name(process.pid, suffix)
        self.children[name] = process
        return name

    def _on_signal(self, signum, frame):
        self._signals += 1
        self.stop_event.set()
        for process in self.children.values():
            if process.is_alive():
                process.terminate()

    def start_services(self):
        """Start the history writer, scheduler and maintenance threads; return them."""
        threads = []
        if self.settings.database_url:
            writer = HistoryWriter(connect_redis(self.settings.redis_url), HistoryStore.from_settings(self.settings))
            threads.append(writer.start_thread(self.stop_event))
            threads.append(Scheduler.from_settings(self.settings).start_thread(self.stop_event))
        self.maintenance = Maintenance(connect_redis(self.settings.redis_url), self.settings)
        threads.append(self.maintenance.start_thread(self.stop_event))
        return threads

    def run(self):
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        warning = JobQueue(self.redis, self.settings).eviction_warning()
        if warning:
            log.warning("WARNING: %s", warning)
        threads = self.start_services() if self.background_services else []
        for _ in range(self.concurrency):
            self._spawn()
        log.info("worker command started: %d processes on queues %s", self.concurrency, ", ".join(self.queues))

        while not self.stop_event.is_set():
            self._reap_and_restart()
            self.stop_event.wait(0.5)

        for process in self.children.values():
            process.join()
        self.stop_event.set()
        for thread in threads:
            thread.join(timeout=30)
        log.info("worker command stopped")
        return 0

    def _reap_and_restart(self):
        for name, process in list(self.children.items()):
            if process.is_alive():
                continue
            del self.children[name]
            log.error("worker process %s exited with code %s; recovering its job and starting a replacement",
                      name, process.exitcode)
            try:
                self.redis.delete(keys.worker_key(name))
                if self.background_services:
                    self.maintenance.recover_lost_jobs(only_worker=name)
            except Exception:
                log.exception("could not recover the job of worker %s; the maintenance sweep will", name)
            time.sleep(RESTART_DELAY_S)
            if not self.stop_event.is_set():
                self._spawn()
