"""Storage: one async Database interface over SQLite and PostgreSQL (see base.py and engines.py)."""

from anylog_tw.storage.base import Database, Transaction
from anylog_tw.storage.engines import Databases

__all__ = ["Database", "Databases", "Transaction"]
