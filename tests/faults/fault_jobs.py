"""Job types for the fault tests, registered through JOBS_HANDLER_MODULES like a user's own.

``fault-allocate`` moves its worker process into a memory cgroup and allocates
until the kernel's OOM killer ends it. The other types carry non-ASCII text and
markup in their type names and error messages.
"""

import os
from pathlib import Path

from nself_jobs.errors import JobFailed
from nself_jobs.jobtypes import JobType, register

UNICODE_TYPE = "rapport-été-中文"
UNICODE_ERROR = "glāžšķūņŗūķīšī"
MARKUP_TYPE = "<b>markup</b>&amp;"
MARKUP_ERROR = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
MEBIBYTE = 1024 * 1024


def _accept(payload, settings):
    return payload


def _allocate(payload, context):
    """Join the cgroup named by ``payload["cgroup"]``, then write memory until killed."""
    if payload.get("cgroup"):
        # cgroup v1: writing a pid to cgroup.procs moves the whole process, heartbeat thread included.
        Path(payload["cgroup"], "cgroup.procs").write_text(str(os.getpid()), encoding="ascii")
    blocks = []
    chunk = int(payload.get("chunk_mb", 16)) * MEBIBYTE
    limit = int(payload.get("max_mb", 4096)) * MEBIBYTE
    while len(blocks) * chunk < limit:
        # Non-zero bytes, so every page is written and charged to the cgroup.
        blocks.append(b"\x01" * chunk)
    raise JobFailed(f"allocated {limit // MEBIBYTE} MiB without being killed")


def _report(payload, context):
    if payload.get("fail"):
        raise JobFailed(UNICODE_ERROR)
    return {"title": payload.get("title"), "attempt": context.attempt}


def _markup(payload, context):
    raise JobFailed(MARKUP_ERROR)


register(JobType("fault-allocate", "Allocate memory until the kernel kills the process.", _accept, _allocate))
register(JobType(UNICODE_TYPE, "Rapport été 中文 ✓: returns the payload's title.", _accept, _report))
register(JobType(MARKUP_TYPE, "<i>Fails</i> with markup in its error.", _accept, _markup))
