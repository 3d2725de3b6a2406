"""Message ingestion commands: `run msg client`, `get msg clients`, `exit msg client`, `run message broker`,
`get local broker`, `exit broker`.  The work is in `anylog_tw.msg`; these read the words and answer."""

from __future__ import annotations

from anylog_tw.base.errors import CommandError, OptionError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands.files import path_check

KEYWORDS = ("mqtt", "messages", "data", "streaming")

_RUN_USAGE = ("run msg client where broker = <host|local|rest> [and port = P and user = U and password = PW and "
              "client_id = ID and log = false and log_error = true and qos = Q and keep_alive = S and "
              "clean_session = false and ssl = true and ca = F and cert = F and key = F and user-agent = A] and "
              "topic = (name = T and dbms = D and table = T and column.<name>.<type> = \"bring [..]\"|now|value "
              "[and column.<name> = (type = .. and value = .. and optional = true)] [and policy = ID] "
              "[and persist = true] [and qos = Q]) [and topic = (...)] | ... and master_node = ip:port and "
              "topic = (name = T and dbms = D and dynamic = true [and table_name_as_topic = true | table = T | "
              "table_prefix = P])")
_RUN_TEXT = ("Subscribe to topics of an MQTT broker (a host, 'local' for this node's own broker, or 'rest' for "
             "REST POSTs with 'command: data'), map each message to rows with the topic's rules or mapping policies, "
             "and stream the rows into the tables through the streaming buffers and the operator. Each call makes "
             "one numbered client. Topic names may use the + and # wildcards. A broker that goes away is redialled "
             "with backoff and the topics subscribed again. QoS 1 with clean_session = false (the default) keeps a "
             "persistent session under a stable client id (<node name>.<client number>): what the broker queued "
             "while the node was away arrives when it is back. log_error = true writes the messages that fail to "
             "err_dir with the broker, topic and reason. With dynamic = true a topic needs no rules: a JSON "
             "message's attributes are the columns (the first schema of a table wins), the table comes from the "
             "topic (its last segment, table_prefix_<last segment>, table, or the whole topic with "
             "table_name_as_topic = true), every topic path gets UNS policies (inserted at master_node when given), "
             "and plain values (not JSON objects) are written by 'run uns streamer'.")
_RUN_EXAMPLES = (
    "run msg client where broker = 127.0.0.1 and port = 1883 and log_error = true and topic = (name = test and "
    "dbms = \"bring [metadata][company]\" and table = \"bring [metadata][machine_name] _ [metadata][serial_number]\" "
    "and column.timestamp.timestamp = \"bring [ts]\" and column.value = (type = int and value = \"bring [value]\"))",
    "run msg client where broker = local and topic = (name = mqtt-test and dbms = my_dbms and table = rand_data and "
    "column.timestamp.timestamp = now and column.value.float = \"bring [readings][][value]\")",
    "run msg client where broker = rest and user-agent = anylog and topic = (name = opcua and dbms = \"bring [dbms]\" "
    "and table = \"bring [table]\" and column.timestamp.timestamp = \"bring [ts]\" and column.value.float = "
    "\"bring [value]\")",
    "run msg client where broker = 127.0.0.1 and port = 1883 and master_node = !ledger_conn and topic = "
    "(name = \"Plant/#\" and dbms = new_company and dynamic = true and table_name_as_topic = true)",
    "run msg client where broker = mqtt.example.com and port = 8883 and ssl = true and ca = !pem_dir/ca.crt and "
    "user = u1 and password = secret and topic = (name = plant/+/temp and qos = 1 and policy = telegraf-mapping)",
)


async def _run(call):
    from anylog_tw.msg.compile import compile_spec
    from anylog_tw.msg.options import read_client
    from anylog_tw.msg.service import start_client

    spec = read_client(list(call.tokens), call.substitute)
    check = path_check(call)  # its directories and TLS files: inside the home unless the owner asks
    spec.dirs.update({k: check(v) for k, v in spec.dirs.items()})
    for f in (spec.ca, spec.cert, getattr(spec, "key", "")):
        if f:
            check(f)
    mappers = await compile_spec(call.node, spec)
    _, text = await start_client(call.node, spec, mappers)
    return text


