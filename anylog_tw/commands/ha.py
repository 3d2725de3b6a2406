"""HA commands: `run ha` (and its halves `run data distributor` / `run data consumer`), `exit ha`,
`get ha`, `set consumer mode`, and the two requests members send each other (`get ha files`,
`ha deliver`).  The cluster views (`get cluster info`, `get data nodes`, `get tsd ...`,
`test cluster data`) are in `ha_cluster.py`."""

from __future__ import annotations

from anylog_tw.base import values
from anylog_tw.base.errors import CommandError, OptionError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.metadata import policies
from anylog_tw.metadata.layer import metadata
from anylog_tw.net.peers import canonical
from anylog_tw.services import ha_pull, ha_state
from anylog_tw.services.ha import HA, HAConfig
from anylog_tw.storage.engines import Databases

PROCESS = "HA"

_RUN_OPTIONS = (
    Option("start_date", kind="date", default="-7d", help="how far back the pull compares (e.g. -7d, -3h, a date)"),
    Option("push_interval", kind="seconds", default=1.0, help="seconds between push ticks (files also wake it)"),
    Option("pull_interval", kind="seconds", default=30.0, help="seconds between pulls from each member"),
    Option("stale", kind="seconds", default=600.0,
           help="a TSD row not done after this long is passed by the push (the members' pull covers it)"),
    Option("grace", kind="seconds", default=10.0,
           help="the pull asks only for files registered longer ago than this (younger ones are the push's)"),
    Option("end_date", kind="date", help="accepted for compatibility (the window always ends now - grace)"),
    Option("mode", choices=("active", "suspend"), default="active", help="consumer: active or suspend"),
    Option("distr_dir", help="accepted for compatibility (files are sent from the archive)"),
    Option("archive_dir", help="accepted for compatibility (the operator's archive_dir is used)"),
    Option("cluster_id", help="accepted for compatibility (the cluster comes from the operator policy)"),
)


async def _start(call, push: bool, pull: bool) -> str:
    node = call.node
    o = call.opts
    try:
        values.parse_date(o["start_date"], node.reactor.seconds())
    except Exception as e:
        raise OptionError(f"start_date {o['start_date']!r} is not a date: {e}") from None
    for name in ("push_interval", "pull_interval"):
        if o[name] <= 0:
            raise OptionError(f"{name} must be positive")
    running = node.process(PROCESS)
    if running is not None:
        if (not push or running.push is not None) and (not pull or running.pull is not None):
            node.check_free(PROCESS)
        running.enable(push, pull)
        return "HA: " + running.details()
    op = node.process("Operator")
    if op is None:
        raise ServiceError("HA replicates what the operator ingests: start it first "
                           "('run operator where policy = <id of this node's operator policy>')")
    if not op.config.cluster:
        raise ServiceError("the operator has no cluster: start it with 'run operator where policy = <id>' "
                           "naming an operator policy with a cluster")

    almgm = node.component(Databases).find("almgm")
    if almgm is None:
        raise CommandError("HA records every file in almgm: connect it first "
                           "('connect dbms almgm where type = sqlite')")
    await almgm.create_tsd_table("tsd_info")
    meta = await metadata(node)
    config = HAConfig(push=push, pull=pull, start_date=o["start_date"], push_interval=o["push_interval"],
                      pull_interval=o["pull_interval"], stale=o["stale"], grace=o["grace"])
    service = HA(config, meta)
    node.add_process(service)
    if service.pull is not None and o["mode"] == "suspend":
        service.pull.active = False
    return "HA started: " + service.details()


@command("run ha", grant="admin", usage="run ha [where start_date = -7d and pull_interval = 30 seconds]",
         text="Keep the operators of this node's cluster identical: every file the local operator ingests from a "
              "device is sent (from the archive, with its 8-segment name) to every other operator of the cluster, "
              "tracked per member and persisted in almgm.ha_push; and this node asks each member for the files of "
              "the window (start_date) missing from its tsd_<member> tables. Implies update_tsd_info and "
              "archive_json on the operator.",
         examples=("run ha", "run ha where start_date = -30d"),
         keywords=("ha", "background processes", "cluster"), options=_RUN_OPTIONS)
async def run_ha(call):
    return await _start(call, True, True)


@command("run data distributor", grant="admin", usage="run data distributor",
         text="The push half of 'run ha': send each file the local operator ingested to the other operators of "
              "the cluster.", examples=("run data distributor",),
         keywords=("ha", "background processes"), options=_RUN_OPTIONS)
async def run_distributor(call):
    return await _start(call, True, False)


@command("run data consumer", grant="admin", usage="run data consumer [where start_date = -7d and mode = active]",
         text="The pull half of 'run ha': ask the other operators of the cluster for the files of the window "
              "missing here.", examples=("run data consumer where start_date = -3d",),
         keywords=("ha", "background processes"), options=_RUN_OPTIONS)
async def run_consumer(call):
    return await _start(call, False, True)


@command("exit ha", grant="admin", usage="exit ha", text="Stop HA (push and pull); copies in flight are resent after 'run ha'.",
         examples=("exit ha",), keywords=("ha", "background processes"))
