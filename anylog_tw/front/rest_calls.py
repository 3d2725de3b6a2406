"""`get rest calls`: REST calls counted per caller and verb, in bounded memory.

The caller is the product a client names in its User-Agent (or AnyLog-Agent), so the key comes
from whoever sends the request.  Left as it comes, every distinct 8 KB User-Agent would add a row
kept forever.  So a caller is cut to a short product token (anything else counts as "other"),
methods outside HTTP's usual few count as "other", and at most `MAX_ROWS` rows are kept: when a
new caller needs a row, the one used least recently is folded into its verb's "other" row, so the
totals stay right while the detail goes to the callers that are actually calling.
"""

from __future__ import annotations

import re
from collections import OrderedDict

MAX_ROWS = 128
MAX_CALLER = 32
OTHER = "other"
METHODS = frozenset({"GET", "POST", "PUT", "OPTIONS", "HEAD", "DELETE", "PATCH"})
_PRODUCT = re.compile(r"[a-z0-9][a-z0-9._+-]*")


def caller_label(product: str) -> str:
    """A caller as a row key: a short product token (`anylog`, `curl`, `python-requests`) or "other"."""
    if len(product) <= MAX_CALLER and _PRODUCT.fullmatch(product):
        return product
    return OTHER


def method_label(method: str) -> str:
    """An HTTP method as a label: one of the usual verbs, else "other" (a client picks any word)."""
    return method if method in METHODS else OTHER


class RestCalls:
    """Counts per (caller, verb) since the node started (a node component)."""

    def __init__(self, node, max_rows: int = MAX_ROWS):
        self.node = node
        self.max_rows = max_rows
        self.rows: OrderedDict[tuple[str, str], dict] = OrderedDict()  # least recently used first
        self.folded = 0  # rows folded into "other" to make room

    def record(self, caller: str, method: str, peer: str, error: str | None) -> None:
        now = self.node.reactor.seconds()
        key = (caller_label(caller), method_label(method))
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _new_row(now)
            self._make_room()
        else:
            self.rows.move_to_end(key)
        row["processed"] += 1
        row["last"] = now
        row["last_caller"] = peer[:64]
        if error is not None:
            row["errors"] += 1
            row["last_error"] = error[:200]

    def _make_room(self) -> None:
        while len(self.rows) > self.max_rows:
            victim = next((k for k in self.rows if k[0] != OTHER), None)
            if victim is None:
                return  # only "other" rows: one per verb, a fixed few
            old = self.rows.pop(victim)
            self.folded += 1
            other = self.rows.get((OTHER, victim[1]))
            if other is None:
                self.rows[(OTHER, victim[1])] = old
                continue
            other["processed"] += old["processed"]
            other["errors"] += old["errors"]
            other["first"] = min(other["first"], old["first"])
            if old.get("last", 0) > other.get("last", 0):
                other.update(last=old["last"], last_caller=old.get("last_caller", ""),
                             last_error=old["last_error"] or other["last_error"])


def _new_row(now: float) -> dict:
    return {"processed": 0, "errors": 0, "last_error": "", "first": now}
