-- Named queries of the history store. Each block starts with "-- name: NAME"
-- and a one-line description; parameters are bound as %(name)s.

-- name: create_staging
-- Session-private staging tables that the writer fills with COPY, one batch per transaction.
CREATE TEMP TABLE IF NOT EXISTS staging_created (
    id UUID, account TEXT, type TEXT, queue TEXT, status TEXT, priority INTEGER, payload TEXT,
    max_attempts INTEGER, delay_ms BIGINT, timeout_ms BIGINT, created_at TIMESTAMPTZ, options TEXT,
    run_at TIMESTAMPTZ, unique_key TEXT, schedule_id UUID, scheduled_for TIMESTAMPTZ
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS staging_updates (
    id UUID, status TEXT, attempts INTEGER, started_at TIMESTAMPTZ, completed_at TIMESTAMPTZ, reopened BOOLEAN,
    progress INTEGER, progress_message TEXT, worker_name TEXT, last_error TEXT, run_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS staging_results (
    id UUID, job_id UUID, account TEXT, result TEXT, duration_ms INTEGER, completed_at TIMESTAMPTZ,
    attempt INTEGER
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS staging_failures (
    id UUID, job_id UUID, account TEXT, attempt INTEGER, error TEXT, stack TEXT, failed_at TIMESTAMPTZ
) ON COMMIT DELETE ROWS;

-- name: insert_created
-- Insert the first history row of each staged job; a replayed event changes nothing.
INSERT INTO jobs (id, source_account_id, type, queue, status, priority, payload, progress,
                  attempts, max_attempts, delay_ms, timeout_ms, created_at, options, run_at,
                  unique_key, schedule_id, scheduled_for, updated_at)
SELECT id, account, type, queue, status, priority, payload::jsonb, 0,
       0, max_attempts, delay_ms, timeout_ms, created_at, options::jsonb, run_at,
       unique_key, schedule_id, scheduled_for, created_at
FROM staging_created
ON CONFLICT DO NOTHING;

-- name: update_state
-- Apply the folded state changes of each staged job; a NULL column leaves the job's value as it is.
UPDATE jobs AS j SET
    status = COALESCE(u.status, j.status),
    attempts = GREATEST(j.attempts, COALESCE(u.attempts, j.attempts)),
    started_at = COALESCE(u.started_at, j.started_at),
    completed_at = CASE WHEN u.reopened THEN u.completed_at ELSE COALESCE(u.completed_at, j.completed_at) END,
    progress = COALESCE(u.progress, j.progress),
    progress_message = COALESCE(u.progress_message, j.progress_message),
    worker_name = COALESCE(u.worker_name, j.worker_name),
    last_error = COALESCE(u.last_error, j.last_error),
    run_at = COALESCE(u.run_at, j.run_at),
    updated_at = u.updated_at
FROM staging_updates AS u
WHERE j.id = u.id;

-- name: insert_result
-- Record staged successful attempts; ids are derived from job and attempt, so a replay is a no-op.
INSERT INTO job_results (id, source_account_id, job_id, result, duration_ms, completed_at, attempt_number)
SELECT id, account, job_id, result::jsonb, duration_ms, completed_at, attempt
FROM staging_results
ON CONFLICT DO NOTHING;

-- name: insert_failure
-- Record staged failed attempts; ids are derived from job and attempt, so a replay is a no-op.
INSERT INTO job_failures (id, source_account_id, job_id, attempt_number, error_message, error_stack, failed_at)
SELECT id, account, job_id, attempt, error, stack, failed_at
FROM staging_failures
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
DROP TABLE IF EXISTS job_schedule_misses, job_failures, job_results, job_schedules, jobs;

-- name: list_jobs
-- One page of jobs, newest first; the (created_at, id) cursor keeps pages stable while jobs are added.
SELECT id, source_account_id, type, queue, status, priority, progress, attempts, max_attempts,
       created_at, started_at, completed_at, last_error
FROM jobs
WHERE source_account_id = %(account)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(before_created)s::timestamptz IS NULL
       OR (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: count_jobs
-- The number of jobs matching the list filters.
SELECT count(*) AS total
FROM jobs
WHERE source_account_id = %(account)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text);

-- name: window_totals
-- Jobs created in the last %(hours)s hours, by queue and status.
SELECT queue, status, count(*) AS jobs
FROM jobs
WHERE created_at > now() - make_interval(hours => %(hours)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
GROUP BY queue, status
ORDER BY queue, status;

-- name: performance_by_type
-- Per job type over the last %(hours)s hours: jobs per hour, durations and failure rate.
SELECT j.type,
       count(*) AS jobs,
       round(count(*)::numeric / %(hours)s, 2)::float8 AS jobs_per_hour,
       round(avg(r.duration_ms)::numeric, 1)::float8 AS mean_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ms) AS p95_ms,
       round(count(*) FILTER (WHERE j.status = 'failed')::numeric
             / NULLIF(count(*) FILTER (WHERE j.status IN ('completed', 'failed')), 0), 4)::float8 AS failure_rate
FROM jobs j
LEFT JOIN job_results r ON r.job_id = j.id
WHERE j.created_at > now() - make_interval(hours => %(hours)s)
  AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
GROUP BY j.type
ORDER BY jobs DESC;

-- name: schedule_insert
-- Insert a schedule; a second schedule with the same name raises a unique violation.
INSERT INTO job_schedules (id, source_account_id, name, type, queue, cron_expression, timezone, payload,
                           options, description, enabled, misfire_policy, misfire_grace_ms, overlap_policy,
                           next_run_at, created_at, updated_at)
VALUES (%(id)s, %(account)s, %(name)s, %(type)s, %(queue)s, %(cron)s, %(timezone)s, %(payload)s,
        %(options)s, %(description)s, %(enabled)s, %(misfire_policy)s, %(misfire_grace_ms)s, %(overlap_policy)s,
        %(next_run_at)s, %(now)s, %(now)s)
RETURNING id, source_account_id, name, type, queue, cron_expression, timezone, payload, options, description,
          enabled, misfire_policy, misfire_grace_ms, overlap_policy, last_run_at, next_run_at, created_at,
          updated_at;

-- name: schedule_update
-- Replace the definition of the schedule called %(name)s; returns nothing when the name is unknown.
UPDATE job_schedules SET
    type = %(type)s, queue = %(queue)s, cron_expression = %(cron)s, timezone = %(timezone)s,
    payload = %(payload)s, options = %(options)s, description = %(description)s, enabled = %(enabled)s,
    misfire_policy = %(misfire_policy)s, misfire_grace_ms = %(misfire_grace_ms)s,
    overlap_policy = %(overlap_policy)s, next_run_at = %(next_run_at)s, updated_at = %(now)s
WHERE name = %(name)s
RETURNING id, source_account_id, name, type, queue, cron_expression, timezone, payload, options, description,
          enabled, misfire_policy, misfire_grace_ms, overlap_policy, last_run_at, next_run_at, created_at,
          updated_at;

-- name: schedule_get
-- One schedule by name.
SELECT id, source_account_id, name, type, queue, cron_expression, timezone, payload, options, description,
       enabled, misfire_policy, misfire_grace_ms, overlap_policy, last_run_at, next_run_at, created_at,
       updated_at
FROM job_schedules WHERE name = %(name)s;

-- name: schedule_list
-- Every schedule, ordered by name.
SELECT id, source_account_id, name, type, queue, cron_expression, timezone, payload, options, description,
       enabled, misfire_policy, misfire_grace_ms, overlap_policy, last_run_at, next_run_at, created_at,
       updated_at
FROM job_schedules ORDER BY name;

-- name: schedule_delete
-- Delete a schedule and its miss records; returns the deleted schedule's id, or nothing.
WITH deleted AS (
    DELETE FROM job_schedules WHERE name = %(name)s RETURNING id
), deleted_misses AS (
    DELETE FROM job_schedule_misses WHERE schedule_id IN (SELECT id FROM deleted)
)
SELECT id FROM deleted;

-- name: schedule_mark_run
-- Set last_run_at of a schedule after a run outside its cron times (run-now).
UPDATE job_schedules SET last_run_at = %(at)s WHERE id = %(id)s;

-- name: schedules_due
-- Enabled schedules whose next occurrence is at or before %(now)s, most overdue first.
SELECT id, source_account_id, name, type, queue, cron_expression, timezone, payload, options, description,
       enabled, misfire_policy, misfire_grace_ms, overlap_policy, last_run_at, next_run_at, created_at,
       updated_at
FROM job_schedules
WHERE enabled AND next_run_at <= %(now)s
ORDER BY next_run_at
LIMIT %(limit)s;

-- name: schedules_without_next_run
-- Enabled schedules with no next_run_at, such as rows inserted without the plugin.
SELECT id, name, cron_expression, timezone
FROM job_schedules
WHERE enabled AND next_run_at IS NULL
LIMIT %(limit)s;

-- name: schedule_set_first_run
-- Set next_run_at of a schedule that has none; an edit made in the meantime wins.
UPDATE job_schedules SET next_run_at = %(next_run_at)s
WHERE id = %(id)s AND enabled AND next_run_at IS NULL;

-- name: schedule_next_due
-- The earliest next_run_at of the enabled schedules, or NULL.
SELECT min(next_run_at) AS next_run_at FROM job_schedules WHERE enabled;

-- name: schedule_advance
-- Move a schedule past the occurrences that one scheduler pass handled, unless another pass or an edit moved it first.
UPDATE job_schedules SET
    next_run_at = %(next_run_at)s,
    last_run_at = COALESCE(%(last_run_at)s, last_run_at)
WHERE id = %(id)s AND enabled AND next_run_at = %(expected_next_run_at)s
RETURNING id;

-- name: schedule_miss_insert
-- Record occurrences of a schedule that did not run on time.
INSERT INTO job_schedule_misses (id, source_account_id, schedule_id, reason, first_scheduled_for,
                                 last_scheduled_for, missed_count, late_runs, job_id, detail, recorded_at)
VALUES (%(id)s, %(account)s, %(schedule_id)s, %(reason)s, %(first_scheduled_for)s,
        %(last_scheduled_for)s, %(missed_count)s, %(late_runs)s, %(job_id)s, %(detail)s, %(now)s);

-- name: schedule_overlap_extend
-- Add skipped occurrences to the overlap record of the same blocking job; returns nothing when there is none.
UPDATE job_schedule_misses SET
    last_scheduled_for = GREATEST(last_scheduled_for, %(last_scheduled_for)s),
    missed_count = missed_count + %(missed_count)s,
    recorded_at = %(now)s
WHERE schedule_id = %(schedule_id)s AND reason = 'overlap' AND job_id = %(job_id)s
RETURNING id;

-- name: schedule_misses
-- The latest miss records of one schedule, newest first.
SELECT reason, first_scheduled_for, last_scheduled_for, missed_count, late_runs, job_id, detail, recorded_at
FROM job_schedule_misses
WHERE schedule_id = %(schedule_id)s
ORDER BY recorded_at DESC, last_scheduled_for DESC
LIMIT %(limit)s;

-- name: schedule_recent_runs
-- The latest jobs of one schedule, newest first.
SELECT id, status, scheduled_for, created_at, completed_at
FROM jobs
WHERE schedule_id = %(schedule_id)s
ORDER BY created_at DESC
LIMIT %(limit)s;

-- ---------------------------------------------------------------- dashboard and metrics
-- Read by history/dashboard_queries.py. The list filters are shared: %(pattern)s is an
-- ILIKE pattern with %, _ and \ escaped, matched against the payload text and the last
-- error; %(error)s matches the last error exactly. A NULL filter matches every row.

-- name: dashboard_jobs_by_created
-- One page of jobs older than the (created_at, id) cursor, newest first.
SELECT id, type, queue, status, priority, progress, attempts, max_attempts, created_at, started_at,
       completed_at, last_error, created_at AS sort_at
FROM jobs
WHERE source_account_id = %(account)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(error)s::text IS NULL OR last_error = %(error)s::text)
  AND (%(pattern)s::text IS NULL OR payload::text ILIKE %(pattern)s::text OR last_error ILIKE %(pattern)s::text)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: dashboard_jobs_by_created_newer
-- One page of jobs newer than the (created_at, id) cursor, oldest first; the caller reverses it.
SELECT id, type, queue, status, priority, progress, attempts, max_attempts, created_at, started_at,
       completed_at, last_error, created_at AS sort_at
FROM jobs
WHERE source_account_id = %(account)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(error)s::text IS NULL OR last_error = %(error)s::text)
  AND (%(pattern)s::text IS NULL OR payload::text ILIKE %(pattern)s::text OR last_error ILIKE %(pattern)s::text)
  AND (created_at, id) > (%(cursor_at)s::timestamptz, %(cursor_id)s::uuid)
ORDER BY created_at ASC, id ASC
LIMIT %(limit)s;

-- name: dashboard_jobs_by_ended
-- One page of ended jobs (one status) older than the (completed_at, id) cursor, latest end first.
SELECT id, type, queue, status, priority, progress, attempts, max_attempts, created_at, started_at,
       completed_at, last_error, completed_at AS sort_at
FROM jobs
WHERE source_account_id = %(account)s
  AND status = %(status)s::text
  AND completed_at IS NOT NULL
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(error)s::text IS NULL OR last_error = %(error)s::text)
  AND (%(pattern)s::text IS NULL OR payload::text ILIKE %(pattern)s::text OR last_error ILIKE %(pattern)s::text)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (completed_at, id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::uuid))
