"""nself jobs plugin: a background job queue on RQ, Redis and PostgreSQL."""

__version__ = "1.0.0"
