"""The operator's tables: each file's table ensured (created, or given new columns), one file at a time.

An existing table is used as it is.  Else a `table` policy from the ledger creates it; else its
columns are inferred from the file and it is created with schema.py's layout, then published as
a table policy.  Either way the table is then assigned to the operator's cluster (a cluster
child policy).  A later file with new attributes adds nullable columns.  A `.sql` file's CREATE
TABLE IF NOT EXISTS is read for its columns and, when the table is missing, run (in this node's
layout) inside the file's insert transaction.  All of this is
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

    async def ensure(self, db, part: pipeline.Part, create: list[tuple[str, str]] | None = None,
                     keep_schema: bool = False) -> tuple[dict[str, str], list[str]]:
        """(the columns this part writes, name -> logical type; DDL for the insert transaction).

        With `keep_schema` (a dynamic topic's files) the first schema wins: a missing table is
        made from the first row's attributes (the table policy's, when the network has one), and
        attributes a table lacks are left out of the insert instead of added as columns.

        The DDL is empty unless a `.sql` file's CREATE TABLE IF NOT EXISTS (`create`) names a
        table that is missing: then the table is created at the start of the insert's own
        transaction (all or nothing) and `created` is called once it committed.
        """
        table = part.table
        key = (db.name, table)
        lock = self._locks.setdefault(key, DeferredLock())
        await lock.acquire()
        try:
            existing = self._columns.get(key)
            if existing is None and await db.has_table(table):
                existing = pipeline.column_types(await db.columns(table))
            fixed = part.fixed or None
            if existing is None and create is not None:
                if not self.operator.config.create_table:
                    raise IngestError("table", f"table {db.name}.{table} does not exist and create_table is false")
                columns, added = pipeline.new_columns(part, dict(create), fixed)
                layout = {**dict(create), **added}
                try:
                    return columns, schema.create_table_sql(db.engine, table, layout)
                except StorageError as e:
                    raise IngestError("table", f"cannot create table {db.name}.{table}: {e.message}") from None
            if existing is None:
                first = pipeline.first_row_part(part) if keep_schema else part
                existing = await self._create(db, table, first, fixed)
            columns, added = pipeline.new_columns(part, existing, fixed)
            if added and keep_schema:
                columns = {c: t for c, t in columns.items() if c not in added}
            elif added:
                try:
                    await db.add_columns(table, list(added.items()))
                except StorageError as e:
                    raise IngestError("table", f"cannot add columns {', '.join(added)} to {db.name}.{table}: "
                                               f"{e.message}") from None
                existing = {**existing, **added}
            self._columns[key] = existing
            return columns, []
        finally:
            lock.release()

    async def created(self, db, table: str, ddl: list[str]) -> None:
        """A table a `.sql` file created in its insert transaction: publish and assign it like ours."""
        self.forget(db.name, table)
        op = self.operator
        source = f"Operator of node {op.node.name}"
        await op.link.publish_table(db.name, table, "; ".join(ddl) + ";", source)
        await op.link.assign_table(op.config.cluster, db.name, table, source)

    async def _create(self, db, table: str, part: pipeline.Part, fixed) -> dict[str, str]:
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
                existing, _ = pipeline.new_columns(part, {}, fixed)
                await db.create_table(table, existing)
                ddl = "; ".join(schema.create_table_sql(db.engine, table, existing)) + ";"
                await op.link.publish_table(db.name, table, ddl, source)
        except StorageError as e:
            raise IngestError("table", f"cannot create table {db.name}.{table}: {e.message}") from None
        await op.link.assign_table(op.config.cluster, db.name, table, source)
        return existing
