"""The operator's tables: each file's table ensured (created, or given new columns), one file at a time.

An existing table is used as it is.  Else a `table` policy from the ledger creates it; else its
columns are inferred from the file and it is created with schema.py's layout, then published as
a table policy.  Either way the table is then assigned to the operator's cluster (a cluster
child policy).  A later file with new attributes adds nullable columns.  All of this is
serialised per table (a DeferredLock), so concurrent files never race to create or alter it;
the columns are cached so the common case costs no query.
"""

from __future__ import annotations

from twisted.internet.defer import DeferredLock

from anylog_tw.base.errors import StorageError
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest import pipeline
from anylog_tw.storage import policy_ddl, schema


class TableKeeper:
    def __init__(self, operator):
        self.operator = operator
        self._locks: dict[tuple[str, str], DeferredLock] = {}
        self._columns: dict[tuple[str, str], dict[str, str]] = {}

    def forget(self, dbms: str, table: str) -> None:
        """Drop the cached columns (after a failed insert the table may have changed)."""
        self._columns.pop((dbms, table), None)

    async def ensure(self, db, table: str, parsed: pipeline.Parsed, policy) -> dict[str, str]:
        """The columns this file writes (name -> logical type), after the table has them all."""
        key = (db.name, table)
        lock = self._locks.setdefault(key, DeferredLock())
        await lock.acquire()
        try:
            existing = self._columns.get(key)
            if existing is None and await db.has_table(table):
                existing = pipeline.column_types(await db.columns(table))
            fixed = policy.types if policy is not None else None
            if existing is None:
                existing = await self._create(db, table, parsed, fixed)
            columns, added = pipeline.new_columns(parsed, existing, fixed)
            if added:
                try:
                    await db.add_columns(table, list(added.items()))
                except StorageError as e:
                    raise IngestError("table", f"cannot add columns {', '.join(added)} to {db.name}.{table}: "
                                               f"{e.message}") from None
                existing = {**existing, **added}
            self._columns[key] = existing
            return columns
        finally:
            lock.release()

    async def _create(self, db, table: str, parsed: pipeline.Parsed, fixed) -> dict[str, str]:
        op = self.operator
        if not op.config.create_table:
            raise IngestError("table", f"table {db.name}.{table} does not exist and create_table is false")
        source = f"Operator of node {op.node.name}"
        found = op.link.table_policy(db.name, table)
        try:
            if found is not None:  # its columns, in this engine's layout (the policy's SQL is never run)
                columns = policy_ddl.policy_columns(found.get("table", {}).get("create", ""), table,
                                                    f"the table policy of {db.name}.{table}")
                await db.create_table(table, columns)
                existing = pipeline.column_types(await db.columns(table))
            else:
                existing, _ = pipeline.new_columns(parsed, {}, fixed)
                await db.create_table(table, existing)
                ddl = "; ".join(schema.create_table_sql(db.engine, table, existing)) + ";"
                await op.link.publish_table(db.name, table, ddl, source)
        except StorageError as e:
            raise IngestError("table", f"cannot create table {db.name}.{table}: {e.message}") from None
        await op.link.assign_table(op.config.cluster, db.name, table, source)
        return existing