@command("run msg client", usage=_RUN_USAGE, text=_RUN_TEXT, examples=_RUN_EXAMPLES,
         keywords=KEYWORDS + ("background processes",), raw=True, grant="admin")
async def run_msg_client(call):
    return await _run(call)


@command("run mqtt client", usage=_RUN_USAGE.replace("msg", "mqtt", 1), text="The same as 'run msg client'.",
         examples=("run mqtt client where broker = local and topic = (name = t and dbms = d and table = t and "
                   "column.value.float = \"bring [value]\")",), keywords=KEYWORDS, raw=True, grant="admin")
async def run_mqtt_client(call):
    return await _run(call)


def _client_ids(call) -> list[int] | None:
    """`exit msg client N` / `all`: the ids (None = all)."""
    if len(call.args) != 1:
        raise OptionError("exit msg client needs a client number or 'all' (see 'get msg clients')")
    word = call.args[0].lower()
    if word == "all":
        return None
    try:
        return [int(word)]
    except ValueError:
        raise OptionError(f"exit msg client takes a client number or 'all', not {call.args[0]!r}") from None


async def _exit(call):
    from anylog_tw.msg.clients import MsgClients
    from anylog_tw.msg.service import end_client

    clients = call.node.component(MsgClients)
    ids = _client_ids(call)
    if ids is None:
        ids = sorted(clients.clients)
        if not ids:
            return "No message clients to stop"
    for client_id in ids:
        clients.get(client_id)  # an unknown id is an error before anything stops
    for client_id in ids:
        await end_client(call.node, client_id)
    return f"Message client{'s' if len(ids) > 1 else ''} {', '.join(f'#{i}' for i in ids)} stopped"


@command("exit msg client", usage="exit msg client <number>|all",
         text="Stop a message client (or all): it says DISCONNECT to its broker and its topics are freed.",
         examples=("exit msg client 3", "exit msg client all"), keywords=KEYWORDS, nargs=(1, 1), grant="admin")
async def exit_msg_client(call):
    return await _exit(call)


@command("exit mqtt client", usage="exit mqtt client <number>|all", text="The same as 'exit msg client'.",
         examples=("exit mqtt client all",), keywords=KEYWORDS, nargs=(1, 1), grant="admin")
async def exit_mqtt_client(call):
    return await _exit(call)


_GET_OPTIONS = (Option("id", kind="int", help="one client"), Option("topic", help="clients with this topic"),
                Option("broker", help="clients of this broker (host:port, local or rest)"),
                Option("detailed", kind="bool", default=False, help="also the directories in use"),
                Option("statistics", kind="bool", default=False, help="also a table per topic with totals"), FORMAT)


def _get(call):
    from anylog_tw.msg import status
    from anylog_tw.msg.clients import MsgClients

    node = call.node
    clients = list(node.component(MsgClients).clients.values())
    opts = call.opts
    if opts["id"] is not None:
        clients = [c for c in clients if c.id == opts["id"]]
    if opts["topic"]:
        clients = [c for c in clients if opts["topic"] in c.subscriptions]
    if opts["broker"]:
        clients = [c for c in clients if c.spec.address == opts["broker"].lower() or c.spec.address == opts["broker"]]
    if not clients:
        if any(opts[k] for k in ("id", "topic", "broker")):
            raise CommandError("No such client subscription")
        return Reply.of_json([]) if call.wants_json else "No message client subscriptions"
    now = node.reactor.seconds()

    def dirs(c):
        return {k: c.spec.dirs.get(k) or node.dirs.get(k, "") for k in ("prep_dir", "watch_dir", "err_dir")}

    if call.wants_json:
        return Reply.of_json([status.client_data(c, now, opts["detailed"], dirs(c)) for c in clients])
    return "\n\n".join(status.render_client(c, now, opts["statistics"], opts["detailed"], dirs(c)) for c in clients)


_GET_TEXT = ("Show the message clients: per client its id, user, broker and connection (with the reason and the next "
             "retry when it is down), messages, successes, errors and the last error; then its topics with the "
             "mapping rules (bring rules as lists, now() for the arrival time) and policies.")


