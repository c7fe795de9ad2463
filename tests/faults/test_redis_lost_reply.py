"""A connection to Redis that drops after Redis ran the worker's claim but before the reply arrived."""

import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

from nself_jobs.jobspec import parse_job_request
from nself_jobs.queue import JobQueue
from tests.conftest import drain_history, job_status, submit_job, wait_for
from tests.faults.conftest import assert_doctor_clean

# A job's lease lapses after its timeout plus LEASE_GRACE_S (60 s + 30 s by default);
# a stranded claim would only be recovered then.
RECOVERY_BOUND_S = 15


class ReplyCutter:
    """A TCP proxy on 127.0.0.1 in front of Redis that can drop one reply.

    Once armed with a byte string, it closes the client's connection in place of
    forwarding the first reply from Redis that contains it, so the client sees a
    dropped connection for a command that Redis did carry out.
    """

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.needle = None
        self.cut = threading.Event()
        self.lock = threading.Lock()
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, needle):
        with self.lock:
            self.needle = needle

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source, target, from_redis):
        try:
            while data := source.recv(65536):
                if from_redis and self._should_cut(data):
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _should_cut(self, data):
        with self.lock:
            if self.needle is None or self.needle not in data:
                return False
            self.needle = None
        self.cut.set()
        return True

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def queue(settings, store):
    return JobQueue.from_settings(settings)


@pytest.mark.parametrize("busy", [False, True], ids=["idle-worker-claim", "settle-and-claim-step"])
def test_lost_claim_reply_does_not_strand_job(queue, settings, store, start_plugin, fault_environ, tmp_path, busy):
    parts = urlsplit(settings.redis_url)
    proxy = ReplyCutter(parts.port)
    proxied_url = urlunsplit(parts._replace(netloc=f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"))
    try:
        worker = start_plugin("worker", "-c", "1", extra_env={"JOBS_REDIS_URL": proxied_url})
        wait_for(lambda: queue.redis.zcard("nself:jobs:workers") == 1, timeout_s=30, message="the worker to start")
        if busy:
            # The next claim then travels in the step script that also records this job's end.
            first = submit_job(queue, settings, "test-sleep", {"seconds": 1}, maxRetries=0)
            wait_for(lambda: job_status(queue, first) == "active", message="the first job to start")
        spec = parse_job_request({"type": "test-echo", "payload": {"value": 1}, "options": {"maxRetries": 0}},
                                 settings)
        # RESP2 encoding of the claim script's reply, an array of ten items that starts with the job id.
        proxy.arm(b"*10\r\n$36\r\n" + spec.id.encode())
        queue.enqueue(spec)

        wait_for(proxy.cut.is_set, timeout_s=10, message="the claim reply to be dropped")
        wait_for(lambda: job_status(queue, spec.id) == "completed", timeout_s=RECOVERY_BOUND_S,
                 message="the job whose claim reply was lost to complete")
    finally:
        proxy.close()

    assert "lost the reply to its claim of job " + spec.id in worker.output()
    drain_history(queue.redis, store)
    _, _, failures = store.job_history(spec.id)
    assert failures == []
    if busy:
        assert job_status(queue, first) == "completed"
    assert_doctor_clean(fault_environ, tmp_path, queue.redis, store)
