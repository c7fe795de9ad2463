# Shared set-up for the bats tests, which run the plugin the way nself does:
# `bash <plugin>/actions/<action>.sh ARGS`, with the project directory as the working
# directory and NSELF_PLUGIN_PATH and NSELF_PROJECT_DIR exported. The plugin's
# settings come from the project's .env, which nself does not load itself.
#
# The tests need a real Redis and PostgreSQL, named by JOBS_TEST_REDIS_URL and
# JOBS_TEST_DATABASE_URL. Each test file uses its own PostgreSQL schema
# (JOBS_DB_SCHEMA), dropped when the file ends, and Redis database 7, flushed when
# the file starts.
# NOTE: every file flushes the same Redis database, so run the files one at a time
# (no `bats --jobs`).

REPO_ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
REPO_PYTHON=$REPO_ROOT/.venv/bin/python
BATS_REDIS_DB=7
# Maximum seconds that a worker may take to stop after SIGTERM before teardown kills it.
WORKER_STOP_TIMEOUT_S=15

# Unset every variable that the plugin reads, so the developer's or CI's own settings
# cannot override the project .env written by the tests. JOBS_TEST_* are kept.
clear_plugin_environment() {
  local name
  for name in $(compgen -e); do
    case "$name" in
      JOBS_TEST_*) ;;
      JOBS_* | DATABASE_URL | POSTGRES_* | REDIS_* | HASURA_* | PORT | ENV | LOG_LEVEL | NSELF_* | PLUGIN_DIR)
        unset "$name"
        ;;
    esac
  done
}

# Print the URL $1 with a password added when it has none, then the password on a
# second line. The masking test needs a password to look for, and a server that
# accepts connections without a password ignores it.
database_url_with_password() {
  "$REPO_PYTHON" - "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit

parts = urlsplit(sys.argv[1])
password = parts.password
if password is None:
    password = "bats-secret-password"
    host = parts.netloc.rsplit("@", 1)[-1]
    parts = parts._replace(netloc=f"{parts.username or ''}:{password}@{host}")
print(urlunsplit(parts))
print(password)
PY
}

# Set the service variables for this test file: BATS_REDIS_URL, BATS_DATABASE_URL,
# BATS_DB_PASSWORD and BATS_SCHEMA. Call from setup_file.
setup_services_for_file() {
  clear_plugin_environment
  if [ -z "${JOBS_TEST_REDIS_URL:-}" ] || [ -z "${JOBS_TEST_DATABASE_URL:-}" ]; then
    echo "JOBS_TEST_REDIS_URL and JOBS_TEST_DATABASE_URL must name a running Redis and PostgreSQL," \
      "for example redis://127.0.0.1:6379 and postgresql://postgres@127.0.0.1:5432/postgres" >&2
    return 1
  fi
  [ -x "$REPO_PYTHON" ] || {
    echo "$REPO_PYTHON is missing; create the development virtual environment first" >&2
    return 1
  }

  local redis_base=$JOBS_TEST_REDIS_URL url_and_password
  # Drop a database number from the URL, so the tests can choose their own.
  case "$redis_base" in
    *://*/*) redis_base=${redis_base%/*} ;;
  esac
  export BATS_REDIS_URL=$redis_base/$BATS_REDIS_DB

  url_and_password=$(database_url_with_password "$JOBS_TEST_DATABASE_URL")
  export BATS_DATABASE_URL=${url_and_password%%$'\n'*}
  export BATS_DB_PASSWORD=${url_and_password#*$'\n'}
  export BATS_SCHEMA="bats_$(basename "$BATS_TEST_FILENAME" .bats)_$$"

  redis_flush
}

teardown_services_for_file() {
  # Nothing to clean when setup_services_for_file failed before it chose the schema.
  [ -n "${BATS_SCHEMA:-}" ] || return 0
  db_query "DROP SCHEMA IF EXISTS \"$BATS_SCHEMA\" CASCADE" >/dev/null
  redis_flush
}

redis_flush() {
  "$REPO_PYTHON" -c 'import redis, sys; redis.Redis.from_url(sys.argv[1]).flushdb()' "$BATS_REDIS_URL"
}

# Run one SQL statement on the test database and print the first column of each row.
db_query() {
  "$REPO_PYTHON" - "$BATS_DATABASE_URL" "$1" <<'PY'
import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True, connect_timeout=5) as connection:
    cursor = connection.execute(sys.argv[2])
    if cursor.description is not None:
        for row in cursor.fetchall():
            print(row[0])
PY
}

# Print how many of the plugin's 5 tables and 6 views exist in this file's schema.
count_plugin_relations() {
  db_query "SELECT count(*) FROM information_schema.tables WHERE table_schema = '$BATS_SCHEMA'
            AND table_name IN ('jobs', 'job_results', 'job_failures', 'job_schedules', 'job_schedule_misses', 'jobs_active',
                               'jobs_failed_details', 'queue_stats', 'job_type_stats', 'recent_failures',
                               'scheduled_jobs_overview')"
}

