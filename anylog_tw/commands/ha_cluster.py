"""Cluster views (spec §4.5, §8.4): `get tsd list|summary|details|errors`, `get cluster info`,
`get data nodes`, `test cluster data`."""

from __future__ import annotations

import re

from twisted.internet.defer import Deferred, gatherResults

from anylog_tw.base import values
from anylog_tw.base.errors import AnyLogError, OptionError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.metadata import policies
from anylog_tw.metadata.layer import metadata
from anylog_tw.net.peers import Peers, canonical
from anylog_tw.services.ha_state import stamp
from anylog_tw.storage.engines import Databases

_TSD = re.compile(r"^tsd_(info|\d{1,9})$")

_TSD_OPTIONS = (
    Option("table", default="tsd_info", help="tsd_info, tsd_<member> or * (all TSD tables)"),
    Option("limit", kind="int", default=100, help="rows shown by details and errors (0 = all)"),
    Option("hash", help="only the file with this hash"),
    Option("start_date", kind="date", help="files registered since"),
    Option("end_date", kind="date", help="files registered before"),
    FORMAT,
)

SUMMARY = ("TSD", "DBMS", "Table", "Start Date", "From ID", "End Date", "To ID", "Files Count", "Source Count",
           "Status 1", "Status 2", "Total Rows")
DETAILS = ("TSD", "File ID", "DBMS", "Table", "Source", "Hash", "Instructions", "File Time", "Rows", "Status 1",
           "Status 2")


def _almgm(node):
    db = node.component(Databases).find("almgm")
    if db is None:
        raise ServiceError("dbms almgm is not connected (connect dbms almgm where type = sqlite)")
    return db


async def _tsd_tables(db, which: str) -> list[str]:
    have = sorted((t for t in await db.tables() if _TSD.match(t)), key=lambda t: (t != "tsd_info", t))
    if which == "*":
        return have
    if not _TSD.match(which):
        raise OptionError(f"table {which!r} is not a TSD table: use tsd_info, tsd_<member id> or *")
    return [which] if which in have else []


def _where(call) -> tuple[str, list]:
    now = call.node.reactor.seconds()
    conds, params = [], []
    if call.opts["hash"]:
        conds.append('"file_hash" = ?')
        params.append(call.opts["hash"])
    for name, op in (("start_date", ">="), ("end_date", "<")):
        if call.opts[name]:
            try:
                when = values.parse_date(call.opts[name], now)
            except Exception as e:
                raise OptionError(f"{name} {call.opts[name]!r} is not a date: {e}") from None
            conds.append(f'"file_time" {op} ?')
            params.append(stamp(when))
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


def _text(value) -> str:
    return "" if value is None else str(value)[:26] if not isinstance(value, (int, float)) else value


async def _tsd(call, topic: str):
    db = _almgm(call.node)
    which = call.opts["table"].lower() if topic != "list" or "table" in call.given else "*"
    tables = await _tsd_tables(db, which)
    where, params = _where(call)
    limit = call.opts["limit"]
    if limit < 0:
        raise OptionError("limit must be 0 (all) or more")
    if topic == "list":
        return Reply.of_table(("TSD table",), [[t] for t in tables], "TSD tables")
    rows: list[list] = []
    if topic == "summary":
        for t in tables:
            _, found = await db.query(
                f'SELECT "dbms_name", "table_name", min("file_time"), min("file_id"), max("file_time"), '
                f'max("file_id"), count(*), count(DISTINCT "source"), count(DISTINCT "status1"), '
                f'count(DISTINCT "status2"), sum("rows") FROM "{t}"{where} GROUP BY "dbms_name", "table_name" '
                f'ORDER BY "dbms_name", "table_name"', tuple(params))
            rows += [[t, r[0], r[1], _text(r[2]), r[3], _text(r[4]), r[5], r[6], r[7], r[8], r[9], int(r[10] or 0)]
                     for r in found]
        if call.opts["table"] == "*" and rows:
            rows.append(["*", "", "Total", "", "", "", "", sum(r[7] for r in rows), "", "", "",
                         sum(r[11] for r in rows)])
        return Reply.of_table(SUMMARY, rows, "TSD summary")
    extra = ""
    if topic == "errors":
        # a file recorded missing that arrived later is done: no longer an error
        extra = (" AND " if where else " WHERE ") + '"status1" IS NOT NULL AND "status1" <> \'\' AND ' \
            '("status2" IS NULL OR "status2" <> \'done\')'
    for t in tables:
        lim = f" LIMIT {int(limit) - len(rows)}" if limit else ""
        if limit and len(rows) >= limit:
            break
        _, found = await db.query(
            f'SELECT "file_id", "dbms_name", "table_name", "source", "file_hash", "instructions", "file_time", '
            f'"rows", "status1", "status2" FROM "{t}"{where}{extra} ORDER BY "file_id"{lim}', tuple(params))
        rows += [[t, r[0], r[1], r[2], r[3], r[4], r[5], _text(r[6]), r[7], r[8] or "", r[9] or ""] for r in found]
    return Reply.of_table(DETAILS, rows, "TSD errors" if topic == "errors" else "TSD details")


