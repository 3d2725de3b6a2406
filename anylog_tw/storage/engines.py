"""The node's connected databases, and the one place that knows which class serves which engine.

`Databases` is one of the node's shared parts (`node.component(Databases)`); `base.py` holds only
the interface the engines implement.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from anylog_tw.base.errors import CommandError, NotFound, StorageError
from anylog_tw.storage import schema
from anylog_tw.storage.base import Database
from anylog_tw.storage.deadline import DEFAULT_QUERY_TIMEOUT
from anylog_tw.storage.sqlite import SQLiteDatabase


class Databases:
    """The node's connected dbms, by logical name (`node.component(Databases)`)."""

    log = Logger()

    def __init__(self, node):
        self.node = node
        self._dbs: dict[str, Database] = {}
        self._opening: set[str] = set()
        self.query_timeout = DEFAULT_QUERY_TIMEOUT  # seconds a user's sql may run (`set query timeout`)

    def names(self) -> list[str]:
        return sorted(self._dbs)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._dbs

    def find(self, name: str) -> Database | None:
        return self._dbs.get(name.strip().lower())

    def get(self, name: str) -> Database:
        db = self.find(name)
        if db is None:
            raise NotFound(f"dbms '{name}' is not connected (connect it first, e.g. "
                           f"'connect dbms {name} where type = sqlite')")
        return db

    async def connect(self, name: str, engine: str, **options: Any) -> Database:
        """Open a dbms and register it; a name in use is an error, a failed open registers nothing."""
        name = schema.check_name(name, "dbms name")
        if name in self._dbs or name in self._opening:
            raise CommandError(f"dbms '{name}' is already connected (disconnect it first with "
                               f"'disconnect dbms {name}')")
        db = make_database(engine, name, self.node, **options)
        self._opening.add(name)
        try:
            await db.open()
        finally:
            self._opening.discard(name)
        self._dbs[name] = db
        self.log.info("dbms {dbms} connected ({engine})", dbms=name, engine=db.engine)
        return db

    async def disconnect(self, name: str) -> None:
        db = self.get(name)
        del self._dbs[db.name]
        await db.close()

    def interrupt(self, reason: str) -> None:
        """Stop the users' statements in flight on every dbms (the node is stopping)."""
        for db in self._dbs.values():
            db.interrupt(reason)

    async def close(self) -> None:
        """Close every dbms (the node is stopping)."""
        dbs, self._dbs = list(self._dbs.values()), {}
        for db in dbs:
            try:
                await db.close()
            except Exception:
                self.log.failure("closing dbms {dbms} failed", dbms=db.name)


def make_database(engine: str, name: str, node, **options: Any) -> Database:
    """An unopened Database of the engine, with the node's reactor and work directories."""
    if engine == schema.SQLITE:
        memory = bool(options.pop("memory", False))
        directory = options.pop("directory", None) or node.dirs.get("dbms_dir")
        _no_more(engine, options)
        return SQLiteDatabase(name, node.reactor, directory=directory, memory=memory)
    if engine == schema.PSQL:
        # Imported here, not at the top: psycopg2 and txpostgres add about 7.5 MB of RSS to a node that
        # only uses SQLite (measured: importing storage.postgres after storage.engines, 30 -> 37.6 MB).
        from anylog_tw.storage.postgres import PostgresDatabase

        return PostgresDatabase(name, node.reactor, **options)
    raise StorageError(f"unknown database type {engine!r} (one of {', '.join(schema.ENGINES)})")


def _no_more(engine: str, options: dict) -> None:
    given = [k for k, v in options.items() if v not in (None, "")]
    if given:
        raise CommandError(f"type = {engine} does not take {', '.join(sorted(given))}")
