"""Where the publisher sends a file: the routing rule, as pure functions over data.

The rule, in order (docs/publisher.md says the same for users):

1. **Distribution rules** (`set data distribution`): a rule for `dbms.table`, else one for
   `dbms.*`, names destinations.  The file goes to one of them: the destinations are ranked for
   the file (by its hash, see below) and the first live one takes it, so the files spread evenly
   over the destinations and move to the next one when one is down.
2. **The metadata**: the clusters that host the table (a cluster policy, or a child cluster
   policy naming it as `parent`, lists the table).  Clusters with no operator policy are left
   out.  Several clusters mean the table is partitioned: the clusters are ranked for the file's
   hash and the first takes it.  The choice ignores which operators are up, so a file always
   belongs to the same partition; when that cluster has no live operator the file waits.
3. **A table nobody hosts yet**: the clusters that have a live operator are ranked for the
   table (`dbms.table`, not the file), so every file of the table goes to the same cluster until
   its operator publishes the assignment and rule 2 takes over.
4. **Within a cluster** the operators are ranked for the table and the first live one takes the
   file: one operator of the cluster receives all of a table's files (HA copies them to the
   others), and the next one in the ranking takes over while it is down.
5. Nothing found (no rule, no operator at all, or every candidate down): the file waits.

Ranking is rendezvous hashing (highest random weight): each candidate gets the weight
`md5(key | candidate)` and they are taken in decreasing weight.  It is deterministic (every
publisher makes the same choice), even (each candidate wins about 1/n of the keys), and adding or
removing a candidate only moves the keys that candidate wins or loses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from anylog_tw.metadata import policies

ANY_TABLE = "*"

Rules = Mapping[tuple[str, str], tuple[str, ...]]  # (dbms, table or "*") -> destinations


def weight(key: str, candidate: str) -> int:
    """The rendezvous weight of `candidate` for `key` (64 bits of an md5)."""
    digest = hashlib.md5(f"{key}|{candidate}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def rank(key: str, candidates: Iterable[str]) -> list[str]:
    """The candidates (each once) in decreasing weight for `key`; ties broken by name."""
    unique = dict.fromkeys(candidates)
    return sorted(unique, key=lambda c: (-weight(key, c), c))


# --- distribution rules -------------------------------------------------------------------------


def add_rule(rules: Rules, dbms: str, table: str, dests: Sequence[str]) -> dict:
    """The rules with `dests` added to the rule of (dbms, table) (created if new)."""
    out = dict(rules)
    out[(dbms, table)] = tuple(dict.fromkeys(tuple(out.get((dbms, table), ())) + tuple(dests)))
    return out


def remove_rule(rules: Rules, dbms: str, table: str, dests: Sequence[str] = ()) -> dict:
    """The rules without `dests` in the rule of (dbms, table); without dests, without the rule.

    A rule left with no destination is dropped.
    """
    out = dict(rules)
    if (dbms, table) not in out:
        return out
    left = tuple(d for d in out[(dbms, table)] if dests and d not in dests)
    if left:
        out[(dbms, table)] = left
    else:
        del out[(dbms, table)]
    return out


def rule_for(rules: Rules, dbms: str, table: str) -> tuple[str, ...] | None:
    """The destinations of the rule for dbms.table, else of dbms.*, else None."""
    found = rules.get((dbms, table))
    if found:
        return tuple(found)
    found = rules.get((dbms, ANY_TABLE))
    return tuple(found) if found else None


# --- the decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """What the metadata says about one table.

    `hosting`: the clusters that host the table (in ledger order), each with its operators'
    addresses; `clusters`: every cluster that has operators, for a table nobody hosts.
    """

    hosting: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    clusters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """Where a file goes: `target` (None when it must wait, with the `reason`).

    `how` is rule, metadata, unhosted or none; `candidates` are the addresses that could take the
    file, best first (the ones to probe when all are down).
    """

    how: str
    target: str | None
    cluster: str | None = None
    candidates: tuple[str, ...] = ()
    reason: str = ""


def _first_live(ranked: Sequence[str], live: Callable[[str], bool]) -> str | None:
    for c in ranked:
        if live(c):
            return c
    return None


def route(dbms: str, table: str, file_key: str, rules: Rules, topology: Topology,
          live: Callable[[str], bool]) -> Route:
    """The destination of one file of dbms.table whose hash is `file_key` (see the module doc)."""
    table_key = f"{dbms}.{table}"
    dests = rule_for(rules, dbms, table)
    if dests:
        ranked = rank(file_key, dests)
        target = _first_live(ranked, live)
        reason = "" if target else f"every destination of the distribution rule is down ({', '.join(ranked)})"
        return Route("rule", target, None, tuple(ranked), reason)
    hosting = {c: ops for c, ops in topology.hosting.items() if ops}
    if hosting:
        cluster = rank(file_key, hosting)[0]
        ranked = rank(table_key, hosting[cluster])
        target = _first_live(ranked, live)
        reason = "" if target else f"every operator of cluster {cluster} is down ({', '.join(ranked)})"
        return Route("metadata", target, cluster, tuple(ranked), reason)
    if topology.hosting:
        clusters = ", ".join(topology.hosting)
        return Route("none", None, None, (), f"the clusters hosting {table_key} ({clusters}) have no operator policy")
    clusters = {c: ops for c, ops in topology.clusters.items() if ops}
    if not clusters:
        return Route("none", None, None, (), f"no cluster hosts {table_key} and the metadata names no operator "
                                             f"in a cluster")
    up = [c for c in clusters if any(live(a) for a in clusters[c])]
    if not up:
        candidates = tuple(dict.fromkeys(a for c in rank(table_key, clusters) for a in rank(table_key, clusters[c])))
        return Route("unhosted", None, None, candidates,
                     f"no cluster hosts {table_key} yet and no cluster has a live operator")
    cluster = rank(table_key, up)[0]
    ranked = rank(table_key, clusters[cluster])
    return Route("unhosted", _first_live(ranked, live), cluster, tuple(ranked))


# --- the topology from policies -----------------------------------------------------------------


def topology(store, dbms: str, table: str, all_clusters: Mapping[str, tuple[str, ...]] | None = None) -> Topology:
    """The Topology of dbms.table in a store of policies (the ledger, or a query.MemoryStore)."""
    hosting = {}
    for cid in policies.clusters_hosting(store, dbms, table):
        ops = [policies.ip_port(p) for p in policies.operators_of_cluster(store, cid)]
        hosting[cid] = tuple(dict.fromkeys(a for a in ops if a))
    return Topology(hosting, all_clusters if all_clusters is not None else clusters_with_operators(store))


def clusters_with_operators(store) -> dict[str, tuple[str, ...]]:
    """{cluster id: operator addresses} of every operator policy that names a cluster."""
    out: dict[str, list[str]] = {}
    for p in store.of_type("operator"):
        cid = policies.attr(p, "cluster")
        address = policies.ip_port(p)
        if cid and address and address not in out.setdefault(cid, []):
            out[cid].append(address)
    return {c: tuple(a) for c, a in out.items()}
