"""`create policy`: a policy built from `key = value` pairs, typed the way a user expects."""

from __future__ import annotations

import json
import re

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import CommandError, OptionError
from anylog_tw.base.grammar import GROUP, JSON, STRING, WORD
from anylog_tw.base.registry import command, token_text
from anylog_tw.base.reply import Reply
from anylog_tw.commands.metadata import KEYWORDS


def _typed_value(tokens) -> object:
    if len(tokens) == 1 and tokens[0].kind == GROUP:
        return [_scalar(v) for v in values.split_list("(" + tokens[0].value + ")")]
    if len(tokens) == 1 and tokens[0].kind == JSON:
        try:
            return json.loads(tokens[0].value)
        except ValueError as e:
            raise OptionError(f"{tokens[0].value[:40]!r} is not valid JSON: {e}") from None
    if len(tokens) == 1 and tokens[0].kind == STRING:
        return tokens[0].value
    return _scalar(" ".join(t.value for t in tokens))


def _scalar(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text) if any(c in text for c in ".eE") and text[:1] not in ("e", "E") else text
    except ValueError:
        return text


@command("create policy", grant="read", usage="create policy <type> [with defaults] where k = v and ...",
         text="Build a policy from key = value pairs (numbers and true/false are typed, (a, b) is a list, {...} "
              "is JSON) and print it as JSON; assign it to use it: 'p = create policy ...'. 'with defaults' adds "
              "the node's name, hostname and ip.",
         examples=("p = create policy operator where name = op1 and ip = 10.0.0.5 and port = 32148 and "
                   "cluster = !cluster_id",
                   "p = create policy cluster with defaults where name = c1 and company = acme"),
         keywords=KEYWORDS, raw=True, readonly=True)
def create_policy(call):
    node = call.node
    positional, clause = grammar.split_where(call.tokens)
    words = [token_text(t, call.substitute) for t in positional]
    if not words:
        raise CommandError("usage: create policy <type> [with defaults] where k = v and ...")
    ptype = words[0]
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_\-]*$", ptype):
        raise CommandError(f"{ptype!r} is not a policy type name")
    extra = [w.lower() for w in words[1:]]
    if extra and extra != ["with", "defaults"]:
        raise CommandError(f"unexpected '{' '.join(words[1:])}' after the type (only 'with defaults')")
    inner: dict = {}
    if extra:
        inner.update({"name": node.name, "hostname": node.dictionary.get("hostname", ""),
                      "ip": node.dictionary.get("external_ip") or node.dictionary.get("ip"),
                      "local_ip": node.dictionary.get("ip")})
    if clause is not None:
        for key, value in grammar.parse_where(clause):
            resolved = [t._replace(value=call.substitute(t.value)) if t.kind in (WORD, GROUP) else t
                        for t in value]
            inner[key] = _typed_value(resolved)
    return Reply.of_json({ptype: inner})
