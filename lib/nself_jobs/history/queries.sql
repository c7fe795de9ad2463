-- Named queries of the history store. Each block starts with "-- name: NAME"
-- and a one-line description; parameters are bound as %(name)s.

-- name: insert_created
-- Insert a job's first history row; a replayed event changes nothing.
INSERT INTO jobs (id, source_account_id, type, queue, status, priority, payload, progress,
                  attempts, max_attempts, delay_ms, timeout_ms, created_at, options, run_at,
                  unique_key, schedule_id, scheduled_for, updated_at)
VALUES (%(id)s, %(account)s, %(type)s, %(queue)s, %(status)s, %(priority)s, %(payload)s, 0,
        0, %(max_attempts)s, %(delay_ms)s, %(timeout_ms)s, %(created_at)s, %(options)s, %(run_at)s,
        %(unique_key)s, %(schedule_id)s, %(scheduled_for)s, %(created_at)s)
ON CONFLICT DO NOTHING;

-- name: update_state
-- Apply the folded state changes of one job; a NULL parameter leaves its column as it is.
UPDATE jobs SET
    status = COALESCE(%(status)s, status),
    attempts = GREATEST(attempts, COALESCE(%(attempts)s, attempts)),
    started_at = COALESCE(%(started_at)s, started_at),
    completed_at = CASE WHEN %(reopened)s THEN %(completed_at)s
                        ELSE COALESCE(%(completed_at)s, completed_at) END,
    progress = COALESCE(%(progress)s, progress),
    progress_message = COALESCE(%(progress_message)s, progress_message),
    worker_name = COALESCE(%(worker_name)s, worker_name),
    last_error = COALESCE(%(last_error)s, last_error),
    run_at = COALESCE(%(run_at)s, run_at),
    updated_at = %(updated_at)s
WHERE id = %(id)s;

-- name: insert_result
-- Record a successful attempt's result; the id is derived from job and attempt, so a replay is a no-op.
INSERT INTO job_results (id, source_account_id, job_id, result, duration_ms, completed_at, attempt_number)
VALUES (%(id)s, %(account)s, %(job_id)s, %(result)s, %(duration_ms)s, %(completed_at)s, %(attempt)s)
ON CONFLICT DO NOTHING;

-- name: insert_failure
-- Record one failed attempt; the id is derived from job and attempt, so a replay is a no-op.
INSERT INTO job_failures (id, source_account_id, job_id, attempt_number, error_message, error_stack, failed_at)
VALUES (%(id)s, %(account)s, %(job_id)s, %(attempt)s, %(error)s, %(stack)s, %(failed_at)s)
ON CONFLICT DO NOTHING;

-- name: get_job
-- One job's history row.
SELECT id, source_account_id, type, queue, status, priority, payload, options, progress,
       progress_message, attempts, max_attempts, delay_ms, timeout_ms, created_at, started_at,
       completed_at, run_at, worker_name, last_error, schedule_id, scheduled_for
FROM jobs WHERE id = %(id)s;

-- name: get_results
-- Every recorded result of one job, oldest first.
SELECT attempt_number, result, duration_ms, completed_at
FROM job_results WHERE job_id = %(id)s ORDER BY completed_at;

-- name: get_failures
-- Every failed attempt of one job, oldest first.
SELECT attempt_number, error_message, error_stack, failed_at
FROM job_failures WHERE job_id = %(id)s ORDER BY attempt_number, failed_at;

-- name: missing_relations
-- The plugin's tables and views that do not exist in the current search path.
SELECT name FROM unnest(%(names)s::text[]) AS name
WHERE to_regclass(name) IS NULL;

-- name: drop_all
-- Drop the plugin's views and tables (uninstall with data deletion).
DROP VIEW IF EXISTS scheduled_jobs_overview, recent_failures, job_type_stats, queue_stats,
    jobs_failed_details, jobs_active;
DROP TABLE IF EXISTS job_failures, job_results, job_schedules, jobs;
