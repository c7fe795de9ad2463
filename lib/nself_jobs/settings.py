"""Settings from the process environment and nself's project env files.

Precedence, highest first: a variable exported in the process environment, then
the project env files in nself's order, where a later file wins:
``.env.dev``, ``.env.local``, ``.env.$ENV`` (for prod also ``.env.prod`` and
``.env.secrets``), ``.env``. The files are read from ``NSELF_PROJECT_DIR``, else
from the current directory.

Every invalid value raises :class:`ConfigError` naming the variable, the value
and what is allowed. Secrets are kept out of ``repr`` and ``describe()``.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import ConfigError

QUEUE_NAMES = ("high-priority", "default", "low-priority")

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_env_file(text):
    """Parse dotenv text into a dict: ``KEY=value``, optional ``export``, quotes and comments."""
    values = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line)
        if not match:
            continue
        key, raw = match.group(1), match.group(2).strip()
        if raw[:1] in ("'", '"'):
            quote_char = raw[0]
            end = raw.find(quote_char, 1)
            value = raw[1:end] if end > 0 else raw[1:]
            if quote_char == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
        values[key] = value
    return values


def env_file_names(environment_name):
    """Return the project env files in nself's order; a later file overrides an earlier one."""
    names = [".env.dev", ".env.local", f".env.{environment_name}"]
    if environment_name in ("prod", "production"):
        names += [".env.prod", ".env.secrets"]
    names.append(".env")
    return list(dict.fromkeys(names))


