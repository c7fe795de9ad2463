#!/usr/bin/env bats
# The action scripts of the repository's plugin directory, run the way nself runs them.

bats_require_minimum_version 1.5.0

load test_helper

setup_file() {
  setup_services_for_file
}

teardown_file() {
  teardown_services_for_file
}

setup() {
  clear_plugin_environment
  # The test job types of tests/fixtures/sample_jobs.py, importable from the repository root.
  export PYTHONPATH=$REPO_ROOT
  write_project_env "$BATS_TEST_TMPDIR/project" "JOBS_HANDLER_MODULES=tests.fixtures.sample_jobs"
  enter_project "$BATS_TEST_TMPDIR/project" "$REPO_ROOT"
}

teardown() {
  stop_worker
}

@test "init creates tables and masks password" {
  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/init.sh"

  assert_status 0
  assert_contains "$output" "Redis: ok"
  assert_contains "$output" "PostgreSQL: ok"
  assert_contains "$output" "JOBS_DB_SCHEMA=$BATS_SCHEMA"
  assert_contains "$output" "DATABASE_URL=postgresql://"
  assert_contains "$output" ":***@"
  assert_not_contains "$output" "$BATS_DB_PASSWORD"
  assert_equal "$(count_plugin_relations)" 11
}

@test "init runs again without changes" {
  run bash "$NSELF_PLUGIN_PATH/actions/init.sh"
  assert_status 0

  run bash "$NSELF_PLUGIN_PATH/actions/init.sh"
  assert_status 0
  assert_equal "$(count_plugin_relations)" 11
}

@test "init --json prints parseable result" {
  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/init.sh" --json

  assert_status 0
  assert_equal "$(json_get "$output" postgres)" ok
  assert_equal "$(json_get "$output" redis)" ok
  assert_contains "$(json_get "$output" configuration.DATABASE_URL)" ":***@"
  assert_not_contains "$output" "$BATS_DB_PASSWORD"
}

@test "invalid env file value exits 3" {
  echo "JOBS_DEFAULT_CONCURRENCY=abc" >>.env

  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/init.sh"

  assert_status 3
  assert_contains "$stderr" "JOBS_DEFAULT_CONCURRENCY"
  assert_contains "$stderr" "'abc'"
}

@test "exported variable overrides env file" {
  echo "JOBS_DEFAULT_CONCURRENCY=abc" >>.env
  export JOBS_DEFAULT_CONCURRENCY=4

  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/init.sh"

  assert_status 0
  assert_contains "$output" "JOBS_DEFAULT_CONCURRENCY=4"
}

@test "unreachable Redis exits 4" {
  local port
  port=$(free_port)
  export JOBS_REDIS_URL=redis://127.0.0.1:$port/$BATS_REDIS_DB

  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/stats.sh"

  assert_status 4
  assert_contains "$stderr" "Redis connection to 127.0.0.1:$port failed"
}

@test "stats --json prints every queue" {
  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/stats.sh" --json

  assert_status 0
  assert_equal "$(json_get "$output" queues.default.failed)" 0
  assert_equal "$(json_get "$output" queues.high-priority.waiting)" 0
  assert_equal "$(json_get "$output" queues.low-priority.active)" 0
  assert_equal "$(json_get "$output" total.completed)" 0
}

@test "submit of unknown type exits 8" {
  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/submit.sh" no-such-type --payload '{}'

  assert_status 8
  assert_contains "$stderr" "unknown job type 'no-such-type'"
}

@test "worker with unknown queue exits 2" {
  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/worker.sh" bogus-queue

  assert_status 2
  assert_contains "$stderr" "bogus-queue"
}

@test "get of unknown job exits 9" {
  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/get.sh" 00000000-0000-4000-8000-000000000000

  assert_status 9
  assert_contains "$stderr" "not found"
}

@test "arguments reach the command verbatim" {
  local value="two  words, a 'quote' and a \"double quote\""
  local payload
  payload=$("$REPO_PYTHON" -c 'import json, sys; print(json.dumps({"value": sys.argv[1]}))' "$value")

  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/submit.sh" test-echo --payload "$payload" --queue low-priority --json
  assert_status 0
  local job_id
  job_id=$(json_get "$output" id)

  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/get.sh" "$job_id" --json
  assert_status 0
  assert_equal "$(json_get "$output" payload.value)" "$value"
  assert_equal "$(json_get "$output" queue)" low-priority
}

@test "worker action runs a job as exec'd Python" {
  run bash "$NSELF_PLUGIN_PATH/actions/init.sh"
  assert_status 0
  start_worker "$NSELF_PLUGIN_PATH" default -c 1

  # The action and bin/nself-jobs both exec, so the background PID is the Python
  # process itself and a SIGTERM sent to it reaches Python directly.
  local command_line="" tries=0
  while [ "$tries" -lt 50 ]; do
    command_line=$(tr '\0' ' ' <"/proc/$WORKER_PID/cmdline")
    case "$command_line" in *nself_jobs.cli.main*) break ;; esac
    sleep 0.1
    tries=$((tries + 1))
  done
  assert_contains "$command_line" "-m nself_jobs.cli.main worker default -c 1"

  run --separate-stderr bash "$NSELF_PLUGIN_PATH/actions/submit.sh" test-echo --payload '{"value": "ran"}' --json
  assert_status 0
  local job_id
  job_id=$(json_get "$output" id)

  wait_for_job_status "$NSELF_PLUGIN_PATH" "$job_id" completed 30
  assert_equal "$(json_get "$output" result.echo)" ran
}
