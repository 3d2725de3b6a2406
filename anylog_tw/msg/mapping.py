"""A topic's rules as one function: message object → rows, through the node's one mapping language.

The bring/value rules and their conversions belong to the ingest layer (the operator applies the
same ones to files); this module only says what a subscription asks of them: the `dbms` and
`table` rules, the `column.*` rules, `now` (one time for every row of a message), `optional`
columns, and mapping policies (source = the policy's data source, instructions = its id).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, NamedTuple

from anylog_tw.base.errors import AnyLogError


class MappingError(AnyLogError):
    """A message that the rules cannot turn into rows; the message says what is missing or wrong."""

    code = "mqtt_data"


class Target(NamedTuple):
    """Where rows go: a streaming buffer key (a tuple: hashed and compared in C, once a row)."""

    dbms: str
    table: str
    source: str = "0"
    instructions: str = "0"


# A mapper takes one message object and the arrival time, and returns (target, row dict) pairs.
Mapper = Callable[[Any, float], Iterable[tuple[Target, dict]]]


def compile_topic(topic, policies: list[dict]) -> Mapper:
    """The mapper of one topic: its inline rules, or its mapping policies.

    Inline rules give rows, buffered with source and instructions "0".  A policy is applied by
    the operator, as to any file whose instructions name a policy: here it only checks the
    message and names its dbms and table, and the message itself is buffered with source = the
    policy's source and instructions = its id (spec §4 step 4, §5).
    """
    from anylog_tw.ingest.mapper import compile_mapper
    from anylog_tw.ingest.mapping_rules import rules_from_policy, rules_from_topic

    if not policies:
        from anylog_tw.ingest.mapping_rules import NO_DEFAULT

        rules = rules_from_topic(topic.rules, where=f"topic {topic.name}")
        uses_now = any((c.value is not None and c.value.kind == "now") or c.default is not NO_DEFAULT
                       for c in rules.columns)
        # The mapper asks for the time once a message; rules that never use it need not format it.
        compiled = compile_mapper(rules) if uses_now else compile_mapper(rules, now=str)
        targets: dict[tuple[str, str], Target] = {}

        def inline(obj: Any, now: float) -> list[tuple[Target, dict]]:
            out = []
            for dbms, table, row in compiled(obj):
                target = targets.get((dbms, table))
                if target is None:
                    target = targets[(dbms, table)] = Target(dbms, table)
                out.append((target, row))
            return out

        return inline

    applied = []
    for policy in policies:
        inner = next(iter(policy.values()))
        source = str(inner.get("source") or "0")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", source):
            source = "0"
        applied.append((compile_mapper(rules_from_policy(policy)), source, str(inner["id"])))

    def by_policy(obj: Any, now: float) -> list[tuple[Target, dict]]:
        out = []
        for mapper, source, policy_id in applied:
            rows = mapper(obj)  # the operator maps again; here a message that cannot map is refused early
            if rows:
                dbms, table, _ = rows[0]
                out.append((Target(dbms, table, source, policy_id), obj))
        return out

    return by_policy
