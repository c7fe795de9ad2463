#!/usr/bin/env bash
# Install the nself jobs plugin: build its Python virtual environment in .venv,
# then run hooks/post-install.sh, which creates the tables when a database is configured.
#
# `nself plugin install` runs this script with no arguments, the project directory as
# the working directory, and PLUGIN_DIR and NSELF_PROJECT_DIR set. It never prompts.
# Running it again reuses .venv and skips pip while requirements.txt and the Python
# version are unchanged.
#
# Environment: JOBS_PYTHON names the Python (3.10 or newer) to build .venv with;
# NSELF_JOBS_DEBUG=1 traces every command.
set -euo pipefail
[ -n "${NSELF_JOBS_DEBUG:-}" ] && set -x

# This script's own directory is the plugin directory. nself's PLUGIN_DIR names the
# same directory when nself runs it, and is not needed.
plugin_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv_dir=$plugin_dir/.venv
venv_python=$venv_dir/bin/python
requirements=$plugin_dir/requirements.txt
# Records what the last successful pip run installed: requirements.txt's hash and the Python version.
stamp_file=$venv_dir/.nself-jobs-requirements

fail() {
  echo "jobs install: $*" >&2
  exit 1
}

# Print "MAJOR.MINOR.PATCH" of the Python interpreter $1, or nothing when it does not run.
python_version() {
  "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true
}

# Succeed when version $1 ("MAJOR.MINOR.PATCH") is 3.10 or newer.
version_supported() {
  local major minor
  major=${1%%.*}
  minor=${1#*.}
  minor=${minor%%.*}
  [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 10 ]; }
}

# Print the command of a Python 3.10 or newer: JOBS_PYTHON when set, else the first
# suitable interpreter on PATH. Exit with an error naming the versions found otherwise.
find_python() {
  local candidate version found=""
  if [ -n "${JOBS_PYTHON:-}" ]; then
    version=$(python_version "$JOBS_PYTHON")
    [ -n "$version" ] || fail "JOBS_PYTHON=$JOBS_PYTHON does not run as a Python interpreter. Set it to the path of Python 3.10 or newer."
    version_supported "$version" ||
      fail "Python 3.10 or newer is required, but JOBS_PYTHON=$JOBS_PYTHON is Python $version. Set JOBS_PYTHON to a newer Python."
    echo "$JOBS_PYTHON"
    return
  fi
  for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    version=$(python_version "$candidate")
    [ -n "$version" ] || continue
    if version_supported "$version"; then
      echo "$candidate"
      return
    fi
    found="$found $candidate=$version"
  done
  if [ -n "$found" ]; then
    fail "Python 3.10 or newer is required, but PATH has only${found}. Install a newer Python, or set JOBS_PYTHON to its path, and run install.sh again."
  fi
  fail "Python 3.10 or newer is required, and no python3 was found on PATH. Install it, or set JOBS_PYTHON to its path, and run install.sh again."
}

# Succeed when .venv has a working Python that is 3.10 or newer.
venv_usable() {
  local version
  [ -x "$venv_python" ] || return 1
  version=$(python_version "$venv_python")
  [ -n "$version" ] && version_supported "$version"
}

requirements_stamp() {
  "$venv_python" - "$requirements" <<'PY'
import hashlib
import platform
import sys

with open(sys.argv[1], "rb") as file:
    digest = hashlib.sha256(file.read()).hexdigest()
print(f"requirements.txt sha256 {digest}, Python {platform.python_version()}")
PY
}

[ -f "$requirements" ] || fail "$requirements is missing; the plugin directory $plugin_dir is incomplete. Copy the whole plugin again."

if venv_usable; then
  echo "jobs install: reusing the virtual environment $venv_dir"
else
  python=$(find_python)
  if [ -e "$venv_dir" ]; then
    # A .venv copied from another machine, or built with an older Python, cannot be repaired.
    echo "jobs install: rebuilding $venv_dir, whose Python does not run or is older than 3.10"
  fi
  echo "jobs install: creating the virtual environment $venv_dir with $python ($(python_version "$python"))"
  "$python" -m venv --clear "$venv_dir" ||
    fail "could not create the virtual environment $venv_dir with $python. On Debian or Ubuntu, install the python3-venv package and run install.sh again."
fi

wanted_stamp=$(requirements_stamp)
installed_stamp=$(cat "$stamp_file" 2>/dev/null || true)
if [ "$wanted_stamp" = "$installed_stamp" ]; then
  echo "jobs install: dependencies are up to date (requirements.txt unchanged)"
else
  echo "jobs install: installing the pinned dependencies from requirements.txt"
  "$venv_python" -m pip install --quiet --disable-pip-version-check --requirement "$requirements" ||
    fail "pip could not install $requirements into $venv_dir (see pip's message above). Check access to the package index and run install.sh again."
  echo "$wanted_stamp" >"$stamp_file"
fi

# A copy made without preserving modes would leave the scripts that nself execs unrunnable.
chmod +x "$plugin_dir/bin/nself-jobs" "$plugin_dir"/actions/*.sh "$plugin_dir"/hooks/*.sh

bash "$plugin_dir/hooks/post-install.sh"
echo "jobs install: done. Start the plugin with \`nself plugin jobs up\`, or run \`nself plugin jobs server\` and \`nself plugin jobs worker\`."