ORDER BY completed_at DESC, id DESC
LIMIT %(limit)s;

-- name: dashboard_jobs_by_ended_newer
-- One page of ended jobs (one status) newer than the (completed_at, id) cursor, oldest first; the caller reverses it.
SELECT id, type, queue, status, priority, progress, attempts, max_attempts, created_at, started_at,
       completed_at, last_error, completed_at AS sort_at
FROM jobs
WHERE source_account_id = %(account)s
  AND status = %(status)s::text
  AND completed_at IS NOT NULL
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(error)s::text IS NULL OR last_error = %(error)s::text)
  AND (%(pattern)s::text IS NULL OR payload::text ILIKE %(pattern)s::text OR last_error ILIKE %(pattern)s::text)
  AND (completed_at, id) > (%(cursor_at)s::timestamptz, %(cursor_id)s::uuid)
ORDER BY completed_at ASC, id ASC
LIMIT %(limit)s;

-- name: dashboard_count_jobs
-- The number of jobs matching the dashboard filters, counted up to %(cap)s rows.
SELECT count(*) AS total FROM (
    SELECT 1
    FROM jobs
    WHERE source_account_id = %(account)s
      AND (%(status)s::text IS NULL OR status = %(status)s::text)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(type)s::text IS NULL OR type = %(type)s::text)
      AND (%(error)s::text IS NULL OR last_error = %(error)s::text)
      AND (%(pattern)s::text IS NULL OR payload::text ILIKE %(pattern)s::text OR last_error ILIKE %(pattern)s::text)
    LIMIT %(cap)s
) AS matching;

