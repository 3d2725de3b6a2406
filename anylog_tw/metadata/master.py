"""The master's ledger: the `ledger` table of dbms `blockchain` (spec 4.4).

A master node keeps every policy peers push to it in that table, one row per policy, with the
policy id unique, and also in its own ledger file, which is what it serves to synchronizers.
`MasterLedger` works over any object with the storage `Database` interface (`execute`, `query`,
`has_table`, `create_ledger_table`), on SQLite or PostgreSQL alike.

    master = MasterLedger(node.component(Databases).get("blockchain"))
    await master.ensure_table()
    added = await master.push(policy, host="10.0.0.5:32048")   # False: it was there already
    text = await master.dump()                                  # the ledger as JSON lines, in order
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from anylog_tw.base.errors import StorageError
from anylog_tw.metadata.ledger import to_line
from anylog_tw.metadata.values import body, policy_type

DBMS = "blockchain"
TABLE = "ledger"
COLUMNS = ("policy_type", "policy_id", "company_name", "host", "status", "policy")


def ledger_row(policy: dict, host: str = "", status: str = "") -> tuple:
    """(policy_type, policy_id, company_name, host, status, policy) for one policy."""
    inner = body(policy)
    return (policy_type(policy), inner["id"], str(inner.get("company", "")), host, status, to_line(policy))


class MasterLedger:
    def __init__(self, db: Any):
        self.db = db

    async def ensure_table(self) -> bool:
        """Create the `ledger` table when missing; True when it was created."""
        return await self.db.create_ledger_table()

    async def has_table(self) -> bool:
        return await self.db.has_table(TABLE)

    async def ids(self) -> set[str]:
        _, rows = await self.db.query(f'SELECT "policy_id" FROM "{TABLE}"')
        return {r[0] for r in rows}

    async def contains(self, pid: str) -> bool:
        _, rows = await self.db.query(f'SELECT 1 FROM "{TABLE}" WHERE "policy_id" = ?', (pid,))
        return bool(rows)

    async def push(self, policy: dict, host: str = "") -> bool:
        """Insert one policy; False when a policy with that id is there already (not an error)."""
        if await self.contains(body(policy)["id"]):
            return False
        try:
            await self.db.execute(
                f'INSERT INTO "{TABLE}" ("policy_type", "policy_id", "company_name", "host", "status", "policy") '
                f"VALUES (?, ?, ?, ?, ?, ?)", ledger_row(policy, host))
        except StorageError:
            if await self.contains(body(policy)["id"]):  # a concurrent push of the same policy won
                return False
            raise
        return True

    async def push_many(self, policies: Iterable[dict], host: str = "") -> int:
        """Insert the policies the table lacks, in one transaction (COPY on PostgreSQL)."""
        have = await self.ids()
        rows, seen = [], set()
        for p in policies:
            pid = body(p)["id"]
            if pid not in have and pid not in seen:
                seen.add(pid)
                rows.append(ledger_row(p, host))
        if rows:
            await self.db.bulk_insert(TABLE, COLUMNS, rows)
        return len(rows)

    async def drop(self, ids: Iterable[str]) -> int:
        removed = 0
        for pid in ids:
            n = await self.db.execute(f'DELETE FROM "{TABLE}" WHERE "policy_id" = ?', (pid,))
            removed += max(n, 0)
        return removed

    async def policies(self) -> list[dict]:
        """Every policy in the order the master received them."""
        _, rows = await self.db.query(f'SELECT "policy" FROM "{TABLE}" ORDER BY "sequence_id"')
        out = []
        for (text,) in rows:
            try:
                out.append(json.loads(text))
            except ValueError:
                continue  # a row written by something else: the ledger file stays clean
        return out

    async def dump(self) -> str:
        """The table as ledger text (JSON lines, ledger marked global)."""
        lines = []
        for p in await self.policies():
            inner = body(p)
            if inner.get("ledger") != "global":
                p = {policy_type(p): dict(inner, ledger="global")}
            lines.append(to_line(p) + "\n")
        return "".join(lines)
