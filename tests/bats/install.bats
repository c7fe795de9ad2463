#!/usr/bin/env bats
# install.sh and uninstall.sh on a fresh copy of the plugin, the way
# `nself plugin install <dir>` and `nself plugin remove jobs` run them.

bats_require_minimum_version 1.5.0

load test_helper

# Copy the plugin directory to $1 as nself does, leaving out the git data, the
# development virtual environment and caches, as a registry download has none.
copy_plugin() {
  mkdir -p "$1"
  tar -C "$REPO_ROOT" --exclude=./.git --exclude=./.venv --exclude=./.pytest_cache --exclude=./.hypothesis \
    --exclude=__pycache__ --exclude=./tests/artifacts -cf - . | tar -C "$1" -xf -
}

setup_file() {
  setup_services_for_file
  export INSTALLED=$BATS_FILE_TMPDIR/nself/plugins/jobs
  copy_plugin "$INSTALLED"

  # The first install runs once for the file, because building the virtual environment
  # takes most of this file's time. Its output and status are checked by the first test.
  local project=$BATS_FILE_TMPDIR/install-project
  write_project_env "$project"
  local status=0
  (cd "$project" && PLUGIN_DIR=$INSTALLED NSELF_PROJECT_DIR=$project bash "$INSTALLED/install.sh") \
    >"$BATS_FILE_TMPDIR/first-install.out" 2>&1 || status=$?
  echo "$status" >"$BATS_FILE_TMPDIR/first-install.status"
}

teardown_file() {
  teardown_services_for_file
}

setup() {
  clear_plugin_environment
  write_project_env "$BATS_TEST_TMPDIR/project"
  enter_project "$BATS_TEST_TMPDIR/project" "$INSTALLED"
}

teardown() {
  stop_worker
}

# Run install.sh of plugin directory $1 with what nself sets: PLUGIN_DIR and NSELF_PROJECT_DIR.
run_install() {
  PLUGIN_DIR=$1 NSELF_PROJECT_DIR=$PWD run --separate-stderr bash "$1/install.sh"
}

# Run uninstall.sh with ARGS as nself does: neither PLUGIN_DIR nor NSELF_PROJECT_DIR is set.
run_uninstall() {
  unset NSELF_PROJECT_DIR NSELF_PLUGIN_PATH
  run --separate-stderr bash "$INSTALLED/uninstall.sh" "$@"
}

@test "install builds venv and creates tables" {
  local output
  output=$(cat "$BATS_FILE_TMPDIR/first-install.out")
  status=$(cat "$BATS_FILE_TMPDIR/first-install.status")

  assert_status 0
  assert_contains "$output" "creating the virtual environment $INSTALLED/.venv"
  assert_contains "$output" "installing the pinned dependencies"
  assert_contains "$output" "Schema: 5 tables and 6 views in place"
  [ -x "$INSTALLED/.venv/bin/python" ]
  [ -f "$INSTALLED/.venv/.nself-jobs-requirements" ]
  assert_equal "$(count_plugin_relations)" 11
}

@test "second install reuses venv and skips pip" {
  local stamp=$INSTALLED/.venv/.nself-jobs-requirements
  local stamp_before started elapsed_ms
  stamp_before=$(stat -c '%Y %s' "$stamp")
  started=$(date +%s%N)

  run_install "$INSTALLED"

  elapsed_ms=$((($(date +%s%N) - started) / 1000000))
  assert_status 0
  assert_contains "$output" "reusing the virtual environment"
  assert_contains "$output" "dependencies are up to date"
  assert_not_contains "$output" "installing the pinned dependencies"
  assert_equal "$(stat -c '%Y %s' "$stamp")" "$stamp_before"
  assert_equal "$(count_plugin_relations)" 11
  # pip alone takes several seconds even with nothing to install.
  [ "$elapsed_ms" -lt 10000 ] || {
    echo "second install took $elapsed_ms ms" >&2
    return 1
  }
}

@test "install without database defers init" {
  local project=$BATS_TEST_TMPDIR/bare-project
  mkdir -p "$project"
  echo "JOBS_HOME=$BATS_TEST_TMPDIR/bare-home" >"$project/.env"
  cd "$project"

  run_install "$INSTALLED"

  assert_status 0
  assert_contains "$output" "no database configured"
  assert_contains "$output" "nself plugin jobs init"
  # No private Redis or PostgreSQL was started, so nothing was written under JOBS_HOME.
  [ ! -e "$BATS_TEST_TMPDIR/bare-home" ]
}

@test "install reads database from project env" {
  run db_query "DROP SCHEMA IF EXISTS \"$BATS_SCHEMA\" CASCADE"
  assert_status 0
  assert_equal "$(count_plugin_relations)" 0

  # DATABASE_URL is only in NSELF_PROJECT_DIR/.env, as nself loads no env file for install.
  run_install "$INSTALLED"

  assert_status 0
  assert_equal "$(count_plugin_relations)" 11
}

