#!/usr/bin/env bash
# `nself plugin jobs retry [ARGS...]`: runs `nself-jobs retry` with the arguments unchanged.
# exec replaces this shell, so signals sent to it reach the Python process.
set -euo pipefail
[ -n "${NSELF_JOBS_DEBUG:-}" ] && set -x

# The plugin directory comes from this script's own path, so the script also works when
# run directly, without NSELF_PLUGIN_PATH.
plugin_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec "$plugin_dir/bin/nself-jobs" retry "$@"
