"""What this node is made of (spec §8.4): `get ip list`, `get tcp|rest|operator pool`,
`get system threads`, `get metadata info`.  Reads only this node; the plain-data parts live in
`anylog_tw/commands/_probes.py`.
"""

from __future__ import annotations

import threading

from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands import _probes as diag
from anylog_tw.commands.diagnostics import local_ledger


@command("get ip list", grant="read", usage="get ip list [where format = json]",
         text="Every address of this machine (interface, IPv4/IPv6, address) and which dictionary keys name it: "
              "'ip' (the local address) and 'external_ip' (the one peers are told). A dictionary address that is "
              "not on this machine (behind NAT, or a mistake) is listed as '(not local)'.",
         examples=("get ip list", "get ip list where format = json"), keywords=("network", "configuration"),
         options=(FORMAT,), readonly=True)
async def get_ip_list(call):
    addresses = await call.node.in_thread(diag.interface_addresses)
    rows = diag.ip_rows(addresses, call.node.dictionary)
    return Reply.of_table(("Interface", "Family", "Address", "Dictionary Key"), rows)


POOL_COLUMNS = ("Pool", "Configured", "Min", "Max", "Threads", "Busy", "Idle", "Waiting")
_POOL_TEXT = (" This node is not AnyLog's set of worker pools: one reactor thread does all network I/O and runs "
              "every command; blocking work (files, parsing) goes to the reactor's thread pool, whose real state "
              "this shows (threads alive, busy, idle, and work waiting for a thread). 'Configured' is the threads "
              "value the process was started with.")


def _reactor_pool(node):
    get = getattr(node.reactor, "getThreadPool", None)
    return get() if get is not None else None


def _pool_reply(label: str, configured, pool) -> Reply:
    stats = diag.pool_stats(pool)
    return Reply.of_table(POOL_COLUMNS, [[label, configured, *stats.values()]])


@command("get tcp pool", grant="read", usage="get tcp pool [where format = json]",
         text="The threads that serve peer messages." + _POOL_TEXT + " TCP's 'threads' is kept for AnyLog scripts.",
         examples=("get tcp pool", "get tcp pool where format = json"), keywords=("monitor", "network"),
         options=(FORMAT,), readonly=True)
def get_tcp_pool(call):
    tcp = call.node.process("TCP")
    return _pool_reply("reactor thread pool", tcp.threads if tcp is not None else "not running",
                       _reactor_pool(call.node))


@command("get rest pool", grant="read", usage="get rest pool [where format = json]",
         text="The threads that serve REST calls." + _POOL_TEXT + " REST's 'threads' is kept for AnyLog scripts.",
         examples=("get rest pool", "get rest pool where format = json"), keywords=("monitor", "rest"),
         options=(FORMAT,), readonly=True)
def get_rest_pool(call):
    rest = call.node.process("REST")
    return _pool_reply("reactor thread pool", rest.api.config.threads if rest is not None else "not running",
                       _reactor_pool(call.node))


@command("get operator pool", grant="read", usage="get operator pool [where details = true and format = json]",
         text="The operator's own thread pool (two threads per worker: one prepares a file while the other archives "
              "the previous one); 'Configured' is the operator's threads (files in hand at once). Inserts run on "
              "each dbms's own thread (get system threads). With details = true, also the files in hand and those "
              "waiting in the queue.",
         examples=("get operator pool", "get operator pool where details = true",
                   "get operator pool where format = json"), keywords=("monitor", "operator"),
         options=(FORMAT, Option("details", kind="bool", default=False, help="also list the files in hand")),
         readonly=True)
def get_operator_pool(call):
    op = call.node.process("Operator")
    if op is None:
        return _pool_reply("operator", "not running", None)
    pool = _pool_reply("operator", op.config.threads, op.pool)
    if not call.opts.get("details"):
        return pool
    files = [[name, "in hand"] for name in sorted(op.in_hand)] + [[name, "queued"] for name in list(op.queue)]
    listing = Reply.of_table(("File", "State"), files, "Files")
    if call.wants_json:
        return Reply.of_json({"Pool": pool.json_data(), "Files": listing.json_data()})
    return Reply.of_text(pool.render() + "\n\n" + listing.render())


@command("get system threads", grant="read", usage="get system threads [where format = json]",
         text="Every thread of the node's process: name, id, daemon, and its role (the reactor thread, the reactor's "
              "thread pool, a dbms's thread, the operator's pool).",
         examples=("get system threads", "get system threads where format = json"), keywords=("monitor",),
         options=(FORMAT,), readonly=True)
def get_system_threads(call):
    rows = diag.thread_rows(threading.enumerate(), threading.get_ident())
    return Reply.of_table(("Thread", "ID", "Daemon", "Role"), rows)


@command("get metadata info", grant="read", usage="get metadata info [where format = json]",
         text="What this node knows of its metadata: the version (the MD5 of the ledger file), policies and their "
              "count by type, those still local (not yet on the master), lines skipped at load, the file and when "
              "it changed, and the source: the master (with the synchronizer's status and last load) or the file "
              "alone.",
         examples=("get metadata info", "get metadata info where format = json"),
         keywords=("metadata", "monitor"), options=(FORMAT,), readonly=True)
async def get_metadata_info(call):
    node = call.node
    ledger = await local_ledger(node)
    facts = await node.in_thread(diag.file_facts, ledger.path)
    info = diag.metadata_info(ledger, facts, node.process("Blockchain Sync"))
    rows = [[k, v] for k, v in info.items() if k != "Policies by type"]
    rows[2:2] = [[f"Policies: {t}", n] for t, n in info["Policies by type"].items()]
    return Reply.of_table(("Key", "Value"), rows, data=info)
