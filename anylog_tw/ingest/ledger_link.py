"""What the operator asks the metadata layer, behind one small class.

The operator needs four things from the metadata: its own policy (cluster and member), a `table`
policy to create a table from, a `mapping` policy for the `instructions` segment, and a way to
publish the table policies it infers and the cluster child policy that assigns a table to its
cluster.  An operator without an operator policy has member 0 and no cluster, creates tables
from the data and assigns them to no cluster.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from anylog_tw.base.errors import CommandError
from anylog_tw.metadata import policies
from anylog_tw.metadata.layer import Metadata, metadata
from anylog_tw.metadata.rules import DuplicatePolicy


class LedgerLink:
    log = Logger()

    def __init__(self, meta: Metadata):
        self.meta = meta

    @classmethod
    async def open(cls, node) -> "LedgerLink":
        """The link over the node's metadata, loaded."""
        return cls(await metadata(node))

    async def operator(self, policy_id: str | None) -> tuple[str, str, str]:
        """(cluster id, member, company) of the operator policy; errors name what to fix."""
        if not policy_id:
            return "", "0", ""
        found = self.meta.ledger.by_id(policy_id)
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
        return policies.table_policy(self.meta.ledger, dbms, table)

    def mapping_policy(self, policy_id: str) -> dict | None:
        return policies.mapping_policy(self.meta.ledger, policy_id)

    def hosts(self, cluster: str, dbms: str, table: str) -> bool:
        return not cluster or cluster in policies.clusters_hosting(self.meta.ledger, dbms, table)

    async def publish(self, policy: dict[str, Any]) -> None:
        """Add a policy to the local ledger; the synchronizer delivers local policies to the master.

        Publishing is a courtesy to the network: a policy that is already there is fine, and any
        other failure is logged, never a reason to fail the file.
        """
        try:
            await self.meta.add(policy, "local")
        except DuplicatePolicy:
            pass
        except Exception:
            self.log.failure("publishing a {kind} policy failed", kind=next(iter(policy)))

    async def publish_table(self, dbms: str, table: str, create: str, source: str) -> None:
        if self.table_policy(dbms, table) is None:
            await self.publish({"table": {"name": table, "dbms": dbms, "create": create, "source": source}})

    async def assign_table(self, cluster: str, dbms: str, table: str, source: str) -> None:
        """Publish the cluster child policy that says this operator's cluster hosts the table."""
        if not cluster or self.hosts(cluster, dbms, table):
            return
        parent = self.meta.ledger.by_id(cluster) or {}
        inner = parent.get("cluster", {}) if isinstance(parent, dict) else {}
        await self.publish({"cluster": {"parent": cluster, "name": inner.get("name", ""),
                                        "company": inner.get("company", ""),
                                        "table": [{"dbms": dbms, "name": table}], "source": source}})