# Write DIR/.env pointing the plugin at the test services, plus any extra KEY=value
# lines given after DIR.
write_project_env() {
  local directory=$1 line
  shift
  mkdir -p "$directory"
  {
    echo "JOBS_REDIS_URL=$BATS_REDIS_URL"
    echo "DATABASE_URL=$BATS_DATABASE_URL"
    echo "JOBS_DB_SCHEMA=$BATS_SCHEMA"
    echo "JOBS_HOME=$BATS_FILE_TMPDIR/jobs-home"
    echo "JOBS_RETRY_DELAY=0"
    echo "JOBS_SHUTDOWN_GRACE=2000"
    for line in "$@"; do
      echo "$line"
    done
  } >"$directory/.env"
}

# Make DIR the current nself project for plugin PLUGIN_DIR, as `nself plugin jobs` does.
enter_project() {
  cd "$1"
  export NSELF_PROJECT_DIR=$1
  export NSELF_PLUGIN_PATH=$2
}

# Print a TCP port on 127.0.0.1 that was free a moment ago and has no listener.
free_port() {
  "$REPO_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Print the value at dotted PATH (such as result.echo or queues.default) of JSON text.
json_get() {
  "$REPO_PYTHON" - "$1" "$2" <<'PY'
import json
import sys

value = json.loads(sys.argv[1])
for key in sys.argv[2].split("."):
    value = value[int(key)] if isinstance(value, list) else value[key]
print(value if isinstance(value, str) else json.dumps(value))
PY
}

assert_status() {
  if [ "$status" -ne "$1" ]; then
    echo "expected exit status $1, got $status" >&2
    echo "stdout: $output" >&2
    echo "stderr: ${stderr:-}" >&2
    return 1
  fi
}

assert_contains() {
  case "$1" in
    *"$2"*) ;;
    *)
      echo "expected to find: $2" >&2
      echo "in: $1" >&2
      return 1
      ;;
  esac
}

assert_not_contains() {
  case "$1" in
    *"$2"*)
      echo "expected not to find: $2" >&2
      echo "in: $1" >&2
      return 1
      ;;
  esac
}

assert_equal() {
  if [ "$1" != "$2" ]; then
    echo "expected: $2" >&2
    echo "actual:   $1" >&2
    return 1
  fi
}

# Start `actions/worker.sh ARGS` of PLUGIN_DIR in the background and set WORKER_PID.
# The action execs bin/nself-jobs, which execs Python, so WORKER_PID is the Python
# process. stop_worker, called from teardown, stops it.
start_worker() {
  local plugin_dir=$1
  shift
  WORKER_LOG=$BATS_TEST_TMPDIR/worker.log
  bash "$plugin_dir/actions/worker.sh" "$@" >"$WORKER_LOG" 2>&1 3>&- &
  WORKER_PID=$!
}

# Succeed while process $1 exists and is not a zombie.
process_running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Send SIGTERM to the worker started by start_worker and wait for it to exit. Fails,
# after a SIGKILL, when it is still running WORKER_STOP_TIMEOUT_S seconds later.
stop_worker() {
  [ -n "${WORKER_PID:-}" ] || return 0
  local pid=$WORKER_PID waited=0
  WORKER_PID=
  kill -TERM "$pid" 2>/dev/null || true
  while process_running "$pid" && [ "$waited" -lt $((WORKER_STOP_TIMEOUT_S * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if process_running "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "worker $pid was still running ${WORKER_STOP_TIMEOUT_S} s after SIGTERM and was killed; its log:" >&2
    cat "$WORKER_LOG" >&2
    return 1
  fi
  wait "$pid" 2>/dev/null || true
}

# Poll `get ID --json` through PLUGIN_DIR's action until the job has STATUS, for at most
# TIMEOUT_S seconds, and leave the last JSON in $output. When the job does not reach
# STATUS in time, it fails and prints the job and the worker log.
wait_for_job_status() {
  local plugin_dir=$1 job_id=$2 expected=$3 timeout_s=$4 deadline current=""
  deadline=$((SECONDS + timeout_s))
  while [ "$SECONDS" -le "$deadline" ]; do
    output=$(bash "$plugin_dir/actions/get.sh" "$job_id" --json) || {
      echo "get $job_id failed: $output" >&2
      return 1
    }
    current=$(json_get "$output" status)
    [ "$current" = "$expected" ] && return 0
    sleep 0.3
  done
  echo "job $job_id is $current, not $expected, after $timeout_s s: $output" >&2
  [ -z "${WORKER_LOG:-}" ] || cat "$WORKER_LOG" >&2
  return 1
}
