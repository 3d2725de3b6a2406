"""What the page shows, read by running the node's own commands with the caller's origin.

The page has no back door into the node: its data comes from `get status`, `get processes`,
`get connections`, `get ingest rate`, `get tables`, `get databases` and `blockchain get`, run
through `node.execute` like any REST call, so the security model judges the page's reads exactly as
it judges the same commands typed at a prompt.  A section whose command fails (a grant refused, a
dbms gone) carries the error and the others still show.

Three cadences keep the cost of an open page low: `live` (status, processes, peers, table counts)
every 2 seconds, `rates` (the hour of buckets per table) every 10 seconds, `network` (the
metadata picture and the local tables) every 30 seconds.
"""

from __future__ import annotations

from typing import Any

from anylog_tw.front.web.netmap import render_svg

LIVE = (
    ("status", "get status where format = json"),
    ("processes", "get processes where format = json"),
    ("connections", "get connections where format = json"),
    ("tables", "get ingest rate where series = false and format = json"),
)
RATES = "get ingest rate where format = json"
POLICIES = "blockchain get (master, query, publisher, operator, cluster, table)"
LOCAL_TABLES = "get tables where dbms = * and format = json"
DATABASES = "get databases where format = json"


async def run_data(node, text: str, origin: str) -> Any:
    """The JSON data of a command's reply, or {"error": message} when it failed."""
    reply = await node.execute(text, origin)
    if not reply.ok:
        return {"error": reply.text or "failed"}
    return reply.json_data()


def _failed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"error"}


async def live(node, origin: str) -> dict:
    """Status, processes, peers and per-table counts (every poll)."""
    out = {}
    for key, text in LIVE:
        out[key] = await run_data(node, text, origin)
    connections = out.pop("connections")
    out["peers"] = connections if _failed(connections) else connections.get("peers", [])
    return out


async def rates(node, origin: str) -> Any:
    return await run_data(node, RATES, origin)


def own_address(status: Any) -> str:
    """`name@ip:port` from `get status` -> `ip:port`."""
    if isinstance(status, dict):
        assigned = str(status.get("assigned_name", ""))
        return assigned.split("@", 1)[1] if "@" in assigned else ""
    return ""


def peer_states(peers: Any) -> dict[str, str]:
    if not isinstance(peers, list):
        return {}
    return {str(p.get("Peer", "")): str(p.get("Status", "")) for p in peers if isinstance(p, dict)}


async def network(node, origin: str, status: Any = None, peers: Any = None) -> dict:
    """The metadata picture (SVG text) and the local tables."""
    if status is None:
        status = await run_data(node, "get status where format = json", origin)
    if peers is None:
        connections = await run_data(node, "get connections where format = json", origin)
        peers = [] if _failed(connections) else connections.get("peers", [])
    policies = await run_data(node, POLICIES, origin)
    tables = await run_data(node, LOCAL_TABLES, origin)
    if _failed(policies):
        svg, error = render_svg([]), policies["error"]
    else:
        svg, error = render_svg(policies if isinstance(policies, list) else [], own_address(status),
                                peer_states(peers)), None
    local = [] if _failed(tables) else [[t.get("Database"), t.get("Table name")] for t in tables]
    return {"svg": svg, "error": error, "local_tables": local}


async def databases(node, origin: str) -> list[str]:
    data = await run_data(node, DATABASES, origin)
    if not isinstance(data, list):
        return []
    return [str(d.get("Logical DBMS")) for d in data if isinstance(d, dict) and d.get("Logical DBMS")]


def table_rows(rates_data: Any, local_tables: list) -> list[dict]:
    """The tables section: every table with ingest counts, and the local ones without any yet."""
    rows: dict[tuple[str, str], dict] = {}
    if isinstance(rates_data, dict):
        for t in rates_data.get("tables", []):
            rows[(t["dbms"], t["table"])] = t
    for dbms, table in local_tables:
        if dbms in ("almgm", "system_query") or not table:
            continue
        rows.setdefault((dbms, table), {"dbms": dbms, "table": table, "rows": 0, "files": 0, "errors": 0,
                                        "rate_minute": 0, "rate_hour": 0, "last": ""})
    return [rows[k] for k in sorted(rows)]
