-- nself jobs plugin: analytics views over the history tables.
--
-- CREATE OR REPLACE keeps this file idempotent. The column lists match the
-- plugin's documented views; new columns go at the end of a view so that
-- OR REPLACE still applies.

CREATE OR REPLACE VIEW jobs_active AS
SELECT id, type, queue, priority, payload, started_at, attempts, source_account_id
FROM jobs
WHERE status = 'active'
ORDER BY started_at ASC;

CREATE OR REPLACE VIEW jobs_failed_details AS
SELECT
    j.id, j.type, j.queue, j.attempts, j.max_attempts,
    f.error_message, f.error_stack, f.failed_at, j.source_account_id
FROM jobs j
JOIN job_failures f ON j.id = f.job_id
WHERE j.status = 'failed'
ORDER BY f.failed_at DESC;

CREATE OR REPLACE VIEW queue_stats AS
SELECT
    queue,
    COUNT(*) FILTER (WHERE status = 'pending') AS pending,
    COUNT(*) FILTER (WHERE status = 'active') AS active,
    COUNT(*) FILTER (WHERE status = 'completed') AS completed,
    COUNT(*) FILTER (WHERE status = 'failed') AS failed,
    COUNT(*) FILTER (WHERE status = 'delayed') AS delayed,
    COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM jobs
GROUP BY queue;

CREATE OR REPLACE VIEW job_type_stats AS
SELECT
    type,
    COUNT(*) AS total,
    COUNT(*) FILTER (WHERE status = 'completed') AS completed,
    COUNT(*) FILTER (WHERE status = 'failed') AS failed,
    AVG(r.duration_ms) AS avg_duration_ms
FROM jobs j
LEFT JOIN job_results r ON j.id = r.job_id
GROUP BY type
ORDER BY total DESC;

CREATE OR REPLACE VIEW recent_failures AS
SELECT j.id, j.type, j.queue, f.error_message, f.failed_at, j.source_account_id
FROM jobs j
JOIN job_failures f ON j.id = f.job_id
WHERE f.failed_at > NOW() - INTERVAL '24 hours'
ORDER BY f.failed_at DESC;

CREATE OR REPLACE VIEW scheduled_jobs_overview AS
SELECT name, type, queue, cron_expression, description, enabled, last_run_at, next_run_at,
       timezone, source_account_id
FROM job_schedules
ORDER BY enabled DESC, next_run_at ASC;
