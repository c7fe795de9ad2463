import pytest

from nself_jobs.errors import ConfigError
from nself_jobs.settings import load_settings, mask_url, parse_env_file


def write(directory, name, text):
    (directory / name).write_text(text, encoding="utf-8")


def test_defaults_match_spec(tmp_path):
    settings = load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path)
    assert settings.port == 3105
    assert settings.dashboard_path == "/dashboard"
    assert settings.concurrency == 5
    assert settings.retry_attempts == 3
    assert settings.retry_delay_ms == 5000
    assert settings.job_timeout_ms == 60000
    assert settings.clean_completed_after_ms == 86_400_000
    assert settings.clean_failed_after_ms == 604_800_000
    assert settings.dashboard_enabled is True
    assert settings.redis_url is None
    assert settings.database_url is None


def test_env_files_later_file_wins(tmp_path):
    write(tmp_path, ".env.dev", "JOBS_DEFAULT_CONCURRENCY=2\nJOBS_RETRY_ATTEMPTS=7\n")
    write(tmp_path, ".env.local", "JOBS_DEFAULT_CONCURRENCY=3\n")
    write(tmp_path, ".env", "JOBS_DEFAULT_CONCURRENCY=4\n")
    settings = load_settings(environ={}, project_dir=tmp_path)
    assert settings.concurrency == 4
    assert settings.retry_attempts == 7


def test_env_named_file_read_between_local_and_env(tmp_path):
    write(tmp_path, ".env.local", "JOBS_JOB_TIMEOUT=1000\n")
    write(tmp_path, ".env.staging", "JOBS_JOB_TIMEOUT=2000\nJOBS_RETRY_DELAY=10\n")
    write(tmp_path, ".env", "JOBS_RETRY_DELAY=20\n")
    settings = load_settings(environ={"ENV": "staging"}, project_dir=tmp_path)
    assert settings.job_timeout_ms == 2000
    assert settings.retry_delay_ms == 20


def test_exported_variable_wins_over_files(tmp_path):
    write(tmp_path, ".env", "JOBS_DEFAULT_CONCURRENCY=4\n")
    settings = load_settings(environ={"JOBS_DEFAULT_CONCURRENCY": "9"}, project_dir=tmp_path)
    assert settings.concurrency == 9


def test_project_dir_from_nself_variable(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    write(project, ".env", "JOBS_DASHBOARD_PORT=4000\n")
    settings = load_settings(environ={"NSELF_PROJECT_DIR": str(project)})
    assert settings.port == 4000


@pytest.mark.parametrize("name, value, allowed", [
    ("JOBS_DEFAULT_CONCURRENCY", "abc", "whole number"),
    ("JOBS_DEFAULT_CONCURRENCY", "0", "from 1"),
    ("JOBS_DASHBOARD_PORT", "70000", "to 65535"),
    ("JOBS_DASHBOARD_ENABLED", "maybe", "true or false"),
    ("LOG_LEVEL", "loud", "debug"),
    ("JOBS_REDIS_URL", "http://x", "redis://"),
    ("DATABASE_URL", "mysql://x", "postgres://"),
    ("JOBS_DB_SCHEMA", "Bad-Name", "identifier"),
])
def test_invalid_value_names_variable(tmp_path, name, value, allowed):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={name: value}, project_dir=tmp_path)
    assert caught.value.variable == name
    assert allowed in str(caught.value)


def test_postgres_variables_build_url(tmp_path):
    settings = load_settings(environ={"POSTGRES_HOST": "db", "POSTGRES_PORT": "5433", "POSTGRES_DB": "app",
                                      "POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p@ss"}, project_dir=tmp_path)
    assert settings.database_url == "postgresql://u:p%40ss@db:5433/app"


def test_docker_variables_used_without_jobs_ones(tmp_path):
    settings = load_settings(environ={"PORT": "3000", "REDIS_HOST": "redis", "REDIS_PORT": "6380",
                                      "REDIS_PASSWORD": "secret"}, project_dir=tmp_path)
    assert settings.port == 3000
    assert settings.redis_url == "redis://:secret@redis:6380/0"
    assert settings.bind_host == "0.0.0.0"


def test_jobs_variables_win_over_docker_ones(tmp_path):
    settings = load_settings(environ={"PORT": "3000", "JOBS_DASHBOARD_PORT": "3105", "REDIS_HOST": "redis",
                                      "JOBS_REDIS_URL": "redis://own:6379/0"}, project_dir=tmp_path)
    assert settings.port == 3105
    assert settings.redis_url == "redis://own:6379/0"


def test_secrets_masked_in_description(tmp_path):
    settings = load_settings(environ={"DATABASE_URL": "postgres://user:hunter2@db/app",
                                      "JOBS_REDIS_URL": "redis://:topsecret@r:6379/0",
                                      "JOBS_API_TOKEN": "tok"}, project_dir=tmp_path)
    text = repr(settings) + str(settings.describe())
    assert "hunter2" not in text
    assert "topsecret" not in text
    assert "'tok'" not in text
    assert "user:***@db" in settings.describe()["DATABASE_URL"]


def test_parse_env_file_quotes_comments_export():
    parsed = parse_env_file('export A=1\nB="two words" \nC=\'x # y\'\nD=plain # note\n# E=skip\nbad line\n')
    assert parsed == {"A": "1", "B": "two words", "C": "x # y", "D": "plain"}


def test_mask_url_without_password_unchanged():
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
