"""`run msg client where ...`: the command's words read into a `ClientSpec`, as pure functions.

The language is AnyLog's (spec §2): connection keys, then one or more `topic = (...)` blocks,
each with its own keys and `column.<name>.<type> = rule` or `column.<name> = (type = .. and
value = .. [and optional = true])` rules.  Everything is checked here, before anything
connects, so a typo is an error naming the key, never a client that silently maps nothing.
Values arrive with the node's `!variables` already resolved (`resolve` is handed in).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable

from anylog_tw.base import grammar
from anylog_tw.base.convert import ConversionError, data_name
from anylog_tw.base.errors import GrammarError, OptionError
from anylog_tw.base.grammar import GROUP, JSON, STRING, WORD, Token
from anylog_tw.base.values import parse_bool
from anylog_tw.msg.topics import check_filter

LOCAL, REST = "local", "rest"
DEFAULT_PORT = 1883
KEEP_ALIVE = 60

# A column's types in the `column.<name>.<type>` form (AnyLog's docs; EdgeLake lacks bool).
COLUMN_TYPES = ("str", "int", "float", "timestamp", "bool")

CLIENT_KEYS = ("broker", "port", "user", "password", "client_id", "log", "log_error", "qos", "keep_alive",
               "clean_session", "ssl", "ca", "cert", "key", "user-agent", "prep_dir", "watch_dir", "err_dir",
               "only_log", "master_node", "topic")
TOPIC_KEYS = ("name", "qos", "dbms", "table", "policy", "persist", "dynamic", "table_prefix", "table_name_as_topic")
# Keys AnyLog knows that this node does not do (yet): refused by name rather than ignored.
NOT_SUPPORTED = {
    "project_id": "cloud IoT JWT authentication", "private_key": "cloud IoT JWT authentication",
    "location": "cloud IoT JWT authentication", "blockchain": "blockchain platforms (use master_node = ip:port)",
    "bwatch_dir": "blob mapping", "blobs_dir": "blob mapping",
}


@dataclass(frozen=True)
class Rule:
    """Where a value comes from: a bring over the message, the time of arrival, or a literal."""

    kind: str  # "bring", "now" or "literal"
    text: str  # the bring text (without the word bring), or the literal

    def shown(self) -> str:
        """As `get msg clients` shows a mapping function: ['[a][b]'], now() or the literal."""
        if self.kind == "bring":
            return repr([self.text])
        return "now()" if self.kind == "now" else self.text


@dataclass(frozen=True)
class ColumnRule:
    name: str
    type: Rule  # usually a literal type name; a bring takes it from the message
    value: Rule
    optional: bool = False


@dataclass(frozen=True)
class TopicSpec:
    name: str
    qos: int
    dbms: Rule | None = None
    table: Rule | None = None
    columns: tuple[ColumnRule, ...] = ()
    policies: tuple[str, ...] = ()  # mapping policy ids
    persist: bool = False
    # Dynamic (UNS) mode: the table from the topic, the columns from the message (msg/dynamic.py).
    dynamic: bool = False
    table_prefix: str = ""
    table_name_as_topic: bool = False
    # The dbms, table and column.* options as written (variables resolved), for the ingest mapper:
    # a column group is a dict of its keys.
    rules: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class ClientSpec:
    broker: str  # a host, LOCAL or REST
    port: int = DEFAULT_PORT
    user: str = "unused"
    password: str = ""
    client_id: str = ""
    log: bool = False
    log_error: bool = False
    qos: int = 0
    keep_alive: int = KEEP_ALIVE
    clean_session: bool = False
    ssl: bool = False
    ca: str = ""
    cert: str = ""
    key: str = ""
    user_agent: str = ""
    only_log: bool = False
    master_node: str = ""  # ip:port where dynamic topics' UNS policies are inserted
    dirs: dict = field(default_factory=dict)  # prep_dir / watch_dir / err_dir given to this client
    topics: tuple[TopicSpec, ...] = ()

    @property
    def broker_id(self) -> str:
        """AnyLog's name of the broker in file names: host and port with '.' and ':' as '_'."""
        base = self.broker if self.broker in (LOCAL, REST) else f"{self.broker}:{self.port}"
        return re.sub(r"[.:]", "_", base)

    @property
    def address(self) -> str:
        return self.broker if self.broker in (LOCAL, REST) else f"{self.broker}:{self.port}"


