"""The metadata network as a picture: clusters, their operators, and the tables each cluster hosts.

A pure function from policies (as `blockchain get` answers them) to SVG text, drawn by hand: the
picture is a few boxes in bands, one band per cluster (cluster on the left, its operators in the
middle, its tables on the right), with the other nodes (master, query, publisher) in a row on top.
A layout library would add a dependency and a build step for what is a list with lines; the
server draws it, so the page shows it at first render and the browser runs no layout code.

Operators are coloured by what this node knows of them: itself, a peer it reaches (active), a peer
that does not answer, or one it has not talked to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

ROW = 26  # height of a node box
GAP = 8
BAND_GAP = 18
CHIP_W, CHIP_H, CHIPS_PER_LINE = 150, 20, 3
X_CLUSTER, W_CLUSTER = 10, 190
X_OPERATOR, W_OPERATOR = 250, 210
X_TABLES = 520
WIDTH = X_TABLES + CHIPS_PER_LINE * (CHIP_W + GAP) + 10
OTHER_TYPES = ("master", "query", "publisher")

STATUS_CLASS = {"self": "self", "active": "up", "not responding": "down"}


@dataclass
class Band:
    """One cluster (or the "no cluster" rest) and what belongs to it."""

    name: str
    cid: str
    operators: list[dict] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


def _body(policy: dict) -> tuple[str, dict]:
    kind, inner = next(iter(policy.items()))
    return kind, inner if isinstance(inner, dict) else {}


def _address(inner: dict) -> str:
    ip, port = inner.get("ip"), inner.get("port")
    return f"{ip}:{port}" if ip and port not in (None, "") else ""


def _hosted(cluster: dict) -> list[str]:
    tables = cluster.get("table")
    if isinstance(tables, dict):
        tables = [tables]
    out = []
    if isinstance(tables, list):
        for t in tables:
            if isinstance(t, dict) and t.get("name"):
                out.append(f"{t.get('dbms', '?')}.{t['name']}")
    elif cluster.get("dbms"):
        out.append(f"{cluster['dbms']}.*")
    return out


def bands(policies: list[dict]) -> tuple[list[Band], list[tuple[str, dict]]]:
    """(one band per cluster, plus one for what has no cluster; the other nodes as (type, policy body))."""
    clusters: dict[str, Band] = {}
    parents: dict[str, str] = {}
    others: list[tuple[str, dict]] = []
    operators: list[dict] = []
    table_policies: list[str] = []
    for policy in policies:
        if not isinstance(policy, dict) or not policy:
            continue
        kind, inner = _body(policy)
        if kind == "cluster":
            cid = str(inner.get("id", ""))
            parent = inner.get("parent")
            if parent:  # a child cluster policy adds tables to its parent
                parents[cid] = str(parent)
                band = clusters.setdefault(str(parent), Band(str(parent)[:8], str(parent)))
            else:
                band = clusters.setdefault(cid, Band(str(inner.get("name") or cid[:8]), cid))
                band.name = str(inner.get("name") or band.name)
            band.tables += [t for t in _hosted(inner) if t not in band.tables]
        elif kind == "operator":
            operators.append(inner)
        elif kind == "table":
            if inner.get("name"):
                table_policies.append(f"{inner.get('dbms', '?')}.{inner['name']}")
        elif kind in OTHER_TYPES:
            others.append((kind, inner))
    loose = Band("no cluster", "")
    for op in operators:
        cid = str(op.get("cluster", ""))
        cid = parents.get(cid, cid)
        (clusters[cid] if cid in clusters else loose).operators.append(op)
    hosted = {t for b in clusters.values() for t in b.tables}
    loose.tables = sorted(t for t in dict.fromkeys(table_policies) if t not in hosted)
    out = sorted(clusters.values(), key=lambda b: b.name.lower())
    if loose.operators or loose.tables:
        out.append(loose)
    return out, others


def _box(x: float, y: float, w: float, h: float, cls: str, label: str, title: str, kind: str) -> str:
    shown = label if len(label) <= 28 else label[:27] + "\u2026"
    return (f'<g class="nm-{cls}" data-kind="{kind}"><title>{escape(title)}</title>'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4"/>'
            f'<text x="{x + 8}" y="{y + h / 2 + 4}">{escape(shown)}</text></g>')


def _line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<path class="nm-edge" d="M{x1},{y1} C{(x1 + x2) / 2},{y1} {(x1 + x2) / 2},{y2} {x2},{y2}"/>'


def operator_state(address: str, own: str, peers: dict[str, str]) -> str:
    if address and address == own:
        return "self"
    return STATUS_CLASS.get(peers.get(address, ""), "unknown")


def render_svg(policies: list[dict], own_address: str = "", peers: dict[str, str] | None = None) -> str:
    """The network as an SVG document (no XML declaration: it is inlined in the page)."""
    peers = peers or {}
    groups, others = bands(policies)
    parts: list[str] = []
    y = 10
    if others:
        x = X_CLUSTER
        for kind, inner in others:
            address = _address(inner)
            name = str(inner.get("name") or address or kind)
            w = 200
            if x + w > WIDTH:
                x = X_CLUSTER
                y += ROW + GAP
            state = operator_state(address, own_address, peers)
            parts.append(_box(x, y, w, ROW, f"node {state}", f"{kind}: {name}", f"{kind} {name} {address}".strip(),
                              kind))
            x += w + GAP
        y += ROW + BAND_GAP
    for band in groups:
        lines = max(1, -(-len(band.tables) // CHIPS_PER_LINE))
        height = max(ROW, len(band.operators) * (ROW + GAP) - GAP, lines * (CHIP_H + 4) - 4)
        mid = y + height / 2
        cluster_cls = "cluster" if band.cid else "cluster loose"
        parts.append(_box(X_CLUSTER, mid - ROW / 2, W_CLUSTER, ROW, cluster_cls, band.name,
                          f"cluster {band.name} {band.cid}".strip(), "cluster"))
        for i, op in enumerate(band.operators):
            oy = y + i * (ROW + GAP)
            address = _address(op)
            name = str(op.get("name") or address or "operator")
            state = operator_state(address, own_address, peers)
            parts.append(_line(X_CLUSTER + W_CLUSTER, mid, X_OPERATOR, oy + ROW / 2))
            parts.append(_box(X_OPERATOR, oy, W_OPERATOR, ROW, f"node {state}", name,
                              f"operator {name} {address} ({state})", "operator"))
        if band.tables:
            parts.append(_line(X_CLUSTER + W_CLUSTER, mid, X_TABLES - 6, mid))
            for i, table in enumerate(band.tables):
                cx = X_TABLES + (i % CHIPS_PER_LINE) * (CHIP_W + GAP)
                cy = y + (i // CHIPS_PER_LINE) * (CHIP_H + 4)
                shown = table if len(table) <= 21 else table[:20] + "\u2026"
                parts.append(f'<g class="nm-table" data-kind="table"><title>{escape(table)}</title>'
                             f'<rect x="{cx}" y="{cy}" width="{CHIP_W}" height="{CHIP_H}" rx="9"/>'
                             f'<text x="{cx + 8}" y="{cy + 14}">{escape(shown)}</text></g>')
        y += height + BAND_GAP
    if not groups and not others:
        parts.append(f'<text class="nm-empty" x="{X_CLUSTER}" y="30">No clusters, operators or tables in the '
                     f'metadata yet.</text>')
        y = 50
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="netmap" role="img" width="{WIDTH}" height="{y}" '
            f'viewBox="0 0 {WIDTH} {y}"><title>The metadata network</title>{"".join(parts)}</svg>')
