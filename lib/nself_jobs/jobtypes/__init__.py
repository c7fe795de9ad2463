"""The job type registry: built-in types plus handlers users register by name."""

import importlib

from ..errors import ConfigError, ValidationError
from .base import JobContext, JobType

_BUILT_IN_MODULES = ("http_request", "send_email", "database_backup", "file_cleanup", "custom")
_registry = {}
_built_ins_loaded = False


def register(job_type):
    """Add a job type to the registry, replacing one of the same name."""
    _registry[job_type.name] = job_type
    return job_type


def _load_built_ins():
    global _built_ins_loaded
    _built_ins_loaded = True
    for module_name in _BUILT_IN_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{module_name}":
                raise
            continue
        _registry.setdefault(module.JOB_TYPE.name, module.JOB_TYPE)


def load_user_modules(module_paths):
    """Import each module in ``module_paths``; importing one registers its types with ``register``."""
    for path in module_paths:
        try:
            importlib.import_module(path)
        except ImportError as error:
            raise ConfigError("JOBS_HANDLER_MODULES", path, f"an importable Python module ({error})") from error


def get(name):
    """Return the job type called ``name``; raise ValidationError naming the known types."""
    if not _built_ins_loaded:
        _load_built_ins()
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise ValidationError("type", f"unknown job type {name!r}; known types: {known}") from None


def names():
    """Return the registered type names, sorted."""
    if not _built_ins_loaded:
        _load_built_ins()
    return sorted(_registry)


__all__ = ["JobContext", "JobType", "get", "load_user_modules", "names", "register"]