def _tsd_command(topic: str, text: str):
    @command(f"get tsd {topic}", grant="read",
             usage=f"get tsd {topic} where table = tsd_info|tsd_N|* [and limit = 100 and hash = H and "
                   f"start_date = D and end_date = D and format = json]",
             text=text, examples=(f"get tsd {topic} where table = *",), keywords=("tsd", "ha", "monitoring"),
             options=_TSD_OPTIONS, readonly=True)
    async def handler(call):
        return await _tsd(call, topic)

    handler.__name__ = f"get_tsd_{topic}"
    return handler


_tsd_command("summary", "Per TSD table and dbms.table: first and last file (date and id), files, sources, distinct "
                        "statuses and rows.")
_tsd_command("details", "The TSD rows (one per ingested file): id, dbms, table, source, hash, time, rows, statuses.")
_tsd_command("errors", "TSD rows with a status1 and not done (01: a file a member no longer had when this node "
                       "asked for it).")
_tsd_command("list", "The TSD tables of almgm (tsd_info and one tsd_<member> per cluster member).")


# --- cluster views ---------------------------------------------------------------------------------


async def _ledger(node):
    return (await metadata(node)).ledger


def _status(node, address: str | None, own: bool) -> str:
    if own:
        return "local"
    if not address:
        return "no address"

    st = node.component(Peers).states.get(canonical(address))
    return st.status if st is not None else "unknown"


def _cluster_tables(store, cluster: str) -> list[tuple[str, str]]:
    out = []
    for c in store.of_type("cluster"):
        if cluster in (policies.attr(c, "id"), policies.attr(c, "parent")):
            tables = policies.attr(c, "table") or []
            for t in tables if isinstance(tables, list) else [tables]:
                if isinstance(t, dict) and (t.get("dbms"), t.get("name")) not in out:
                    out.append((t.get("dbms"), t.get("name")))
    return out


@command("get cluster info", grant="read", usage="get cluster info [where format = json]",
         text="This operator's cluster: its id and member id, the operators of the cluster (address, member, "
              "connection status) and the tables the cluster hosts.",
         examples=("get cluster info",), keywords=("ha", "cluster", "monitoring"), options=(FORMAT,), readonly=True)
async def get_cluster_info(call):
    node = call.node
    op = node.process("Operator")
    if op is None or not op.config.cluster:
        raise ServiceError("this node is not an operator of a cluster (run operator where policy = <id>)")
    cluster, member = op.config.cluster, op.config.member
    store = await _ledger(node)
    ops = []
    for p in policies.operators_of_cluster(store, cluster):
        m = str(policies.attr(p, "member", ""))
        address = policies.ip_port(p)
        ops.append({"Name": policies.attr(p, "name", ""), "IP:Port": address or "", "Member": m,
                    "Status": _status(node, address, m == member)})
    tables = [f"{d}.{t}" for d, t in _cluster_tables(store, cluster)]
    if call.wants_json:
        return Reply.of_json({"Cluster ID": cluster, "Member ID": member, "Operators": ops, "Tables": tables})
    head = Reply.of_table(("Cluster ID", "Member ID", "Tables"), [[cluster, member, ", ".join(tables)]],
                          "Cluster").render()
    cols = ("Name", "IP:Port", "Member", "Status")
    body = Reply.of_table(cols, [[o[c] for c in cols] for o in ops], "Operators").render()
    return Reply.of_text(head + "\n\n" + body)