def load_environment(environ=None, project_dir=None):
    """Merge the project env files under the process environment and return one dict."""
    environ = dict(os.environ if environ is None else environ)
    directory = Path(project_dir or environ.get("NSELF_PROJECT_DIR") or os.getcwd())

    def read(name):
        path = directory / name
        try:
            return parse_env_file(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return {}

    base = {}
    for name in (".env.dev", ".env.local", ".env"):
        base.update(read(name))
    environment_name = environ.get("ENV") or base.get("ENV") or "dev"

    merged = {}
    for name in env_file_names(environment_name):
        merged.update(read(name))
    merged.update(environ)
    return merged


class Environment:
    """Typed access to one merged environment; every parse error names the variable."""

    def __init__(self, values):
        self.values = dict(values)

    def str(self, name, default=None):
        value = self.values.get(name)
        return default if value is None or value == "" else value

    def int(self, name, default, minimum=None, maximum=None):
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(name, raw, "a whole number") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
            raise ConfigError(name, raw, f"a whole number {bounds}")
        return value

    def bool(self, name, default):
        raw = self.str(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(name, raw, "true or false")

    def choice(self, name, default, allowed):
        raw = self.str(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered not in allowed:
            raise ConfigError(name, raw, "one of " + ", ".join(allowed))
        return lowered

    def list(self, name, default=()):
        raw = self.str(name)
        if raw is None:
            return list(default)
        return [item.strip() for item in raw.split(",") if item.strip()]


def _redis_url(env):
    url = env.str("JOBS_REDIS_URL")
    if url:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("JOBS_REDIS_URL", mask_url(url), "a redis://, rediss:// or unix:// URL")
        return url
    host = env.str("REDIS_HOST")
    if not host:
        return None
    port = env.int("REDIS_PORT", 6379, minimum=1, maximum=65535)
    password = env.str("REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"


def _database_url(env):
    url = env.str("DATABASE_URL")
    if url:
        if urlsplit(url).scheme not in ("postgres", "postgresql"):
            raise ConfigError("DATABASE_URL", mask_url(url), "a postgres:// or postgresql:// URL")
        return url
    names = ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")
    if not any(env.str(name) for name in names):
        return None
    host = env.str("POSTGRES_HOST", "localhost")
    port = env.int("POSTGRES_PORT", 5432, minimum=1, maximum=65535)
    user = quote(env.str("POSTGRES_USER", "postgres"), safe="")
    password = env.str("POSTGRES_PASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    database = quote(env.str("POSTGRES_DB", "postgres"), safe="")
    return f"postgresql://{auth}@{host}:{port}/{database}"


def mask_url(url):
    """Return the URL with its password replaced by ``***``."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def _schema_name(env):
    schema = env.str("JOBS_DB_SCHEMA")
    if schema is None:
        return None
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ConfigError("JOBS_DB_SCHEMA", schema, "a lowercase PostgreSQL identifier such as jobs_plugin")
    return schema


def _dashboard_path(env):
    path = env.str("JOBS_DASHBOARD_PATH", "/dashboard")
    if not re.fullmatch(r"/[A-Za-z0-9_\-/]*", path) or path.startswith("/api"):
        raise ConfigError("JOBS_DASHBOARD_PATH", path, "a URL path such as /dashboard, outside /api")
    return path.rstrip("/") or "/dashboard"


@dataclass(frozen=True, repr=False)
class Settings:
    """The plugin's effective configuration. Durations are in milliseconds."""

    redis_url: str | None
    database_url: str | None
    db_schema: str | None
    dashboard_enabled: bool
    port: int
    bind_host: str
    dashboard_path: str
    concurrency: int
    retry_attempts: int
    retry_delay_ms: int
    retry_backoff: str
    retry_max_delay_ms: int
    job_timeout_ms: int
    clean_completed_after_ms: int
    clean_failed_after_ms: int
    max_payload_bytes: int
    log_level: str
    home_dir: Path
    log_dir: Path
    api_token: str | None = field(default=None, repr=False)
    env: Environment = field(default=None, repr=False, compare=False)

    @property
    def schema_prefix(self):
        """The quoted schema qualifier for SQL, or an empty string for the search path."""
        return f'"{self.db_schema}".' if self.db_schema else ""

    def __repr__(self):
        return f"Settings({self.describe()!r})"

    def describe(self):
        """Return the settings as display rows, secrets masked."""
        return {
            "JOBS_REDIS_URL": mask_url(self.redis_url) or "(embedded Redis)",
            "DATABASE_URL": mask_url(self.database_url) or "(embedded PostgreSQL)",
            "JOBS_DB_SCHEMA": self.db_schema or "(search path)",
            "JOBS_DASHBOARD_ENABLED": self.dashboard_enabled,
            "JOBS_DASHBOARD_PORT": self.port,
            "JOBS_BIND_HOST": self.bind_host,
            "JOBS_DASHBOARD_PATH": self.dashboard_path,
            "JOBS_DEFAULT_CONCURRENCY": self.concurrency,
            "JOBS_RETRY_ATTEMPTS": self.retry_attempts,
            "JOBS_RETRY_DELAY": self.retry_delay_ms,
            "JOBS_RETRY_BACKOFF": self.retry_backoff,
            "JOBS_RETRY_MAX_DELAY": self.retry_max_delay_ms,
            "JOBS_JOB_TIMEOUT": self.job_timeout_ms,
            "JOBS_CLEAN_COMPLETED_AFTER": self.clean_completed_after_ms,
            "JOBS_CLEAN_FAILED_AFTER": self.clean_failed_after_ms,
            "JOBS_MAX_PAYLOAD_BYTES": self.max_payload_bytes,
            "JOBS_API_TOKEN": "***" if self.api_token else "(not set)",
            "LOG_LEVEL": self.log_level,
            "JOBS_HOME": str(self.home_dir),
        }


def load_settings(environ=None, project_dir=None):
    """Build :class:`Settings` from the process environment and the project env files."""
    env = Environment(load_environment(environ, project_dir))
    home = Path(env.str("JOBS_HOME") or Path(env.str("HOME", str(Path.home()))) / ".nself")
    docker_port = env.str("PORT")
    port_variable = "JOBS_DASHBOARD_PORT" if env.str("JOBS_DASHBOARD_PORT") or not docker_port else "PORT"
    return Settings(
        redis_url=_redis_url(env),
        database_url=_database_url(env),
        db_schema=_schema_name(env),
        dashboard_enabled=env.bool("JOBS_DASHBOARD_ENABLED", True),
        port=env.int(port_variable, 3105, minimum=1, maximum=65535),
        # A container must listen on every interface for its published port; on a host,
        # loopback keeps the API private until the operator opens it.
        bind_host=env.str("JOBS_BIND_HOST", "0.0.0.0" if docker_port else "127.0.0.1"),
        dashboard_path=_dashboard_path(env),
        concurrency=env.int("JOBS_DEFAULT_CONCURRENCY", 5, minimum=1, maximum=256),
        retry_attempts=env.int("JOBS_RETRY_ATTEMPTS", 3, minimum=0, maximum=1000),
        retry_delay_ms=env.int("JOBS_RETRY_DELAY", 5000, minimum=0, maximum=86_400_000),
        retry_backoff=env.choice("JOBS_RETRY_BACKOFF", "exponential", ("exponential", "fixed")),
        retry_max_delay_ms=env.int("JOBS_RETRY_MAX_DELAY", 3_600_000, minimum=0, maximum=604_800_000),
        job_timeout_ms=env.int("JOBS_JOB_TIMEOUT", 60_000, minimum=1, maximum=604_800_000),
        clean_completed_after_ms=env.int("JOBS_CLEAN_COMPLETED_AFTER", 86_400_000, minimum=0),
        clean_failed_after_ms=env.int("JOBS_CLEAN_FAILED_AFTER", 604_800_000, minimum=0),
        max_payload_bytes=env.int("JOBS_MAX_PAYLOAD_BYTES", 1_048_576, minimum=1024, maximum=512 * 1_048_576),
        log_level=env.choice("LOG_LEVEL", "info", _LOG_LEVELS),
        home_dir=home,
        log_dir=Path(env.str("JOBS_LOG_DIR") or home / "logs" / "plugins" / "jobs"),
        api_token=env.str("JOBS_API_TOKEN"),
        env=env,
    )
