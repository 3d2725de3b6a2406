"""What `get msg clients`, `get msg broker` and `get local broker` show, as pure functions.

Layouts follow AnyLog's (spec §8, §10): a block per client (id, user, broker, connection), its
counters, then one line per column rule of each topic, with bring rules shown as lists
(`['[readings][][value]']`) and `now()` for the arrival time.
"""

from __future__ import annotations

from typing import Any

from anylog_tw.base.reply import render_table
from anylog_tw.base.timefmt import format_utc
from anylog_tw.msg.broker import BrokerStats
from anylog_tw.msg.clients import MsgClient, Subscription
from anylog_tw.msg.options import LOCAL, REST, Rule
from anylog_tw.msg.stats import Counts

COUNT_COLUMNS = ("Messages", "Success", "Errors", "Last message time", "Last error time", "Last Error")
TOPIC_COLUMNS = ("Topic", "Dynamic", "QOS", "DBMS", "Table", "Column name", "Column Type", "Mapping Function",
                 "Optional", "Policies")
STAT_COLUMNS = ("Topic", "Success", "Failure", "Last Error Time", "Last Error")
BROKER_COLUMNS = ("Protocol", "IP", "Event", "Success", "Last message time", "Error", "Last error time",
                  "Error Code", "Details")


stamp = format_utc


def _rule(rule: Rule | None) -> str:
    return "" if rule is None else rule.shown()


def connection_text(client: MsgClient, now: float) -> str:
    if client.spec.broker == LOCAL:
        return "Connected to local Message Server"
    if client.spec.broker == REST:
        return f"Taking REST POSTs with User-Agent {client.spec.user_agent}"
    return client.connection.text(now) if client.connection is not None else "Not connected"


def counts_row(counts: Counts) -> list[Any]:
    return [counts.messages, counts.success, counts.errors, stamp(counts.last_message), stamp(counts.last_error_at),
            counts.last_error]


def _dynamic_table(t) -> str:
    """How a dynamic topic names its tables, by AnyLog's precedence (msg/dynamic.table_name)."""
    if t.table_name_as_topic:
        return "<topic path>"
    if t.table is not None:
        return _rule(t.table)
    return f"{t.table_prefix}_<last segment>" if t.table_prefix else "<last segment>"


def topic_rows(sub: Subscription) -> list[list[Any]]:
    t = sub.topic
    head = [t.name, t.dynamic, t.qos, _rule(t.dbms), _dynamic_table(t) if t.dynamic else _rule(t.table)]
    policies = ", ".join(t.policies)
    if t.persist:
        return [head + ["", "", "persist", "", policies]]
    if not t.columns:
        return [head + ["", "", "dynamic" if t.dynamic else "" if t.policies else "log", "", policies]]
    rows = []
    for i, c in enumerate(t.columns):
        first = head if i == 0 else [""] * len(head)
        rows.append(first + [c.name, _rule(c.type), _rule(c.value), c.optional, policies if i == 0 else ""])
    return rows


def client_data(client: MsgClient, now: float, detailed: bool = False, dirs: dict | None = None) -> dict:
    spec = client.spec
    data = {
        "Subscription ID": client.label, "User": spec.user, "Broker": spec.address,
        "Connection": connection_text(client, now),
        **dict(zip(COUNT_COLUMNS, counts_row(client.counts))),
        "Topics": [{"Topic": s.topic.name, "Dynamic": s.topic.dynamic, "QOS": s.topic.qos, "DBMS": _rule(s.topic.dbms),
                    "Table": _dynamic_table(s.topic) if s.topic.dynamic else _rule(s.topic.table),
                    "Columns": [{"Column name": c.name, "Column Type": _rule(c.type),
                                 "Mapping Function": _rule(c.value), "Optional": c.optional} for c in s.topic.columns],
                    "Policies": list(s.topic.policies), "Persist": s.topic.persist,
                    **dict(zip(("Success", "Failure"), (s.counts.success, s.counts.errors))),
                    "Last Error": s.counts.last_error} for s in client.topics()],
    }
    if client.connection is not None:
        data["Client ID"] = client.link.client_id if client.link is not None else ""
        data["Sessions"] = client.connection.connects
        data["Redeliveries dropped"] = client.link.redeliveries.dropped if client.link is not None else 0
    if detailed and dirs is not None:
        data["Directories"] = dirs
    return data


def render_client(client: MsgClient, now: float, statistics: bool = False, detailed: bool = False,
                  dirs: dict | None = None) -> str:
    spec = client.spec
    lines = [f"Subscription ID: {client.label}", f"User:            {spec.user}", f"Broker:          {spec.address}",
             f"Connection:      {connection_text(client, now)}"]
    if client.link is not None:
        lines.append(f"Client ID:       {client.link.client_id} (clean session: {spec.clean_session}; sessions: "
                     f"{client.connection.connects}; redeliveries dropped: {client.link.redeliveries.dropped})")
    if detailed and dirs:
        lines += [f"{k + ':':<17}{v}" for k, v in dirs.items()]
    lines.append("")
    lines.append(render_table(COUNT_COLUMNS, [counts_row(client.counts)]))
    lines.append("Subscribed Topics:")
    rows = [row for sub in client.topics() for row in topic_rows(sub)]
    lines.append(render_table(TOPIC_COLUMNS, rows))
    if statistics:
        stats = [[s.topic.name, s.counts.success, s.counts.errors, stamp(s.counts.last_error_at), s.counts.last_error]
                 for s in client.topics()]
        if client.unmatched.messages:
            u = client.unmatched
            stats.append(["(no subscription)", 0, u.errors, stamp(u.last_error_at), u.last_error])
        total = [sum(r[1] for r in stats), sum(r[2] for r in stats)]
        stats.append(["Total", *total, "", ""])
        lines.append("Statistics:")
        lines.append(render_table(STAT_COLUMNS, stats))
    return "\n".join(lines)


def broker_rows(clients: list[MsgClient]) -> list[list[Any]]:
    """`get msg broker`: Broker, Topic, Client ID, Messages, Success, Failure."""
    rows = []
    for client in clients:
        for sub in client.topics():
            rows.append([client.spec.address, sub.topic.name, client.label, sub.counts.messages, sub.counts.success,
                         sub.counts.errors])
    return rows


def local_broker_rows(stats: BrokerStats) -> list[list[Any]]:
    rows = []
    for (protocol, ip, event), s in sorted(stats.rows.items()):
        rows.append([protocol, ip, event, s.success, stamp(s.last_message), s.errors, stamp(s.last_error_at),
                     s.error_code, s.details])
    return rows
