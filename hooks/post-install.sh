#!/usr/bin/env bash
# Create the plugin's tables and views after install, when a database is configured
# and reachable. install.sh runs this hook; nself itself never runs files in hooks/.
#
# A database counts as configured when DATABASE_URL or POSTGRES_HOST, POSTGRES_DB,
# POSTGRES_USER or POSTGRES_PASSWORD is exported, or is set in the project's env
# files in NSELF_PROJECT_DIR (else the current directory). nself loads no env file
# for install, so the plugin's settings loader reads them.
#
# The hook never prompts and never starts the plugin's private servers. By case:
#   no database configured    prints that init creates the tables on first use
#   database and Redis set    runs `nself-jobs init`, which also checks Redis
#   database only             applies schema.sql and views.sql directly, because
#                             init would start a private Redis
#   database unreachable      warns on stderr, so init creates the tables later
#   invalid setting           warns on stderr with the variable's name
# These cases exit 0. Any other failure exits non-zero, which makes
# `nself plugin install` fail.
set -euo pipefail
[ -n "${NSELF_JOBS_DEBUG:-}" ] && set -x

plugin_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv_python=$plugin_dir/.venv/bin/python
export NSELF_PROJECT_DIR=${NSELF_PROJECT_DIR:-$PWD}
export PYTHONPATH="$plugin_dir/lib${PYTHONPATH:+:$PYTHONPATH}"

# Exit codes of bin/nself-jobs, from lib/nself_jobs/cli/runtime.py.
EXIT_CONFIG=3
EXIT_REDIS=4
EXIT_DATABASE=5

warn() {
  echo "jobs post-install: $*" >&2
}

warn_invalid_setting() {
  warn "the tables were not created because a setting is invalid (see above). Fix it, then run \`nself plugin jobs init\`."
}

warn_database_unreachable() {
  warn "the tables were not created because PostgreSQL is unreachable (see above). Run \`nself plugin jobs init\` once it is up."
}

[ -x "$venv_python" ] || {
  echo "jobs post-install: $venv_python is missing; run $plugin_dir/install.sh first" >&2
  exit 1
}

# Print which services the settings name: "database redis", "database", "redis" or
# "none". Exits with EXIT_CONFIG and the error on stderr when a setting is invalid.
configured_services() {
  "$venv_python" - <<'PY'
import sys

from nself_jobs.cli.runtime import EXIT_CONFIG
from nself_jobs.errors import JobsError
from nself_jobs.settings import load_settings

try:
    settings = load_settings()
except JobsError as error:
    print(error, file=sys.stderr)
    sys.exit(EXIT_CONFIG)
names = [name for name, url in (("database", settings.database_url), ("redis", settings.redis_url)) if url]
print(" ".join(names) or "none")
PY
}

# Apply schema.sql and views.sql through the history store, without Redis. Exits with
# EXIT_DATABASE and the reason on stderr when PostgreSQL cannot be reached.
apply_schema() {
  "$venv_python" - <<'PY'
import sys

from nself_jobs.cli.runtime import EXIT_CONFIG, EXIT_DATABASE, EXIT_SCHEMA
from nself_jobs.errors import JobsError, ServiceUnavailable
from nself_jobs.history import HistoryStore
from nself_jobs.settings import load_settings

try:
    store = HistoryStore.from_settings(load_settings())
    store.apply_schema()
    missing = store.missing_relations()
except ServiceUnavailable as error:
    print(f"PostgreSQL connection to {error.target} failed: {error.reason}", file=sys.stderr)
    sys.exit(EXIT_DATABASE)
except JobsError as error:
    print(error, file=sys.stderr)
    sys.exit(EXIT_CONFIG)
if missing:
    print(f"schema.sql and views.sql ran, but these relations are still missing: {', '.join(missing)}", file=sys.stderr)
    sys.exit(EXIT_SCHEMA)
print("Schema: 4 tables and 6 views in place")
PY
}

status=0
services=$(configured_services) || status=$?
if [ "$status" -eq "$EXIT_CONFIG" ]; then
  warn_invalid_setting
  exit 0
elif [ "$status" -ne 0 ]; then
  warn "reading the settings failed with exit status $status (see above)"
  exit "$status"
fi

case " $services " in
  *" database "*) ;;
  *)
    echo "jobs post-install: no database configured (DATABASE_URL or POSTGRES_* in the environment or in $NSELF_PROJECT_DIR/.env)," \
      "so the tables were not created now. \`nself plugin jobs init\` or \`up\` creates them on first use."
    exit 0
    ;;
esac

if [ "$services" = "database redis" ]; then
  status=0
  "$plugin_dir/bin/nself-jobs" init || status=$?
  case "$status" in
    0) exit 0 ;;
    "$EXIT_CONFIG")
      warn_invalid_setting
      exit 0
      ;;
    "$EXIT_DATABASE")
      warn_database_unreachable
      exit 0
      ;;
    "$EXIT_REDIS")
      warn "Redis is unreachable (see above); start it before the server and workers. Creating the tables without it."
      ;;
    *)
      warn "\`nself-jobs init\` failed with exit status $status (see above)"
      exit "$status"
      ;;
  esac
fi

if [ "$services" = "database" ]; then
  echo "jobs post-install: no Redis configured (JOBS_REDIS_URL or REDIS_HOST), so the commands that need Redis start a private one."
fi
status=0
apply_schema || status=$?
case "$status" in
  0) ;;
  "$EXIT_DATABASE")
    warn_database_unreachable
    ;;
  "$EXIT_CONFIG")
    warn_invalid_setting
    ;;
  *)
    warn "creating the tables failed with exit status $status (see above)"
    exit "$status"
    ;;
esac
