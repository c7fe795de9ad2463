"""Load on ``POST /api/jobs`` from a fixed number of keep-alive connections, for a fixed time, on loopback.

``wrk`` (Debian package ``wrk``) is used when installed, because its C event loop
leaves the CPU to the server. Without it a Python client with one thread per
connection does the same, but it takes CPU from the server on a small machine.
"""

import http.client
import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .figures import percentile

WRK_SCRIPT = Path(__file__).with_name("wrk_post_job.lua")
REQUEST_BODY = json.dumps({"type": "noop", "payload": {}}).encode()
REQUEST_TIMEOUT_S = 2
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class LoadResult:
    """One load run: successful requests per second and latency percentiles in milliseconds."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    client: str


def client_name():
    return "wrk" if shutil.which("wrk") else "Python http.client"


def run_load(port, duration_s, connections):
    """Send job requests to 127.0.0.1:``port`` for ``duration_s`` seconds from ``connections`` connections."""
    if shutil.which("wrk"):
        return _run_wrk(port, duration_s, connections)
    return _run_python(port, duration_s, connections)


def _latency_ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk_output(output):
    """Return ``(requests, seconds, p50 ms, p99 ms, errors)`` from ``wrk --latency`` output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m),", output)
    p50 = re.search(r"^\s+50%\s+(\S+)$", output, flags=re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)$", output, flags=re.MULTILINE)
    if not (total and p50 and p99):
        raise ValueError(f"unexpected wrk output:\n{output}")
    seconds = _latency_ms(total.group(2) + total.group(3)) / 1000
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(count) for count in socket_errors.groups())
    return int(total.group(1)), seconds, _latency_ms(p50.group(1)), _latency_ms(p99.group(1)), errors


def _run_wrk(port, duration_s, connections):
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", f"--timeout={REQUEST_TIMEOUT_S}s",
               "--latency", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/api/jobs"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 30, check=True)
    requests, seconds, p50_ms, p99_ms, errors = parse_wrk_output(result.stdout)
    return LoadResult((requests - errors) / seconds, p50_ms, p99_ms, errors, "wrk")


def _run_python(port, duration_s, connections):
    deadline = time.perf_counter() + duration_s
    latencies = [[] for _ in range(connections)]
    errors = [0] * connections

    def client(index):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        headers = {"Content-Type": "application/json"}
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    connection.request("POST", "/api/jobs", body=REQUEST_BODY, headers=headers)
                    response = connection.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    errors[index] += 1
                    connection.close()
                    continue
                if response.status != 201:
                    errors[index] += 1
                    continue
                latencies[index].append((time.perf_counter() - began) * 1000)
        finally:
            connection.close()

    began = time.perf_counter()
    workers = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=duration_s + REQUEST_TIMEOUT_S + 5)
    elapsed = time.perf_counter() - began
    samples = [value for per_client in latencies for value in per_client]
    if not samples:
        raise RuntimeError(f"no request to 127.0.0.1:{port} succeeded; {sum(errors)} failed")
    return LoadResult(len(samples) / elapsed, percentile(samples, 0.50), percentile(samples, 0.99), sum(errors),
                      "Python http.client")