-- name: dashboard_failed_ids
-- Failed jobs matching the dashboard filters, oldest failure first: the jobs a bulk retry moves.
SELECT id
FROM jobs
WHERE source_account_id = %(account)s
  AND status = 'failed'
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(error)s::text IS NULL OR last_error = %(error)s::text)
  AND (%(pattern)s::text IS NULL OR payload::text ILIKE %(pattern)s::text OR last_error ILIKE %(pattern)s::text)
ORDER BY completed_at ASC, id ASC
LIMIT %(limit)s;

-- name: dashboard_hourly_outcomes
-- Completed and failed jobs per hour since %(since)s; bucket 0 is the hour starting at %(since)s.
SELECT status,
       floor(extract(epoch FROM completed_at - %(since)s::timestamptz) / 3600)::int AS bucket,
       count(*) AS jobs
FROM jobs
WHERE source_account_id = %(account)s
  AND status IN ('completed', 'failed')
  AND completed_at >= %(since)s::timestamptz
GROUP BY 1, 2;

-- name: dashboard_failure_groups
-- Failed jobs that ended since %(since)s, grouped by their last error, largest group first,
-- with the group's job types, most frequent first. Hash aggregates only: no sort of every row.
WITH per_type AS (
    SELECT last_error, type, count(*) AS jobs, max(completed_at) AS last_seen, min(completed_at) AS first_seen
    FROM jobs
    WHERE source_account_id = %(account)s
      AND status = 'failed'
      AND completed_at >= %(since)s::timestamptz
    GROUP BY last_error, type
)
SELECT last_error AS error, sum(jobs)::bigint AS jobs, max(last_seen) AS last_seen, min(first_seen) AS first_seen,
       array_agg(type ORDER BY jobs DESC) AS types
