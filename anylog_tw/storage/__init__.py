"""Storage: one async Database interface over SQLite and PostgreSQL (see base.py)."""

from anylog_tw.storage.base import Database, Databases, Transaction

__all__ = ["Database", "Databases", "Transaction"]
