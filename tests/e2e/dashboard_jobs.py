"""Job types of the end-to-end tests, loaded by the server and worker through JOBS_HANDLER_MODULES.

``rapport-été-中文`` fails with a non-ASCII message when its payload sets ``fail``,
so the browser test can follow Unicode text from a worker to the dashboard.
"""

from nself_jobs.errors import JobFailed
from nself_jobs.jobtypes import JobType, register

UNICODE_TYPE = "rapport-été-中文"
UNICODE_ERROR = "glāžšķūņŗūķīšī"


def _validate(payload, settings):
    return payload


def _run(payload, context):
    if payload.get("fail"):
        raise JobFailed(UNICODE_ERROR)
    return {"title": payload.get("title")}


register(JobType(UNICODE_TYPE, "Render a report; fails on request.", _validate, _run))
