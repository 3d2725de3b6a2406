"""What the operator asks the metadata layer, behind one small class that works without a ledger.

The operator needs four things from the metadata (issue 5): its own policy (cluster and
member), a `table` policy to create a table from, a `mapping` policy for the `instructions`
segment, and a way to publish the table policies it infers and the cluster child policy that
assigns a table to its cluster.  A node without the metadata layer (or without a ledger file)
still ingests: it has member 0, no cluster, creates tables from the data and publishes nothing.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from anylog_tw.base.errors import CommandError


def _layer():
    """The metadata layer's modules (issue 5), or (None, None) on a node without them."""
    try:
        from anylog_tw.metadata import policies
        from anylog_tw.metadata.layer import metadata
    except ImportError:  # pragma: no cover
        return None, None
    return policies, metadata


class LedgerLink:
    log = Logger()

    def __init__(self, node):
        self.node = node
        self.meta = None
        self._policies = None

    @property
    def available(self) -> bool:
        return self.meta is not None

    async def open(self) -> None:
        policies, metadata = _layer()
        if metadata is not None and self.meta is None:
            self._policies = policies
            self.meta = await metadata(self.node)

    def _store(self):
        return self.meta.ledger if self.meta is not None else None

    async def operator(self, policy_id: str | None) -> tuple[str, str, str]:
        """(cluster id, member, company) of the operator policy; errors name what to fix."""
        if not policy_id:
            return "", "0", ""
        await self.open()
        store = self._store()
        if store is None:
            raise CommandError(f"operator policy {policy_id!r} cannot be resolved: this node has no metadata layer")
        found = store.by_id(policy_id)
        if found is None:
            raise CommandError(f"no policy with id {policy_id!r} in the ledger (check 'blockchain get operator')")
        if "operator" not in found:
            raise CommandError(f"policy {policy_id!r} is a {next(iter(found))!r} policy, not an operator policy")
        inner = found["operator"]
        member = inner.get("member")
        if member is None or not str(member).isdigit():
            raise CommandError(f"operator policy {policy_id!r} has no numeric 'member' (insert it with "
                               f"'blockchain insert' so it gets one)")
        return str(inner.get("cluster") or ""), str(int(member)), str(inner.get("company") or "")

    def table_policy(self, dbms: str, table: str) -> dict | None:
        store = self._store()
        return self._policies.table_policy(store, dbms, table) if store is not None else None

    def mapping_policy(self, policy_id: str) -> dict | None:
        store = self._store()
        return self._policies.mapping_policy(store, policy_id) if store is not None else None

    def hosts(self, cluster: str, dbms: str, table: str) -> bool:
        store = self._store()
        return store is None or not cluster or cluster in self._policies.clusters_hosting(store, dbms, table)

    async def publish(self, policy: dict[str, Any]) -> None:
        """Add a policy to the local ledger; the synchronizer delivers local policies to the master."""
        if self.meta is None:
            return
        try:
            await self.meta.add(policy, "local")
        except Exception as e:  # a policy that is already there is fine; anything else is logged
            if "already" not in str(e).lower():
                self.log.error("publishing a {kind} policy failed: {error}", kind=next(iter(policy)), error=e)

    async def publish_table(self, dbms: str, table: str, create: str, source: str) -> None:
        if self.meta is not None and self.table_policy(dbms, table) is None:
            await self.publish({"table": {"name": table, "dbms": dbms, "create": create, "source": source}})

    async def assign_table(self, cluster: str, dbms: str, table: str, source: str) -> None:
        """Publish the cluster child policy that says this operator's cluster hosts the table."""
        if self.meta is None or not cluster or self.hosts(cluster, dbms, table):
            return
        parent = self.meta.ledger.by_id(cluster) or {}
        inner = parent.get("cluster", {}) if isinstance(parent, dict) else {}
        await self.publish({"cluster": {"parent": cluster, "name": inner.get("name", ""),
                                        "company": inner.get("company", ""),
                                        "table": [{"dbms": dbms, "name": table}], "source": source}})