@command("get msg clients", usage="get msg clients [where id = N | topic = T | broker = B | detailed = true | "
                                  "statistics = true] [and format = json]",
         text=_GET_TEXT, examples=("get msg clients", "get msg clients where id = 2 and statistics = true"),
         keywords=KEYWORDS + ("monitor",), options=_GET_OPTIONS, readonly=True, grant="read")
def get_msg_clients(call):
    return _get(call)


@command("get msg client", usage="get msg client [where id = N | topic = T | broker = B | detailed = true | "
                                 "statistics = true] [and format = json]",
         text="The same as 'get msg clients'.", examples=("get msg client where id = 1",),
         keywords=KEYWORDS + ("monitor",), options=_GET_OPTIONS, readonly=True, grant="read")
def get_msg_client(call):
    return _get(call)


@command("get mqtt clients", usage="get mqtt clients [where ...]", text="The same as 'get msg clients'.",
         examples=("get mqtt clients",), keywords=KEYWORDS + ("monitor",), options=_GET_OPTIONS, readonly=True,
         grant="read")
def get_mqtt_clients(call):
    return _get(call)


@command("get msg broker", usage="get msg broker [where format = json]",
         text="Show per broker and topic: the client, messages, successes and failures.",
         examples=("get msg broker",), keywords=KEYWORDS + ("monitor",), options=(FORMAT,), readonly=True,
         grant="read")
def get_msg_broker(call):
    from anylog_tw.msg import status
    from anylog_tw.msg.clients import MsgClients

    rows = status.broker_rows(list(call.node.component(MsgClients).clients.values()))
    if not rows:
        return "No clients assigned to brokers"
    return Reply.of_table(("Broker", "Topic", "Client ID", "Messages", "Success", "Failure"), rows)


@command("mqtt publish",
         usage="mqtt publish where broker = <host>|local [and port = 1883 and user = U and password = PW and "
               "ssl = true and ca = F] and topic = T [and qos = 0|1|2] and message = <text or !variable>",
         text="Publish one message. broker = local hands it to this node's 'broker = local' message client of the "
              "topic (no network; the reply says whether it was mapped). Any other broker gets a short MQTT "
              "session: connect, publish, wait for the acknowledgement at QoS 1 and 2, disconnect.",
         examples=("mqtt publish where broker = local and topic = mqtt-test and message = !message",
                   "mqtt publish where broker = 127.0.0.1 and port = 1883 and topic = test and qos = 1 and "
                   "message = '{\"value\": 210, \"ts\": 1607959427550}'"),
         keywords=KEYWORDS,
         options=(Option("broker", required=True), Option("port", kind="int", default=1883), Option("user"),
                  Option("password"), Option("ssl", kind="bool", default=False), Option("ca"),
                  Option("topic", required=True), Option("qos", kind="int", default=0),
                  Option("message", required=True)),
         grant="write")
async def mqtt_publish(call):
    from anylog_tw.msg.clients import MsgClients
    from anylog_tw.msg.options import ClientSpec, LOCAL
    from anylog_tw.msg.publish import publish_remote
    from anylog_tw.msg.topics import check_filter

    opts = call.opts
    if opts["qos"] not in (0, 1, 2):
        raise OptionError(f"qos must be 0, 1 or 2, not {opts['qos']}")
    topic = check_filter(opts["topic"])
    if "+" in topic or "#" in topic:
        raise OptionError(f"a message is published to one topic, not to the filter {topic!r}")
    payload = opts["message"].encode("utf-8")
    broker = opts["broker"].strip()
    spec = ClientSpec(broker=broker.lower() if broker.lower() == LOCAL else broker, port=opts["port"],
                      user=opts["user"] or "unused", password=opts["password"] or "", ssl=opts["ssl"],
                      ca=opts["ca"] or "")
    if spec.broker == LOCAL:  # the node's own address goes through the network (and get local broker counts it)
        reason = call.node.component(MsgClients).deliver_local(topic, payload)
        if reason is not None:
            raise CommandError(f"topic {topic!r}: {reason}")
        return f"Published to the local message clients, topic {topic!r}"
    return await publish_remote(call.node.reactor, spec, topic, payload, opts["qos"], call.node.name)