def read_rule(text: str) -> Rule:
    """`bring [a][b]` → a bring; `now` (or `now()`) → the arrival time; anything else is a literal."""
    stripped = text.strip()
    low = stripped.lower()
    if low.startswith("bring ") or low.startswith("bring["):
        body = stripped[5:].strip()
        if not body:
            raise OptionError(f"{text!r}: 'bring' needs the keys to take, e.g. 'bring [value]'")
        return Rule("bring", body)
    if low in ("now", "now()"):
        return Rule("now", "")
    return Rule("literal", stripped)


def _qos(text: str, where: str) -> int:
    try:
        qos = int(text)
    except ValueError:
        raise OptionError(f"{where}: qos must be 0, 1 or 2, not {text!r}") from None
    if qos not in (0, 1, 2):
        raise OptionError(f"{where}: qos must be 0, 1 or 2, not {qos}")
    return qos


def _bool(text: str, key: str) -> bool:
    try:
        return parse_bool(text)
    except (GrammarError, ValueError):
        raise OptionError(f"{key} must be true or false, not {text!r}") from None


def _int(text: str, key: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise OptionError(f"{key} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise OptionError(f"{key} must be between {low} and {high}, not {value}")
    return value


def _pairs(tokens: list[Token], what: str) -> list[tuple[str, list[Token]]]:
    try:
        return grammar.parse_where(tokens)
    except GrammarError as e:
        raise OptionError(f"{what}: {e.message}") from None


def _text(tokens: list[Token], resolve: Callable[[str], str]) -> str:
    """A value as written: quoted strings as they are, words with !variables resolved."""
    parts = []
    for tok in tokens:
        if tok.kind == WORD:
            parts.append(resolve(tok.value))
        elif tok.kind == GROUP:
            parts.append("(" + resolve(tok.value) + ")")
        else:
            parts.append(tok.value)
    return " ".join(parts)


def policy_id(text: str) -> str:
    """A mapping policy named by id, or a variable holding the whole policy (AnyLog's docs): its id."""
    text = text.strip()
    if text.startswith("{"):
        try:
            policy = json.loads(text)
        except ValueError:
            raise OptionError(f"policy = {text[:60]!r}... is neither a policy id nor a JSON policy") from None
        inner = next(iter(policy.values()), None) if isinstance(policy, dict) and len(policy) == 1 else None
        if not isinstance(inner, dict) or not inner.get("id"):
            raise OptionError("the policy given by value has no id: insert it into the metadata first")
        return str(inner["id"])
    if not text:
        raise OptionError("policy = needs a mapping policy id")
    return text


def read_column(key: str, tokens: list[Token], resolve: Callable[[str], str]) -> ColumnRule:
    """`column.<name>.<type> = rule` or `column.<name> = (type = .. and value = .. [and optional = ..])`."""
    parts = key.split(".")
    if len(parts) == 3 and parts[1]:
        _, name, kind = parts
        if kind not in COLUMN_TYPES:
            raise OptionError(f"{key}: the column type must be one of {', '.join(COLUMN_TYPES)}, not {kind!r}")
        if len(tokens) == 1 and tokens[0].kind == GROUP:
            raise OptionError(f"{key}: give the rule as a string, or drop the type and use "
                              f"'column.{name} = (type = {kind} and value = ...)'")
        return ColumnRule(name, Rule("literal", kind), read_rule(_text(tokens, resolve)))
    if len(parts) == 2 and parts[1]:
        name = parts[1]
        if len(tokens) != 1 or tokens[0].kind != GROUP:
            raise OptionError(f"{key} needs '(type = .. and value = ..)' or the form 'column.{name}.<type> = ...'")
        found: dict[str, str] = {}
        for sub, value in _pairs(list(grammar.tokenize(tokens[0].value)), key):
            if sub not in ("type", "value", "optional"):
                raise OptionError(f"{key}: unknown key {sub!r} (use type, value and optional)")
            found[sub] = _text(value, resolve)
        if "type" not in found or "value" not in found:
            raise OptionError(f"{key} needs both type and value")
        type_rule = read_rule(found["type"])
        if type_rule.kind == "now":
            raise OptionError(f"{key}: 'now' is a value, not a type")
        return ColumnRule(name, type_rule, read_rule(found["value"]),
                          _bool(found.get("optional", "false"), f"{key} optional"))
    raise OptionError(f"{key!r} is not a column rule: use column.<name>.<type> = ... or column.<name> = (...)")


def read_topic(tokens: list[Token], default_qos: int, resolve: Callable[[str], str],
               only_log: bool = False) -> TopicSpec:
    """One `topic = (...)` block, or a bare `topic = name` (all the messages are logged, not mapped)."""
    if len(tokens) != 1 or tokens[0].kind != GROUP:
        name = check_filter(_text(tokens, resolve))
        return TopicSpec(name=name, qos=default_qos)
    found: dict[str, str] = {}
    columns: list[ColumnRule] = []
    policies: list[str] = []
    rules: list[tuple[str, object]] = []
    for key, value in _pairs(list(grammar.tokenize(tokens[0].value)), "topic"):
        if key.startswith("column."):
            column = read_column(key, value, resolve)
            if any(c.name == column.name for c in columns):
                raise OptionError(f"topic: column {column.name!r} is given twice")
            columns.append(column)
            if len(value) == 1 and value[0].kind == GROUP:
                group = {k: _text(v, resolve) for k, v in _pairs(list(grammar.tokenize(value[0].value)), key)}
                rules.append((key, group))
            else:
                rules.append((key, _text(value, resolve)))
        elif key == "policy":
            policies.append(policy_id(_text(value, resolve)))
        else:
            _check_key(found, key, TOPIC_KEYS, "topic", ", column.<name>...")
            found[key] = _text(value, resolve)
    if "name" not in found:
        raise OptionError("a topic needs a name: topic = (name = my/topic and ...)")
    name = check_filter(found["name"])
    persist = _bool(found.get("persist", "false"), "persist")
    qos = _qos(found["qos"], f"topic {name}") if "qos" in found else default_qos
    dbms = read_rule(found["dbms"]) if found.get("dbms") else None
    table = read_rule(found["table"]) if found.get("table") else None
    for what, rule in (("dbms", dbms), ("table", table)):
        if rule is not None and rule.kind == "now":
            raise OptionError(f"topic {name}: the {what} cannot be 'now'")
    dynamic = _bool(found.get("dynamic", "false"), "dynamic")
    prefix = found.get("table_prefix", "").strip()
    as_topic = _bool(found.get("table_name_as_topic", "false"), "table_name_as_topic")
    if dynamic:
        if policies or persist:
            raise OptionError(f"topic {name}: dynamic = true maps the message itself; it cannot be combined with "
                              f"{'policy' if policies else 'persist'}")
        if dbms is None:
            raise OptionError(f"topic {name}: dynamic = true needs a dbms (a name or \"bring [...]\")")
        if prefix:
            _check_name_part(prefix, f"topic {name}: table_prefix")
    elif prefix or as_topic:
        raise OptionError(f"topic {name}: {'table_prefix' if prefix else 'table_name_as_topic'} is for dynamic "
                          f"topics: add dynamic = true")
    elif not persist and not only_log:
        if dbms is None and not policies:
            raise OptionError(f"topic {name} needs a dbms (a name or \"bring [...]\")")
        if table is None and not policies:
            raise OptionError(f"topic {name} needs a table (a name or \"bring [...]\")")
        if not columns and not policies:
            raise OptionError(f"topic {name} needs column rules (column.<name>.<type> = ...) or a mapping policy")
    rules = [(k, found[k]) for k in ("dbms", "table") if found.get(k)] + rules
    return TopicSpec(name=name, qos=qos, dbms=dbms, table=table, columns=tuple(columns),
                     policies=tuple(policies), persist=persist, rules=tuple(rules), dynamic=dynamic,
                     table_prefix=prefix, table_name_as_topic=as_topic)


def _check_name_part(text: str, where: str) -> None:
    try:
        data_name(text, "table_prefix")
    except ConversionError as e:
        raise OptionError(f"{where}: {e.message}") from None


def _master(text: str) -> str:
    """`master_node = ip:port`, checked here so that a typo fails the command, not the first message."""
    text = text.strip()
    if not text:
        return ""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(f"master_node must be ip:port (e.g. 10.0.0.25:32048), not {text!r}")
    return text


def _check_key(found: dict[str, str], key: str, known, where: str, more: str = "") -> None:
    """Refuse a clause's key that is unsupported, unknown, or given twice, saying which."""
    if key in NOT_SUPPORTED:
        raise OptionError(f"{where}: '{key}' ({NOT_SUPPORTED[key]}) is not supported by this node")
    if key not in known:
        raise OptionError(f"{where}: unknown key {key!r} (known: {', '.join(known)}{more})")
    if key in found:
        raise OptionError(f"{where}: {key} is given twice")


def read_client(tokens: list[Token], resolve: Callable[[str], str]) -> ClientSpec:
    """The whole `where ...` clause of `run msg client` (the tokens after the command words)."""
    if not tokens or not tokens[0].is_word("where"):
        raise OptionError("run msg client needs 'where broker = ... and topic = (...)'")
    found: dict[str, str] = {}
    topic_tokens: list[list[Token]] = []
    for key, value in _pairs(list(tokens[1:]), "run msg client"):
        if key == "topic":
            topic_tokens.append(value)
        else:
            _check_key(found, key, CLIENT_KEYS, "run msg client")
            found[key] = _text(value, resolve)
    broker = found.get("broker", "").strip()
    if not broker:
        raise OptionError("run msg client needs broker = <host>, local or rest")
    if broker.lower() in (LOCAL, REST):
        broker = broker.lower()
    if not topic_tokens:
        raise OptionError("run msg client needs at least one topic = (name = ... and ...)")
    if broker == REST and not found.get("user-agent"):
        raise OptionError("broker = rest needs user-agent = <the product name REST clients send>")
    qos = _qos(found["qos"], "run msg client") if "qos" in found else 0
    only_log = _bool(found.get("only_log", "false"), "only_log")
    topics = [read_topic(t, qos, resolve, only_log) for t in topic_tokens]
    names = [t.name for t in topics]
    for name in names:
        if names.count(name) > 1:
            raise OptionError(f"topic {name!r} is given twice in one command")
    ssl = _bool(found.get("ssl", "false"), "ssl")
    if (found.get("cert") or found.get("key")) and not (found.get("cert") and found.get("key")):
        raise OptionError("a client certificate needs both cert = <file> and key = <file>")
    if found.get("ca") and not ssl:
        raise OptionError("ca = ... is for TLS: add ssl = true")
    return ClientSpec(
        broker=broker,
        port=_int(found["port"], "port", 1, 65535) if found.get("port") else DEFAULT_PORT,
        user=found.get("user") or "unused",
        password=found.get("password", ""),
        client_id=found.get("client_id", ""),
        log=_bool(found.get("log", "false"), "log"),
        log_error=_bool(found.get("log_error", "false"), "log_error"),
        qos=qos,
        keep_alive=_int(found["keep_alive"], "keep_alive", 0, 65535) if found.get("keep_alive") else KEEP_ALIVE,
        clean_session=_bool(found.get("clean_session", "false"), "clean_session"),
        ssl=ssl, ca=found.get("ca", ""), cert=found.get("cert", ""), key=found.get("key", ""),
        user_agent=found.get("user-agent", "").strip(),
        only_log=only_log,
        master_node=_master(found.get("master_node", "")),
        dirs={k: found[k] for k in ("prep_dir", "watch_dir", "err_dir") if found.get(k)},
        topics=tuple(topics),
    )


__all__ = ["ClientSpec", "TopicSpec", "ColumnRule", "Rule", "read_client", "read_topic", "read_column", "read_rule",
           "LOCAL", "REST", "STRING", "JSON"]
