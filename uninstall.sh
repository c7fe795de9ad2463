#!/usr/bin/env bash
# Remove the nself jobs plugin's data before nself deletes the plugin directory.
#
#   uninstall.sh --keep-data   keep every table, view and private server's data
#   uninstall.sh               drop the plugin's tables and views, stop the private
#                              Redis and PostgreSQL and delete their data directory
#
# `nself plugin remove jobs` runs it with --keep-data, and with no argument when the
# user passes --delete-data. A non-zero exit makes nself keep the plugin, so an
# unreachable database only produces a warning. nself sets neither PLUGIN_DIR nor
# NSELF_PROJECT_DIR here, so the settings come from the environment and the env
# files in the current directory. It never prompts.
#
# Job logs (JOBS_LOG_DIR) and database backups (JOBS_BACKUP_DIR) are always kept.
set -euo pipefail
[ -n "${NSELF_JOBS_DEBUG:-}" ] && set -x

plugin_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv_python=$plugin_dir/.venv/bin/python

# Exit codes of bin/nself-jobs, from lib/nself_jobs/cli/runtime.py.
EXIT_CONFIG=3
EXIT_DATABASE=5

warn() {
  echo "jobs uninstall: $*" >&2
}

keep_data=false
case "$#:${1:-}" in
  0:) ;;
  1:--keep-data) keep_data=true ;;
  *)
    warn "invalid arguments: $*. Usage: uninstall.sh [--keep-data]"
    exit 2
    ;;
esac

if [ "$keep_data" = true ]; then
  echo "jobs uninstall: keeping the plugin's tables, views and private server data"
  exit 0
fi

if [ ! -x "$venv_python" ]; then
  warn "$venv_python is missing, so the tables were not dropped. If install.sh created them, drop them with psql:" \
    "DROP TABLE jobs, job_results, job_failures, job_schedules CASCADE (CASCADE also drops the views)."
  exit 0
fi

# Handler modules play no part in dropping tables, and nself's remove command may run
# without the PYTHONPATH they need, so an empty value overrides any env file entry.
status=0
JOBS_HANDLER_MODULES= "$plugin_dir/bin/nself-jobs" drop-schema --yes || status=$?
case "$status" in
  0) ;;
  "$EXIT_DATABASE")
    warn "PostgreSQL is unreachable (see above), so the plugin's tables and views were kept."
    ;;
  "$EXIT_CONFIG")
    warn "a setting is invalid (see above), so nothing was deleted. Fix it and remove the plugin again, or remove it without --delete-data to keep the tables."
    exit "$status"
    ;;
  *)
    warn "dropping the tables failed with exit status $status (see above), so nothing else was deleted"
    exit "$status"
    ;;
esac

# The private servers run only when no Redis or PostgreSQL is configured, but their
# data may remain from an earlier setup, so they are removed in every case.
PYTHONPATH="$plugin_dir/lib${PYTHONPATH:+:$PYTHONPATH}" "$venv_python" - <<'PY'
import shutil
import sys

from nself_jobs.embedded import jobs_data_dir, stop_services
from nself_jobs.errors import JobsError
from nself_jobs.settings import load_settings

settings = load_settings()
data_dir = jobs_data_dir(settings.home_dir)
if not data_dir.exists():
    sys.exit(0)
try:
    for line in stop_services(settings):
        print(f"jobs uninstall: stopped {line}")
except (JobsError, OSError) as error:
    print(f"jobs uninstall: could not stop the private servers, so {data_dir} was kept: {error}", file=sys.stderr)
    sys.exit(0)
try:
    shutil.rmtree(data_dir)
except OSError as error:
    print(f"jobs uninstall: could not delete {data_dir}: {error}. Delete it by hand.", file=sys.stderr)
    sys.exit(0)
print(f"jobs uninstall: deleted the private servers' data in {data_dir}")
PY
