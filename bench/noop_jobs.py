"""The plugin job type ``noop``, registered when ``JOBS_HANDLER_MODULES`` lists this module.

Its handler returns an empty result at once, so a measurement counts only the
queue's own work. RQ workers run the same no-op from :mod:`bench.rq_noop`.
"""

from nself_jobs.jobtypes import JobType, register

JOB_TYPE_NAME = "noop"


def _validate(payload, settings):
    return payload


def _run(payload, context):
    return {}


register(JobType(JOB_TYPE_NAME, "Do nothing and return {} (benchmark job).", _validate, _run))
