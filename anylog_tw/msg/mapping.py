"""A topic's rules as one function: message object → rows, through the node's one mapping language.

The bring/value rules and their conversions belong to the ingest layer (the operator applies the
same ones to files); this module only says what a subscription asks of them: the `dbms` and
`table` rules, the `column.*` rules, `now` (one time for every row of a message), `optional`
columns, and mapping policies (source = the policy's data source, instructions = its id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from anylog_tw.base.errors import AnyLogError


class MappingError(AnyLogError):
    """A message that the rules cannot turn into rows; the message says what is missing or wrong."""

    code = "mqtt_data"


@dataclass(frozen=True)
class Target:
    """Where rows go: a streaming buffer key."""

    dbms: str
    table: str
    source: str = "0"
    instructions: str = "0"


# A mapper takes one message object and the arrival time, and returns (target, row dict) pairs.
Mapper = Callable[[Any, float], Iterable[tuple[Target, dict]]]


def compile_topic(topic, policies: list[dict]) -> Mapper:
    """The mapper of one topic: its inline rules, or its mapping policies (source, id as instructions)."""
    raise MappingError("mapping rules are not available on this node yet")
