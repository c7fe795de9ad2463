"""PostgreSQL history: the store (all SQL) and the writer that drains Redis events into it."""

from .store import HistoryStore
from .writer import HistoryWriter

__all__ = ["HistoryStore", "HistoryWriter"]