@command("get data nodes", grant="read", usage="get data nodes [where company = C and dbms = D and table = T and format = json]",
         text="Where each table's data is: per table, the clusters hosting it and their operators (member, "
              "address, status).",
         examples=("get data nodes", "get data nodes where dbms = lsl and table = ping"),
         keywords=("ha", "cluster", "metadata"),
         options=(Option("company"), Option("dbms"), Option("table"), FORMAT), readonly=True)
async def get_data_nodes(call):
    node = call.node
    store = await _ledger(node)
    o = call.opts
    own = node.process("Operator")
    own_key = (own.config.cluster, own.config.member) if own is not None else None
    rows = []
    for c in store.of_type("cluster"):
        if policies.attr(c, "parent"):
            continue
        cid = policies.attr(c, "id")
        company = policies.attr(c, "company", "")
        if o["company"] and company != o["company"]:
            continue
        for dbms, table in _cluster_tables(store, cid):
            if (o["dbms"] and dbms != o["dbms"]) or (o["table"] and table != o["table"]):
                continue
            for p in policies.operators_of_cluster(store, cid):
                m = str(policies.attr(p, "member", ""))
                address = policies.ip_port(p)
                rows.append([company, dbms, table, cid, policies.attr(c, "name", ""), m,
                             policies.attr(p, "name", ""), address or "",
                             _status(node, address, own_key == (cid, m))])
    rows.sort(key=lambda r: (r[1], r[2], r[3], r[5]))
    return Reply.of_table(("Company", "DBMS", "Table", "Cluster ID", "Cluster Name", "Member", "Operator",
                           "IP:Port", "Status"), rows, "Data nodes")


@command("test cluster data", grant="read", usage="test cluster data [where timeout = 10 seconds and format = json]",
         text="Ask every operator of this cluster (this one included) for its TSD summary and compare files and "
              "rows per table: the 'Same' column says whether every member holds the same.",
         examples=("test cluster data",), keywords=("ha", "cluster", "monitoring"),
         options=(Option("timeout", kind="seconds", default=10.0), FORMAT), readonly=True)
async def test_cluster_data(call):
    node = call.node
    op = node.process("Operator")
    if op is None or not op.config.cluster:
        raise ServiceError("this node is not an operator of a cluster (run operator where policy = <id>)")
    store = await _ledger(node)
    members = [(str(policies.attr(p, "member", "")), policies.ip_port(p))
               for p in policies.operators_of_cluster(store, op.config.cluster)]
    question = "get tsd summary where table = * and format = json"

    async def ask(member: str, address: str | None):
        try:
            if member == op.config.member:
                reply = await node.execute(question, call.origin.narrowed("read", "test cluster data"))
            elif not address:
                return member, address, "no address in its policy"
            else:
                reply = await node.component(Peers).command(address, question, timeout=call.opts["timeout"])
        except AnyLogError as e:
            return member, address, e.message
        data = reply.json_data()
        return member, address, data if reply.ok and isinstance(data, list) else (reply.text or "bad reply")

    answers = await gatherResults([Deferred.fromCoroutine(ask(m, a)) for m, a in members])
    totals: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    errors = []
    for member, address, data in answers:
        if isinstance(data, str):
            errors.append([member, address or "", data])
            continue
        for r in data:
            if r.get("TSD") == "*":
                continue
            key = (r.get("DBMS", ""), r.get("Table", ""))
            files, rows = totals.setdefault(key, {}).get(member, (0, 0))
            totals[key][member] = (files + int(r.get("Files Count") or 0), rows + int(r.get("Total Rows") or 0))
    out = []
    for (dbms, table), per in sorted(totals.items()):
        same = len(per) == len(members) and len(set(per.values())) == 1
        for member, _ in members:
            files, rows = per.get(member, (0, 0))
            out.append([dbms, table, member, files, rows, "yes" if same else "NO"])
    for member, address, why in errors:
        out.append(["", "", member, "", "", f"no answer from {address}: {why}"])
    return Reply.of_table(("DBMS", "Table", "Member", "Files", "Rows", "Same"), out, "Cluster data")
