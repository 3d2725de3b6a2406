"""Conditions of mapping policies: `if [device] == 'Random-Integer-Generator01' and [value] > 3`.

A policy's `condition` skips the readings that fail it; a column's `condition` leaves that
column null.  Comparisons of a key (the bring language's, quoting included) with a quoted text,
a number, a bare word or another key; `and` binds tighter than `or`; parentheses group.
Numbers compare as numbers when both sides are numbers, everything else as text.  Compiled
once into a closure over the row's JSON object.
"""

from __future__ import annotations

from typing import Any, Callable

from anylog_tw.base.bring import MISSING, BringError, read_key, read_quoted
from anylog_tw.base.bring_values import as_number, compile_key, text_of

OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "=")


class ConditionError(BringError):
    """A condition that cannot be read; the message names the part and the form to use."""


def compile_condition(text: str) -> Callable[[Any], bool]:
    body = text.strip()
    if body[:3].lower() == "if " or body.lower() == "if":
        body = body[2:].strip()
    if not body:
        raise ConditionError(f"condition {text!r} is empty: write 'if [key] == value'")
    try:
        tokens = _tokens(body)
    except BringError as e:
        raise ConditionError(f"condition {text!r}: {e.message}") from None
    parser = _Parser(tokens, text)
    check = parser.or_expr()
    if parser.i < len(tokens):
        raise ConditionError(f"condition {text!r}: unexpected {tokens[parser.i][1]!r}")
    return check


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "[":
            key, i = read_key(text, i)
            out.append(("key", key))
        elif c in "'\"":
            value, i = read_quoted(text, i, c)
            out.append(("text", value))
        elif c in "()":
            out.append((c, c))
            i += 1
        elif text.startswith(OPERATORS, i):
            op = next(o for o in OPERATORS if text.startswith(o, i))
            out.append(("op", "==" if op == "=" else op))
            i += len(op)
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "[]()'\"=!<>":
                j += 1
            if j == i:
                raise BringError(f"unexpected {text[i]!r} at column {i + 1}")
            word = text[i:j]
            low = word.lower()
            out.append(("join", low) if low in ("and", "or") else ("word", word))
            i = j
    return out


class _Parser:
    def __init__(self, tokens: list, text: str):
        self.tokens, self.text, self.i = tokens, text, 0

    def _peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def _take(self):
        tok = self._peek()
        if tok[0] is None:
            raise ConditionError(f"condition {self.text!r} ends too early: write 'if [key] == value'")
        self.i += 1
        return tok

    def or_expr(self):
        parts = [self.and_expr()]
        while self._peek() == ("join", "or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda obj: any(p(obj) for p in parts))

    def and_expr(self):
        parts = [self.atom()]
        while self._peek() == ("join", "and"):
            self.i += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda obj: all(p(obj) for p in parts))

    def atom(self):
        kind, value = self._take()
        if kind == "(":
            inner = self.or_expr()
            if self._peek()[0] is None or self._take()[0] != ")":
                raise ConditionError(f"condition {self.text!r}: a '(' is not closed")
            return inner
        if kind != "key":
            raise ConditionError(f"condition {self.text!r}: {value!r} should be a key like [name]")
        left = compile_key(value)
        op_kind, op = self._take()
        if op_kind != "op":
            raise ConditionError(f"condition {self.text!r}: expected ==, !=, <, >, <= or >= after the key, "
                                 f"not {op!r}")
        rkind, rvalue = self._take()
        if rkind == "key":
            right = compile_key(rvalue)
        elif rkind in ("text", "word"):
            right = (lambda constant: (lambda obj: constant))(rvalue)
        else:
            raise ConditionError(f"condition {self.text!r}: a value must follow {op!r}")
        return lambda obj: compare(left(obj), op, right(obj))


def compare(value: Any, op: str, other: Any) -> bool:
    """A missing value is equal to nothing (so only `!=` holds)."""
    if value is MISSING or value is None or other is MISSING:
        return op == "!="
    a, b = as_number(value), as_number(other)
    if a is None or b is None:
        a, b = text_of(value), text_of(other)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    try:
        return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
    except TypeError:
        return False
