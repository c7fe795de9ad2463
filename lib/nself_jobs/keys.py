"""The Redis key layout, priorities and timing constants, written down once.

Jobs live in RQ's own layout so that RQ's tools (``rq info``, rq-dashboard,
``rq.job.Job.fetch``) read them:

    rq:job:<id>                 hash   RQ job fields, plus ``nj_*`` fields of this plugin
    rq:queue:<queue>:<level>    list   waiting job ids, one RQ queue per priority level
    rq:queues                   set    every RQ queue key
    rq:wip:<rq queue>           zset   running jobs; score = lease expiry (epoch s)
    rq:scheduled:<rq queue>     zset   delayed jobs; score = due time (epoch s)
    rq:finished:<rq queue>      zset   completed jobs; score = removal time (epoch s)
    rq:failed:<rq queue>        zset   failed jobs; score = removal time (epoch s)
    rq:canceled:<rq queue>      zset   cancelled jobs; score = removal time (epoch s)

Keys of this plugin:

    nself:jobs:history          list   history events waiting for PostgreSQL, oldest first
    nself:jobs:wakeup           list   one token per enqueued job; idle workers block on it
    nself:jobs:worker:<name>    string heartbeat of one worker process, with a TTL
    nself:jobs:workers          zset   worker names; score = last heartbeat (epoch s)
    nself:jobs:unique:<key>     string the job id that holds a unique key
    nself:jobs:lease:<role>     string lease token of the process doing <role>
    nself:jobs:paused           set    paused queue names
    nself:jobs:lease:scheduler:fence          counter  fencing token, taken with the scheduler lease
    nself:jobs:occurrence:<schedule>:<epoch>  string   claim of one schedule occurrence, kept 3 days
    nself:jobs:schedule:<schedule>:last-job   string   the last job a schedule fired (overlap policy)

A job's Redis hash expires after the cleanup age of its final state; the
PostgreSQL history keeps it after that.
"""

PRIORITIES = {"critical": 1, "high": 2, "normal": 3, "low": 4}
PRIORITY_NAMES = {number: name for name, number in PRIORITIES.items()}
DEFAULT_PRIORITY = "normal"

RQ_PREFIX = "rq:"
HISTORY_KEY = "nself:jobs:history"
WAKEUP_KEY = "nself:jobs:wakeup"
WORKERS_KEY = "nself:jobs:workers"
PAUSED_KEY = "nself:jobs:paused"

# A worker refreshes its heartbeat this often; a worker whose heartbeat is older
# than WORKER_TTL_S is dead, and its running jobs are recovered.
HEARTBEAT_INTERVAL_S = 5
WORKER_TTL_S = 15
# Extra time, beyond a job's own timeout, before a running job's lease lapses.
LEASE_GRACE_S = 30
# Tokens kept in the wakeup list: enough to wake every idle worker, small enough to stay cheap.
WAKEUP_MAX_TOKENS = 1000
# An idle worker re-checks delayed jobs at least this often, so a due job starts within a second.
IDLE_POLL_S = 0.5


def rq_queue_name(queue, priority):
    """Return the RQ queue name for a plugin queue and priority name."""
    return f"{queue}:{priority}"


def rq_queue_names(queue):
    """Return a queue's RQ queue names, highest priority first."""
    return [rq_queue_name(queue, name) for name in PRIORITIES]


def queue_key(rq_queue):
    return f"{RQ_PREFIX}queue:{rq_queue}"


def job_key(job_id):
    return f"{RQ_PREFIX}job:{job_id}"


def registry_key(kind, rq_queue):
    """Return the key of an RQ registry: kind is wip, scheduled, finished, failed or canceled."""
    return f"{RQ_PREFIX}{kind}:{rq_queue}"


def worker_key(name):
    return f"nself:jobs:worker:{name}"


def unique_key(key):
    return f"nself:jobs:unique:{key}"


def lease_key(role):
    return f"nself:jobs:lease:{role}"