FROM per_type
GROUP BY last_error
ORDER BY jobs DESC, last_seen DESC
LIMIT %(limit)s;

-- name: dashboard_recent_failures
-- The latest %(limit)s failed jobs that ended since %(since)s, newest first: the sample ids of failure groups.
SELECT id, last_error
FROM jobs
WHERE source_account_id = %(account)s
  AND status = 'failed'
  AND completed_at >= %(since)s::timestamptz
ORDER BY completed_at DESC, id DESC
LIMIT %(limit)s;

-- name: dashboard_failure_samples
-- The latest failed jobs of the given last errors since %(since)s: samples of groups missing from the recent ones.
SELECT last_error, (array_agg(id ORDER BY completed_at DESC))[1:%(samples)s] AS sample_ids
FROM jobs
WHERE source_account_id = %(account)s
  AND status = 'failed'
  AND completed_at >= %(since)s::timestamptz
  AND last_error = ANY(%(errors)s::text[])
GROUP BY last_error;

-- name: metrics_jobs_by_status
-- Jobs in the history per app, type and status.
SELECT source_account_id AS app, type, status, count(*) AS jobs
FROM jobs
GROUP BY 1, 2, 3;

-- name: metrics_failed_attempts
-- Failed attempts per app and job type, retried or final: one job_failures row each.
SELECT j.source_account_id AS app, j.type, count(*) AS attempts
FROM job_failures f
JOIN jobs j ON j.id = f.job_id
GROUP BY 1, 2;

