"""Every topic of a new client compiled to its mapper before the client is added.

Mapping policies are looked up in the metadata by id (`mapping` or `transform` policies); if any
is missing the command fails, naming them, as AnyLog's does ("N policies from M requested").
"""

from __future__ import annotations

from anylog_tw.base.errors import CommandError
from anylog_tw.msg.dynamic import DynamicTopic, compile_dynamic
from anylog_tw.msg.mapping import Mapper, compile_topic
from anylog_tw.msg.options import ClientSpec
from anylog_tw.msg.uns import UnsPolicies


async def load_policies(node, ids: list[str]) -> dict[str, dict]:
    """The mapping (or transform) policies with these ids, by id; CommandError names the missing ones."""
    if not ids:
        return {}
    from anylog_tw.metadata.layer import metadata

    meta = await metadata(node)
    found: dict[str, dict] = {}
    for policy_id in ids:
        policy = meta.ledger.by_id(policy_id)
        if policy is not None and next(iter(policy), None) in ("mapping", "transform"):
            found[policy_id] = policy
    missing = [i for i in ids if i not in found]
    if missing:
        raise CommandError(f"blockchain get (mapping, transform) returned {len(found)} policies from {len(ids)} "
                           f"requested: no mapping policy {', '.join(repr(m) for m in missing)} in the metadata")
    return found


async def compile_spec(node, spec: ClientSpec) -> dict[str, Mapper | DynamicTopic | None]:
    ids = sorted({p for t in spec.topics for p in t.policies})
    policies = await load_policies(node, ids)
    mappers: dict[str, Mapper | DynamicTopic | None] = {}
    uns = node.component(UnsPolicies)

    def on_new_path(parts, dbms, table, column=None):
        uns.note(parts, dbms, table, column, spec.master_node)

    for topic in spec.topics:
        if topic.dynamic and not spec.only_log:
            mappers[topic.name] = compile_dynamic(topic, on_new_path)
        elif spec.only_log or topic.persist or (not topic.columns and not topic.policies):
            mappers[topic.name] = None
        else:
            mappers[topic.name] = compile_topic(topic, [policies[p] for p in topic.policies])
    return mappers