async def exit_ha(call):
    await call.node.stop_process(PROCESS)
    return "HA stopped"


@command("set consumer mode", grant="admin", usage="set consumer mode = active|suspend",
         text="Pause (suspend) or resume (active) the pull requests of HA.",
         examples=("set consumer mode = suspend",), keywords=("ha",), raw=True)
def set_consumer_mode(call):
    words = call.remainder.replace("=", " ").split()
    if len(words) != 1 or words[0].lower() not in ("active", "suspend"):
        raise OptionError("usage: set consumer mode = active|suspend")
    ha = call.node.process(PROCESS)
    if ha is None or ha.pull is None:
        raise ServiceError("the data consumer is not running (run ha, or run data consumer)")
    ha.pull.active = words[0].lower() == "active"
    return f"Consumer mode: {words[0].lower()}"


@command("get ha", grant="read", usage="get ha [where format = json]",
         text="Per member of the cluster: push (files pending, in flight, last file acknowledged, lag in files and "
              "seconds, failures) and pull (files requested, received, recorded missing).",
         examples=("get ha", "get ha where format = json"), keywords=("ha", "monitoring"), options=(FORMAT,),
         readonly=True)
def get_ha(call):
    ha = call.node.process(PROCESS)
    if ha is None:
        return Reply.of_table(("Status",), [["Not running (start it with 'run ha')"]], "HA")
    now = call.node.reactor.seconds()
    push = ha.push.status_rows(now) if ha.push is not None else []
    pull = ha.pull.status_rows() if ha.pull is not None else []
    if call.wants_json:
        return Reply.of_json({"Cluster": ha.cluster, "Member": ha.member, "Details": ha.details(),
                              "Push": push, "Pull": pull})
    parts = [f"HA: {ha.details()}"]
    if ha.push is not None:
        cols = ("Member", "Name", "Address", "Status", "Files pending", "In flight", "Last acked", "Acked at",
                "Lag files", "Lag seconds", "Failures", "Last error")
        parts.append(Reply.of_table(cols, [[r[c] for c in cols] for r in push], "Push").render())
    if ha.pull is not None:
        cols = ("Member", "Address", "Pulls", "Requested", "Received", "Missing", "Last pull", "Last error")
        parts.append(Reply.of_table(cols, [[r[c] for c in cols] for r in pull], "Pull").render())
    return Reply.of_text("\n\n".join(parts))


# --- what members ask each other ---------------------------------------------------------------


def _local(node):
    """(almgm, archive dir, member) of this node's operator, for serving its files."""
    op = node.process("Operator")
    if op is None:
        raise ServiceError("no operator runs on this node: it has no files to serve")
    almgm = node.component(Databases).find("almgm")
    if almgm is None:
        raise ServiceError("dbms almgm is not connected on this node")
    return almgm, op.config.archive_dir, op.config.member, op.config.cluster


@command("get ha files", grant="read", usage="get ha files where start_date = DATE [and end_date = DATE and format = json]",
         text="The ids of the files this operator registered (done) since start_date (and before end_date), as "
              "ranges: what a member's pull compares with its tsd_<member> table.",
         examples=("get ha files where start_date = -7d and format = json",), keywords=("ha",),
         options=(Option("start_date", kind="date", default="-7d"), Option("end_date", kind="date"), FORMAT),
         readonly=True)
async def get_ha_files(call):
    almgm, _, member, _ = _local(call.node)
    now = call.node.reactor.seconds()
    dates = {}
    for name in ("start_date", "end_date"):
        if call.opts[name]:
            try:
                dates[name] = values.parse_date(call.opts[name], now)
            except Exception as e:
                raise OptionError(f"{name} {call.opts[name]!r} is not a date: {e}") from None
    ids = await ha_pull.list_files(almgm, dates["start_date"], dates.get("end_date"))
    return Reply.of_json({"member": member, "count": len(ids), "ids": ha_state.format_ranges(ids)})


@command("ha deliver", grant="write", usage="ha deliver where ids = 1,4,7-12 and to = ip:port",
         text="Send the archived files with these tsd_info ids to the watch dir of a member of this cluster; the "
              "reply lists the files sent and those no longer archived (the member records them as missing).",
         examples=("ha deliver where ids = 1-20 and to = 10.0.0.2:32048",), keywords=("ha",),
         options=(Option("ids", required=True), Option("to", required=True)))
async def ha_deliver(call):
    almgm, archive_dir, member, cluster = _local(call.node)
    try:
        ids = ha_state.parse_ranges(call.opts["ids"])
    except ValueError as e:
        raise OptionError(f"ids: {e}") from None
    to = canonical(call.opts["to"])
    meta = await metadata(call.node)
    members = {canonical(a) for p in policies.operators_of_cluster(meta.ledger, cluster) if cluster
               for a in (policies.ip_port(p), policies.ip_port(p, local=True)) if a}
    if to not in members:
        raise CommandError(f"{to} is not an operator of cluster {cluster or '(none)'}: files are only delivered to "
                           f"members of this node's cluster")
    return Reply.of_json(await ha_pull.deliver(call.node, almgm, archive_dir, member, ids, to))