-- name: metrics_durations
-- Completed attempts per app, job type and duration bucket; %(bounds)s holds each bucket's upper bound + 1 ms.
SELECT j.source_account_id AS app, j.type,
       width_bucket(r.duration_ms, %(bounds)s::int[]) AS bucket,
       count(*) AS attempts,
       sum(r.duration_ms) AS duration_ms
FROM job_results r
JOIN jobs j ON j.id = r.job_id
WHERE r.duration_ms IS NOT NULL
GROUP BY 1, 2, 3;

-- ---------------------------------------------------------------- doctor
-- Read and corrected by doctor.py, which compares the history with Redis.

-- name: doctor_job_statuses
-- The history status of each job in %(ids)s; ids without a row are left out.
SELECT id::text AS id, status
FROM jobs
WHERE id = ANY(%(ids)s::uuid[]);

-- name: doctor_unfinished_jobs
-- Jobs whose history status is pending, delayed or active, oldest first, at most %(limit)s.
SELECT id::text AS id, status
FROM jobs
WHERE status IN ('pending', 'delayed', 'active')
ORDER BY created_at
LIMIT %(limit)s;

-- name: doctor_correct_status
-- Set a job's status to its status in Redis, unless the history writer changed it since the doctor read %(seen)s.
UPDATE jobs SET
    status = %(status)s::text,
    last_error = COALESCE(%(last_error)s::text, last_error),
    completed_at = CASE WHEN %(status)s::text IN ('completed', 'failed', 'cancelled')
                        THEN COALESCE(completed_at, now()) ELSE completed_at END,
    updated_at = now()
WHERE id = %(id)s::uuid AND status = %(seen)s::text
RETURNING id;
