"""The node as an MQTT broker: `run message broker`, `get local broker`, `exit broker`."""

from __future__ import annotations

from twisted.internet.error import CannotListenError

from anylog_tw.base.errors import OptionError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply

KEYWORDS = ("mqtt", "messages", "background processes")
BACKLOG = 1024


@command("run message broker",
         usage="run message broker where external_ip = IP and external_port = P [and internal_ip = IP and "
               "internal_port = P and bind = true|false and threads = N and user = U and password = PW] | "
               "run message broker <external_ip> <external_port> [<internal_ip> <internal_port>] [threads]",
         text="Make the node an MQTT 3.1.1 broker: devices publish to it (QoS 0, 1 and 2) and the 'broker = local' "
              "message clients map what arrives into tables. Publishes are not forwarded to MQTT subscribers. "
              "Without user and password only loopback clients may connect; with them, every CONNECT must carry "
              "them. It listens on the internal port when given (else the external one; 0 picks a free port), on "
              "every interface unless bind = true.",
         examples=("run message broker !external_ip 7850 !ip 7850",
                   "run message broker where external_ip = !ip and external_port = 1883 and user = dev and "
                   "password = secret"),
         keywords=KEYWORDS, nargs=(0, 5),
         options=(Option("external_ip"), Option("external_port", kind="int"), Option("internal_ip"),
                  Option("internal_port", kind="int"), Option("bind", kind="bool", default=False),
                  Option("threads", kind="int", default=6, help="kept for AnyLog scripts; the reactor serves all"),
                  Option("user", help="the user devices must give"), Option("password", help="its password")),
         grant="admin")
async def run_message_broker(call):
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

    from anylog_tw.front.tcpserver import listen_plan
    from anylog_tw.msg.broker import BrokerFactory, BrokerStats, MessageBroker
    from anylog_tw.msg.clients import MsgClients

    node = call.node
    if node.process(MessageBroker.name) is not None:
        raise ServiceError("the message broker is already running (stop it first with 'exit broker')")
    opts = dict(call.opts)
    names = ("external_ip", "external_port", "internal_ip", "internal_port", "threads")
    for name, value in zip(names, call.args):
        if name in call.given:
            raise OptionError(f"'{name}' is given both by position and in the where clause")
        if name.endswith("port") or name == "threads":
            try:
                value = int(value)
            except ValueError:
                raise OptionError(f"{name} must be a whole number, not {value!r}") from None
        opts[name] = value
    if bool(opts["user"]) != bool(opts["password"]):
        raise OptionError("give both user and password, or neither (then only loopback clients may connect)")
    plan = listen_plan(opts["external_ip"], opts["external_port"], opts["internal_ip"], opts["internal_port"],
                       opts["bind"], node.dictionary.get("ip", "127.0.0.1"))
    clients = node.component(MsgClients)
    factory = BrokerFactory(clients.deliver_local, BrokerStats(node.reactor),
                            {opts["user"]: opts["password"]} if opts["user"] else None,
                            flush=clients.streamer.flush_waiting)
    endpoint_class = TCP6ServerEndpoint if ":" in (plan.bind_ip or "") else TCP4ServerEndpoint
    endpoint = endpoint_class(node.reactor, plan.port, backlog=BACKLOG, interface=plan.bind_ip or "")
    try:
        port = await endpoint.listen(factory)
    except CannotListenError as e:
        raise ServiceError(f"the message broker cannot listen on {plan.bind_ip or '0.0.0.0'}:{plan.port}: "
                           f"{e.socketError}") from None
    bound = port.getHost().port
    service = MessageBroker(port, factory, (plan.external_ip, plan.external_port or bound),
                            (plan.internal_ip, plan.internal_port or bound))
    node.add_process(service)
    clients.collector.broker = factory.stats
    return f"Message broker {service.details()[len('Listening on: '):]}"


@command("exit broker", usage="exit broker", text="Stop the node's MQTT broker and close its sessions.",
         examples=("exit broker",), keywords=KEYWORDS, grant="admin")
async def exit_broker(call):
    if call.node.process("Broker") is None:
        raise ServiceError("the message broker is not running")
    from anylog_tw.msg.clients import MsgClients

    stats = call.node.process("Broker").factory.stats
    await call.node.stop_process("Broker")
    collector = call.node.component(MsgClients).collector
    collector.retire_broker(stats)
    collector.broker = None
    return "Message broker stopped"


def _local_broker(call):
    from anylog_tw.msg import status

    broker = call.node.process("Broker")
    if broker is None:
        raise ServiceError("the message broker is not running (start it with 'run message broker')")
    rows = status.local_broker_rows(broker.factory.stats)
    host, port = broker.address
    return Reply.of_table(status.BROKER_COLUMNS, rows,
                          title=f"Message Broker Stat ({host or '0.0.0.0'}:{port}, "
                                f"{len(broker.factory.sessions)} sessions)")


@command("get local broker", usage="get local broker [where format = json]",
         text="Show the events of the node's MQTT broker per client IP: CONNECT, PUBLISH, SUBSCRIBE ... with "
              "successes, errors, the last error code and its details (a publish nobody subscribes to is an error "
              "naming its topic).",
         examples=("get local broker",), keywords=KEYWORDS + ("monitor",), options=(FORMAT,), readonly=True,
         grant="read")
def get_local_broker(call):
    return _local_broker(call)


@command("get broker", usage="get broker [where format = json]", text="The same as 'get local broker'.",
         examples=("get broker",), keywords=KEYWORDS + ("monitor",), options=(FORMAT,), readonly=True, grant="read")
def get_broker(call):
    return _local_broker(call)
