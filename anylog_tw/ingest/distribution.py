"""The `set data distribution` rules of a node: which operators the files of a dbms.table go to.

A node component (`node.component(Distribution)`), so the rules outlive `exit publisher` and can
be set before `run publisher`; they live in memory (a startup script sets them again).  The rule
logic itself is in `routing.py`.
"""

from __future__ import annotations

from anylog_tw.ingest import routing


class Distribution:
    """The `set data distribution` rules of a node (a node component: they outlive the publisher)."""

    def __init__(self, node=None):
        self.rules: dict[tuple[str, str], tuple[str, ...]] = {}

    def add(self, dbms: str, table: str, dests) -> None:
        self.rules = routing.add_rule(self.rules, dbms, table, dests)

    def remove(self, dbms: str, table: str, dests=()) -> bool:
        before = self.rules
        self.rules = routing.remove_rule(self.rules, dbms, table, tuple(dests))
        return self.rules != before

    def rows(self) -> list[list[str]]:
        return [[d, t, ", ".join(dests)] for (d, t), dests in sorted(self.rules.items())]