@test "install with unreachable database warns" {
  local port
  port=$(free_port)
  write_project_env "$PWD" "DATABASE_URL=postgresql://postgres@127.0.0.1:$port/postgres"

  run_install "$INSTALLED"

  assert_status 0
  assert_contains "$stderr" "PostgreSQL is unreachable"
  assert_contains "$stderr" "nself plugin jobs init"
}

@test "install with invalid setting warns" {
  echo "JOBS_DEFAULT_CONCURRENCY=abc" >>.env

  run_install "$INSTALLED"

  assert_status 0
  assert_contains "$stderr" "JOBS_DEFAULT_CONCURRENCY"
  assert_contains "$stderr" "nself plugin jobs init"
}

@test "install rejects old JOBS_PYTHON" {
  local plugin_dir=$BATS_TEST_TMPDIR/old-python/jobs
  copy_plugin "$plugin_dir"
  printf '#!/bin/sh\necho 3.9.18\n' >"$BATS_TEST_TMPDIR/python3.9"
  chmod +x "$BATS_TEST_TMPDIR/python3.9"

  JOBS_PYTHON=$BATS_TEST_TMPDIR/python3.9 run_install "$plugin_dir"

  assert_status 1
  assert_contains "$stderr" "jobs install: Python 3.10 or newer is required"
  assert_contains "$stderr" "Python 3.9.18"
  [ ! -e "$plugin_dir/.venv" ]
}

@test "install names old Pythons found on PATH" {
  local plugin_dir=$BATS_TEST_TMPDIR/old-path/jobs fake_bin=$BATS_TEST_TMPDIR/fake-bin name
  copy_plugin "$plugin_dir"
  mkdir -p "$fake_bin"
  for name in python3 python3.13 python3.12 python3.11 python3.10; do
    printf '#!/bin/sh\necho 3.8.10\n' >"$fake_bin/$name"
    chmod +x "$fake_bin/$name"
  done

  PATH=$fake_bin:$PATH run_install "$plugin_dir"

  assert_status 1
  assert_contains "$stderr" "PATH has only python3=3.8.10"
  assert_contains "$stderr" "JOBS_PYTHON"
  [ ! -e "$plugin_dir/.venv" ]
}

@test "installed copy runs a file-cleanup job" {
  run bash "$INSTALLED/actions/init.sh"
  assert_status 0
  start_worker "$INSTALLED" default -c 1

  local scratch=$BATS_TEST_TMPDIR/scratch payload
  mkdir -p "$scratch"
  touch "$scratch/old.tmp" "$scratch/keep.txt"
  payload=$(printf '{"target": "files", "root": "%s", "pattern": "*.tmp", "olderThanMs": 0}' "$scratch")

  run --separate-stderr bash "$INSTALLED/actions/submit.sh" file-cleanup --payload "$payload" --json
  assert_status 0
  local job_id
  job_id=$(json_get "$output" id)

  wait_for_job_status "$INSTALLED" "$job_id" completed 30
  [ ! -e "$scratch/old.tmp" ]
  [ -e "$scratch/keep.txt" ]
}

@test "uninstall --keep-data keeps tables" {
  run bash "$INSTALLED/actions/init.sh"
  assert_status 0
  mkdir -p "$BATS_FILE_TMPDIR/jobs-home/data/jobs/redis"

  run_uninstall --keep-data

  assert_status 0
  assert_equal "$(count_plugin_relations)" 11
  [ -d "$BATS_FILE_TMPDIR/jobs-home/data/jobs/redis" ]
}

@test "uninstall drops tables and private data" {
  run bash "$INSTALLED/actions/init.sh"
  assert_status 0
  assert_equal "$(count_plugin_relations)" 11
  mkdir -p "$BATS_FILE_TMPDIR/jobs-home/data/jobs/redis"

  run_uninstall

  assert_status 0
  assert_contains "$output" "Dropped the jobs plugin's tables and views."
  assert_equal "$(count_plugin_relations)" 0
  [ ! -e "$BATS_FILE_TMPDIR/jobs-home/data/jobs" ]
}

@test "uninstall tolerates unreachable database" {
  local port
  port=$(free_port)
  write_project_env "$PWD" "DATABASE_URL=postgresql://postgres@127.0.0.1:$port/postgres"

  run_uninstall

  assert_status 0
  assert_contains "$stderr" "PostgreSQL is unreachable"
}

@test "uninstall rejects unknown argument" {
  run_uninstall --purge

  assert_status 2
  assert_contains "$stderr" "Usage: uninstall.sh [--keep-data]"
}
