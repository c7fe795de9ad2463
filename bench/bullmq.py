"""Measurements of BullMQ (Node.js) on the same Redis, run through ``bench/bullmq_bench.js``.

BullMQ and its Redis client ioredis are installed with npm into
``bench/.scratch/`` (git-ignored) at run time; nothing of them is committed.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import services

SCRIPT = Path(__file__).with_name("bullmq_bench.js")
SCRATCH = Path(__file__).with_name(".scratch")
# Versions installed by the bench; change them here to measure another release.
BULLMQ_VERSION = "6.7.6"
IOREDIS_VERSION = "6.1.0"
REDIS_DB = 3
NPM_TIMEOUT_S = 300
RUN_TIMEOUT_S = 400


class BullMQUnavailable(Exception):
    """Node.js or npm is missing, or installing BullMQ failed."""


def _installed_version(package):
    manifest = SCRATCH / "node_modules" / package / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None


def install():
    """Install the pinned BullMQ and ioredis into the scratch directory unless present; return the BullMQ version."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise BullMQUnavailable("node or npm is not on PATH (Debian: apt-get install nodejs npm)")
    if _installed_version("bullmq") == BULLMQ_VERSION and _installed_version("ioredis") == IOREDIS_VERSION:
        return BULLMQ_VERSION
    SCRATCH.mkdir(exist_ok=True)
    command = ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(SCRATCH),
               f"bullmq@{BULLMQ_VERSION}", f"ioredis@{IOREDIS_VERSION}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, cwd=SCRATCH)
    except subprocess.TimeoutExpired:
        raise BullMQUnavailable(f"npm install timed out after {NPM_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise BullMQUnavailable(f"npm install failed with status {result.returncode}: {result.stderr.strip()[-500:]}")
    return _installed_version("bullmq")


def node_version():
    return subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()


class BullMQ:
    """BullMQ on the run's Redis database 3."""

    def __init__(self, servers):
        self.redis = servers.redis(REDIS_DB)
        parts = urlsplit(services.with_database_number(servers.redis_url, REDIS_DB))
        connection = json.dumps({"host": parts.hostname, "port": parts.port or 6379,
                                 "password": unquote(parts.password) if parts.password else None, "db": REDIS_DB})
        self.env = dict(os.environ, NODE_PATH=str(SCRATCH / "node_modules"), BULLMQ_BENCH_REDIS=connection)

    def _run(self, *arguments):
        self.redis.flushdb()
        result = subprocess.run(["node", str(SCRIPT), *map(str, arguments)],
                                capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=self.env)
        if result.returncode != 0:
            raise RuntimeError(f"bullmq_bench.js {arguments[0]} failed: {result.stderr.strip()[-1000:]}")
        output = json.loads(result.stdout.strip().splitlines()[-1])
        return output["jobs"] / output["seconds"]

    def add_rate(self, jobs):
        return self._run("add", jobs)

    def add_bulk_rate(self, jobs):
        return self._run("addBulk", jobs)

    def processing_rate(self, jobs, concurrency):
        return self._run("process", jobs, concurrency)
