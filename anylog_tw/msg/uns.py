"""UNS policies: the topic paths that dynamic subscriptions see, as a tree in the metadata.

A message on `Plant/CX1/Motor1` mapped to `mydb.motor1` gives (once per node, whatever the
number of messages) the policies

    {"uns": {"name": "Plant", "namespace": "Plant", "uns_layer": "root"}}
    {"uns": {"name": "CX1", "namespace": "Plant/CX1", "uns_layer": "namespace", "parent": <id>}}
    {"uns": {"name": "Motor1", "namespace": "Plant/CX1/Motor1", "uns_layer": "table", "parent": <id>,
             "dbms": "mydb", "table": "motor1"}}

and a plain value on `Plant/Line1/temperature` makes `Plant/Line1` the table's node and
`Plant/Line1/temperature` a `column` node naming its column.  A policy already in the ledger
(same namespace; same dbms, table and column for a leaf) is reused, so two nodes subscribing to
the same tree share it once the metadata is synchronized.  Policies are inserted as `blockchain
insert` does: into the local ledger, and to the client's `master_node` when it has one (else the
synchronizer pushes them).  As AnyLog's docs warn, a path gets its policies even when its
messages later fail to insert.

Creating them is a courtesy to the network, off the message path: a failure is logged and
written to the error log, never a reason to refuse a message.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from anylog_tw.metadata.layer import metadata

REMEMBERED = 65536  # paths known to be done; past this the set starts again (the ledger still has them)
# Topic paths given policies by one node run: a device publishing to ever new topics must not
# grow the network's metadata without end.  Past it, messages are still taken, without policies.
MAX_PATHS = 10_000


class UnsPolicies:
    """The node's UNS policies for dynamic topics (a node component)."""

    log = Logger()

    def __init__(self, node):
        self.node = node
        self._done: set[tuple] = set()
        self._pending: dict[tuple, Deferred] = {}  # one insert of a namespace at a time
        self.paths = 0  # topic paths this run asked policies for

    def note(self, parts: list[str], dbms: str, table: str, column: str | None = None, master: str = "") -> None:
        """A topic path a dynamic topic mapped to (dbms, table[, column]): its policies, made in the background."""
        key = (tuple(parts), dbms, table, column)
        if key in self._done or not parts:
            return
        if self.paths >= MAX_PATHS:
            if self.paths == MAX_PATHS:
                self.paths += 1
                self.node.errors.add("msg client", "uns policy", f"more than {MAX_PATHS:,} topic paths since the node "
                                     f"started: no more UNS policies are made (the messages are still taken)")
            return
        self.paths += 1
        if len(self._done) >= REMEMBERED:
            self._done.clear()
        self._done.add(key)
        d = Deferred.fromCoroutine(self._ensure(list(parts), dbms, table, column, master))
        d.addErrback(self._failed, "/".join(parts))

    def _failed(self, failure, path: str) -> None:
        self._done = {k for k in self._done if "/".join(k[0]) != path}  # try again on its next message
        self.log.failure("UNS policies of {path} were not made", failure, path=path)
        self.node.errors.add("msg client", "uns policy", f"{path}: {failure.getErrorMessage()}")

    async def _ensure(self, parts: list[str], dbms: str, table: str, column: str | None, master: str) -> list[str]:
        meta = await metadata(self.node)
        ids: list[str] = []
        table_depth = len(parts) - 1 if column is not None else len(parts)
        for depth in range(1, len(parts) + 1):
            attrs: dict = {}
            if depth == table_depth:
                attrs = {"dbms": dbms, "table": table}
            elif depth > table_depth:
                attrs = {"dbms": dbms, "table": table, "column": column}
            layer = ("column" if depth > table_depth else "table" if depth == table_depth
                     else "root" if depth == 1 else "namespace")
            ids.append(await self._one(meta, parts[:depth], layer, ids[-1] if ids else "", attrs, master))
        return ids

    async def _one(self, meta, parts: list[str], layer: str, parent: str, attrs: dict, master: str) -> str:
        namespace = "/".join(parts)
        key = (namespace, tuple(sorted(attrs.items())))
        while key in self._pending:  # another message's insert of the same node: wait for it, then look
            await self._pending[key]
        found = find(meta.ledger.equal("uns", "namespace", namespace), namespace, attrs)
        if found:
            return found
        done: Deferred = Deferred()
        self._pending[key] = done
        try:
            policy = {"name": parts[-1], "namespace": namespace, "uns_layer": layer, **attrs}
            if parent:
                policy["parent"] = parent
            stored, failure = await meta.insert({"uns": policy}, True, master)
            if failure:
                self.node.errors.add("msg client", "uns policy", f"{namespace} kept local: {failure}")
            return stored["uns"]["id"]
        finally:
            del self._pending[key]
            done.callback(None)


def find(candidates, namespace: str, attrs: dict) -> str:
    """The id of the UNS policy of `namespace` with exactly these dbms/table/column, or ''."""
    for policy in candidates:
        inner = policy.get("uns") if isinstance(policy, dict) else None
        if not isinstance(inner, dict) or inner.get("namespace") != namespace:
            continue
        if all(inner.get(k) == v for k, v in attrs.items()) and (attrs or "table" not in inner):
            return str(inner.get("id", ""))
    return ""
