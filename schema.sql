-- nself jobs plugin: tables and indexes.
--
-- Idempotent: every statement can run again on an existing database. The plugin
-- applies this file with search_path set to JOBS_DB_SCHEMA when that is set, so
-- no name here is schema-qualified.
--
-- Each table carries source_account_id, the nself app that owns the row
-- ('primary' unless a request names another app).

-- ---------------------------------------------------------------- tables

CREATE TABLE IF NOT EXISTS jobs (
    id UUID PRIMARY KEY,
    source_account_id VARCHAR(128) NOT NULL DEFAULT 'primary',
    type VARCHAR(100) NOT NULL,
    queue VARCHAR(100) DEFAULT 'default',
    -- pending, active, completed, failed, delayed, cancelled
    status VARCHAR(50) NOT NULL,
    -- 1 critical, 2 high, 3 normal, 4 low: a lower number runs first
    priority INTEGER DEFAULT 0,
    payload JSONB NOT NULL,
    progress INTEGER DEFAULT 0,
    attempts INTEGER DEFAULT 0,
    max_attempts INTEGER DEFAULT 3,
    delay_ms BIGINT DEFAULT 0,
    timeout_ms BIGINT DEFAULT 60000,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE
);

-- Columns beyond the spec's table, added so that an older table gains them too.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS options JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress_message TEXT;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS run_at TIMESTAMP WITH TIME ZONE;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS unique_key VARCHAR(255);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule_id UUID;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS scheduled_for TIMESTAMP WITH TIME ZONE;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS worker_name VARCHAR(255);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS last_error TEXT;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW();

CREATE TABLE IF NOT EXISTS job_results (
    id UUID PRIMARY KEY,
    source_account_id VARCHAR(128) NOT NULL DEFAULT 'primary',
    job_id UUID REFERENCES jobs(id),
    result JSONB,
    duration_ms INTEGER,
    completed_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

ALTER TABLE job_results ADD COLUMN IF NOT EXISTS attempt_number INTEGER;

CREATE TABLE IF NOT EXISTS job_failures (
    id UUID PRIMARY KEY,
    source_account_id VARCHAR(128) NOT NULL DEFAULT 'primary',
    job_id UUID REFERENCES jobs(id),
    attempt_number INTEGER NOT NULL,
    error_message TEXT,
    error_stack TEXT,
    failed_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS job_schedules (
    id UUID PRIMARY KEY,
    source_account_id VARCHAR(128) NOT NULL DEFAULT 'primary',
    name VARCHAR(255) NOT NULL UNIQUE,
    type VARCHAR(100) NOT NULL,
    queue VARCHAR(100) DEFAULT 'default',
    cron_expression VARCHAR(100) NOT NULL,
    payload JSONB NOT NULL,
    description TEXT,
    enabled BOOLEAN DEFAULT TRUE,
    last_run_at TIMESTAMP WITH TIME ZONE,
    next_run_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

ALTER TABLE job_schedules ADD COLUMN IF NOT EXISTS timezone VARCHAR(64) NOT NULL DEFAULT 'UTC';
ALTER TABLE job_schedules ADD COLUMN IF NOT EXISTS options JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE job_schedules ADD COLUMN IF NOT EXISTS misfire_policy VARCHAR(20) NOT NULL DEFAULT 'run-once';
ALTER TABLE job_schedules ADD COLUMN IF NOT EXISTS misfire_grace_ms BIGINT;
ALTER TABLE job_schedules ADD COLUMN IF NOT EXISTS overlap_policy VARCHAR(20) NOT NULL DEFAULT 'allow';
ALTER TABLE job_schedules ADD COLUMN IF NOT EXISTS updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW();

-- ---------------------------------------------------------------- indexes

CREATE INDEX IF NOT EXISTS idx_jobs_status ON jobs(status);
CREATE INDEX IF NOT EXISTS idx_jobs_type ON jobs(type);
CREATE INDEX IF NOT EXISTS idx_jobs_queue ON jobs(queue);
CREATE INDEX IF NOT EXISTS idx_jobs_created ON jobs(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_jobs_source_account ON jobs(source_account_id);
-- Keyset pagination: newest first, the id breaking ties between equal timestamps.
CREATE INDEX IF NOT EXISTS idx_jobs_created_id ON jobs(created_at DESC, id DESC);
-- One job per (schedule, occurrence): a second scheduler cannot insert the same run twice.
CREATE UNIQUE INDEX IF NOT EXISTS idx_jobs_schedule_occurrence
    ON jobs(schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS idx_job_results_job ON job_results(job_id);
CREATE INDEX IF NOT EXISTS idx_job_results_source_account ON job_results(source_account_id);

CREATE INDEX IF NOT EXISTS idx_job_failures_job ON job_failures(job_id);
CREATE INDEX IF NOT EXISTS idx_job_failures_failed ON job_failures(failed_at DESC);
CREATE INDEX IF NOT EXISTS idx_job_failures_source_account ON job_failures(source_account_id);

CREATE INDEX IF NOT EXISTS idx_job_schedules_enabled ON job_schedules(enabled);
CREATE INDEX IF NOT EXISTS idx_job_schedules_next ON job_schedules(next_run_at);
CREATE INDEX IF NOT EXISTS idx_job_schedules_source_account ON job_schedules(source_account_id);

-- ---------------------------------------------------------------- schedule misses

-- Occurrences of a schedule that did not run on time. reason is one of:
--   misfire   no scheduler ran at the occurrence time (one row per scheduler pass)
--   overlap   the previous run was still waiting or active under overlap policy skip
--             (one row per blocking job, extended while it blocks)
--   rejected  the job request built from the schedule failed validation
-- schedule_id has no foreign key, so that dropping job_schedules never depends on
-- this table; deleting a schedule deletes its rows in the same statement.
CREATE TABLE IF NOT EXISTS job_schedule_misses (
    id UUID PRIMARY KEY,
    source_account_id VARCHAR(128) NOT NULL DEFAULT 'primary',
    schedule_id UUID NOT NULL,
    reason VARCHAR(20) NOT NULL,
    first_scheduled_for TIMESTAMP WITH TIME ZONE NOT NULL,
    last_scheduled_for TIMESTAMP WITH TIME ZONE NOT NULL,
    missed_count BIGINT NOT NULL,
    -- Runs enqueued late for these occurrences (misfire policy run-once or run-all).
    late_runs INTEGER NOT NULL DEFAULT 0,
    -- The last late run (misfire) or the run that was still in progress (overlap).
    job_id UUID,
    detail TEXT,
    recorded_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_job_schedule_misses_schedule
    ON job_schedule_misses(schedule_id, recorded_at DESC);

-- ---------------------------------------------------------------- dashboard lists

-- The dashboard's job lists filter by app and status and page by time. These let
-- PostgreSQL read one page from an index range instead of sorting every job of
-- that status: by end time for the completed, failed and cancelled lists, failure
-- groups and charts, by creation time for the others.
CREATE INDEX IF NOT EXISTS idx_jobs_account_status_completed
    ON jobs(source_account_id, status, completed_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_jobs_account_status_created
    ON jobs(source_account_id, status, created_at DESC, id DESC);
