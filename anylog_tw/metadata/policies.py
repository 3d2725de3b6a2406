"""Questions other areas ask the metadata, as small functions over a store of policies.

`store` is the node's ledger (`(await metadata(node)).ledger`) or any `query.MemoryStore`.  All
of these are pure and fast (they use the ledger's indexes), so they can run per file or per query:

    from anylog_tw.metadata import policies
    policies.clusters_hosting(ledger, "lsl", "ping")        # cluster ids that host lsl.ping
    policies.operators_of_cluster(ledger, cluster_id)       # its operator policies (replicas)
    policies.operators_hosting(ledger, "lsl", "ping")       # {cluster id: [operator policies]}
    policies.table_policy(ledger, "lsl", "ping")            # the `table` policy or None
    policies.mapping_policy(ledger, "rnd_val")              # the `mapping` policy with that id, or None
    policies.master_address(ledger)                         # "ip:port" of the master policy, or None
    policies.ip_port(policy)                                # "ip:port" of a node policy

A table belongs to a cluster when the cluster policy (or a child cluster policy, whose `parent`
names the cluster) lists `{"dbms": d, "name": t}` in its `table` attribute, or when the cluster
names the dbms alone (`"dbms": d`, every table of that dbms).
"""

from __future__ import annotations

from typing import Sequence

from anylog_tw.metadata.values import Store, body


def attr(policy: dict, name: str, default=None):
    return body(policy).get(name, default)


def ip_port(policy: dict, local: bool = False) -> str | None:
    """`ip:port` of a node policy (`local_ip` first when `local`); None without an address."""
    inner = body(policy)
    ip = (inner.get("local_ip") if local else None) or inner.get("ip")
    port = inner.get("port")
    if not ip or port in (None, ""):
        return None
    return f"{ip}:{port}"


def _hosts(cluster: dict, dbms: str, table: str) -> bool:
    tables = attr(cluster, "table")
    if isinstance(tables, dict):
        tables = [tables]
    if isinstance(tables, list):
        for t in tables:
            if isinstance(t, dict) and t.get("dbms") == dbms and t.get("name") == table:
                return True
    return attr(cluster, "dbms") == dbms and not tables


def clusters_hosting(store: Store, dbms: str, table: str) -> list[str]:
    """Ids of the clusters that host dbms.table, in ledger order, each once.

    Several clusters mean the table is partitioned across them; a child cluster policy counts
    for its parent.
    """
    out: list[str] = []
    for c in store.of_type("cluster"):
        if _hosts(c, dbms, table):
            cid = attr(c, "parent") or attr(c, "id")
            if cid and cid not in out:
                out.append(cid)
    return out


def operators_of_cluster(store: Store, cluster_id: str) -> list[dict]:
    """The operator policies of a cluster (its replicas), in ledger order."""
    found = store.equal("operator", "cluster", cluster_id)
    if found is None:
        found = store.of_type("operator")
    return [p for p in found if attr(p, "cluster") == cluster_id]


def operators_hosting(store: Store, dbms: str, table: str) -> dict[str, list[dict]]:
    """{cluster id: [operator policies]} for every cluster that hosts dbms.table."""
    return {cid: operators_of_cluster(store, cid) for cid in clusters_hosting(store, dbms, table)}


def table_policy(store: Store, dbms: str, table: str) -> dict | None:
    found = store.equal("table", "name", table)
    for p in (found if found is not None else store.of_type("table")):
        if attr(p, "name") == table and attr(p, "dbms") == dbms:
            return p
    return None


def mapping_policy(store: Store, mapping_id: str) -> dict | None:
    found = store.equal("mapping", "id", mapping_id)
    for p in (found if found is not None else store.of_type("mapping")):
        if attr(p, "id") == mapping_id:
            return p
    return None


def master_address(store: Store) -> str | None:
    masters: Sequence[dict] = store.of_type("master")
    for p in reversed(list(masters)):  # the most recent master policy wins
        address = ip_port(p)
        if address:
            return address
    return None
