"""The text of a `blockchain get` query (after the command words) into a `Query` tree.

Two forms of condition: `where k = v and ...` (form 1, whose equalities can use the ledger's
indexes) and conditional expressions with `and`, `or`, parentheses and the word operators
(`contains`, `startswith`, `endswith`, `childfrom`).  Pure functions; errors are `QueryError`
naming the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from anylog_tw.base import bring as base_bring
from anylog_tw.base.bring import Bring, BringError
from anylog_tw.metadata.query_model import BoolOp, Query, Test
from anylog_tw.metadata.values import QueryError

WORD_OPS = ("contains", "startswith", "endswith", "childfrom")

# --- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tok:
    kind: str  # word, str, path, op, lp, rp, comma
    value: Any
    pos: int


def _segments(text: str) -> list[str]:
    """`[a]['b'][c(find(x))]` -> ['a', 'b', 'c(find(x))'];  `[]` -> []."""
    segs = []
    depth = 0
    cur = ""
    for c in text:
        if c == "[":
            depth += 1
            if depth == 1:
                cur = ""
                continue
        elif c == "]":
            depth -= 1
            if depth == 0:
                segs.append(cur.strip().strip("'\""))
                continue
        if depth >= 1:
            cur += c
    return [s for s in segs if s != ""]


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<str>"[^"]*"|'[^']*')
  | (?P<path>(?:[^\s()\[\],=<>"'!]|!(?!=))*(?:\[[^\[\]]*\])+)
  | (?P<op>==|!=|<=|>=|<|>|=)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<word>(?:[^\s()\[\],=<>"'!]|!(?!=))+|!)
""", re.VERBOSE)


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos, n = 0, len(text)
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            c = text[pos]
            if c in "\"'":
                raise QueryError(f"unterminated quote at column {pos + 1}: {text[pos:pos + 30]!r}")
            if c == "[":
                raise QueryError(f"unbalanced '[' at column {pos + 1}: no matching ']'")
            raise QueryError(f"unbalanced ']' at column {pos + 1}")
        kind = m.lastgroup
        value = m.group()
        if kind == "path":
            head, _, rest = value.partition("[")
            segs = _segments("[" + rest)
            out.append(Tok("path", ([head] if head else []) + segs, pos))
        elif kind == "str":
            out.append(Tok("str", value[1:-1], pos))
        elif kind != "space":
            out.append(Tok(kind, value, pos))
        pos = m.end()
    return out


# --- parsing --------------------------------------------------------------------------------


_SCAN = re.compile(r"""\"[^\"]*\"?|'[^']*'?|[()\[\]]|[^\s()\[\]\"']+""")


def _top_level_words(text: str) -> Iterable[tuple[int, str]]:
    """(offset, word) of the words outside quotes, brackets and parentheses that follow white space."""
    depth = 0
    for m in _SCAN.finditer(text):
        piece = m.group()
        c = piece[0]
        if c in "\"'":
            if len(piece) < 2 or piece[-1] != c:
                raise QueryError(f"unterminated quote at column {m.start() + 1}: {text[m.start():m.start() + 30]!r}")
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth < 0:
                raise QueryError(f"unbalanced '{c}' at column {m.start() + 1}")
        elif depth == 0 and (m.start() == 0 or text[m.start() - 1].isspace()):
            yield m.start(), piece
    if depth > 0:
        raise QueryError("unbalanced brackets: a '(' or '[' is never closed")


def parse_query(text: str) -> Query:
    """Read the text after `blockchain get`."""
    text = text.strip()
    if not text:
        raise QueryError("'blockchain get' needs a policy type, '(type1, type2)' or '*'")
    where_at = bring_at = None
    joins: list[tuple[str, int]] = []
    for pos, word in _top_level_words(text):
        low = word.lower()
        if bring_at is not None:
            continue
        if low == "where" and where_at is None and not joins:
            where_at = pos
        elif low in ("join", "merge"):
            joins.append((low, pos))
        elif low == "bring" or low.startswith("bring."):
            bring_at = pos
    ends = [p for p in (where_at, joins[0][1] if joins else None, bring_at) if p is not None]
    query = Query(types=parse_types(text[:min(ends, default=len(text))]))
    if where_at is not None:
        stop = joins[0][1] if joins else bring_at if bring_at is not None else len(text)
        query.where, query.equalities = parse_where(text[where_at + len("where"):stop])
    for i, (kind, pos) in enumerate(joins):
        stop = joins[i + 1][1] if i + 1 < len(joins) else bring_at if bring_at is not None else len(text)
        query.joins.append((kind, _parse_side(kind, text[pos + len(kind):stop])))
    if bring_at is not None:
        query.bring = parse_bring(text[bring_at:])
    return query


def _parse_side(kind: str, text: str) -> Query:
    """The right side of `join (blockchain get ...)` / `merge (blockchain get ...)`."""
    s = text.strip()
    if not (s.startswith("(") and s.endswith(")")):
        raise QueryError(f"'{kind}' is followed by '(blockchain get <type> where ...)', not {s[:40]!r}")
    inner = s[1:-1].strip()
    words = inner.split(None, 2)
    if len(words) < 3 or words[0].lower() != "blockchain" or words[1].lower() not in ("get", "read"):
        raise QueryError(f"'{kind} (...)' holds a 'blockchain get' query, not {inner[:40]!r}")
    side = parse_query(words[2])
    if side.bring is not None or side.joins:
        raise QueryError(f"the query inside '{kind} (...)' takes no 'bring' and no further join: put them after it")
    return side


_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def parse_types(text: str) -> tuple[str, ...] | None:
    s = text.strip()
    if s == "*":
        return None
    if s.startswith("("):
        if not s.endswith(")"):
            raise QueryError(f"unbalanced '(' in the policy types {s!r}")
        names = [t.strip() for t in s[1:-1].split(",") if t.strip()]
        if not names:
            raise QueryError("'()' names no policy type: write '(operator, query)' or '*'")
    else:
        names = s.split()
        if len(names) != 1:
            raise QueryError(f"{s!r}: give one policy type, '(type1, type2)' or '*', then 'where' or 'bring'")
    for name in names:
        if name == "*":
            return None
        if not _TYPE.match(name):
            raise QueryError(f"{name!r} is not a policy type name")
    return tuple(names)


def parse_where(text: str) -> tuple[Any, list]:
    """A where clause in either form: (predicate, the form-1 equality tests the index can serve)."""
    toks = tokenize(text)
    if not toks:
        raise QueryError("'where' must be followed by a condition, e.g. 'name = x' or '[operator][port] > 3000'")
    conditional = any(t.kind == "op" and t.value != "=" for t in toks) or any(
        t.kind == "word" and t.value.lower() in WORD_OPS for t in toks[1:-1]) or any(
        t.kind == "word" and t.value.lower() == "or" for t in toks)
    if conditional:
        parser = _Conditional(toks)
        tree = parser.parse()
        return tree, []
    tests = _parse_form1(toks)
    equalities = [t for t in tests if t.op == "=" and len(t.path) in (1, 2) and isinstance(t.value, str)]
    return (tests[0] if len(tests) == 1 else BoolOp("and", tests)), equalities


def _key_path(tok: Tok) -> list[str]:
    if tok.kind == "path":
        return list(tok.value)
    if tok.kind == "word":
        return [tok.value]
    raise QueryError(f"expected an attribute name at column {tok.pos + 1}, got {tok.value!r}")


def _parse_form1(toks: list[Tok]) -> list[Test]:
    tests = []
    i, n = 0, len(toks)
    while i < n:
        key = toks[i]
        if i + 1 >= n:
            raise QueryError(f"'{_show(key)}' in the where clause has no '= value'")
        op = toks[i + 1]
        if op.kind == "op" and op.value == "=":
            kind = "="
        elif op.kind == "word" and op.value.lower() == "with":
            kind = "with"
        else:
            raise QueryError(f"expected '=' or 'with' after '{_show(key)}', got {op.value!r}")
        path = _key_path(key)
        j = i + 2
        words = []
        while j < n:
            t = toks[j]
            if t.kind == "word" and t.value.lower() == "and" and j + 2 < n + 1 and _is_key_start(toks, j + 1):
                break
            words.append(t)
            j += 1
        if not words:
            raise QueryError(f"'{_show(key)} {kind}' has no value")
        if len(words) == 1 and words[0].kind == "path":
            value: Any = ("path", list(words[0].value))  # another attribute (in a join: of the left record)
        else:
            value = " ".join(str(w.value) if w.kind != "path" else _show(w) for w in words)
        tests.append(Test(path, kind, value))
        i = j + 1
        if j < n and i >= n:
            raise QueryError("the where clause ends with 'and'")
    return tests


def _is_key_start(toks: list[Tok], i: int) -> bool:
    return (i + 1 < len(toks) and toks[i].kind in ("word", "path")
            and ((toks[i + 1].kind == "op" and toks[i + 1].value == "=")
                 or (toks[i + 1].kind == "word" and toks[i + 1].value.lower() == "with")))


def _show(tok: Tok) -> str:
    if tok.kind == "path":
        return "".join(f"[{s}]" for s in tok.value) or "[]"
    return str(tok.value)


class _Conditional:
    """or_expr := and_expr ('or' and_expr)* ; and_expr := atom ('and' atom)* ;
    atom := '(' or_expr ')' | operand op operand."""

    def __init__(self, toks: list[Tok]):
        self.toks = toks
        self.i = 0

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise QueryError("the condition ends too early: an operand or operator is missing")
        self.i += 1
        return tok

    def parse(self):
        tree = self.or_expr()
        if self.peek() is not None:
            tok = self.peek()
            raise QueryError(f"unexpected {tok.value!r} at column {tok.pos + 1} in the condition")
        return tree

    def _is(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.value.lower() == word

    def or_expr(self):
        parts = [self.and_expr()]
        while self._is("or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", parts)

    def and_expr(self):
        parts = [self.atom()]
        while self._is("and"):
            self.i += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else BoolOp("and", parts)

    def atom(self):
        tok = self.take()
        if tok.kind == "lp":
            tree = self.or_expr()
            close = self.take()
            if close.kind != "rp":
                raise QueryError(f"expected ')' at column {close.pos + 1}, got {close.value!r}")
            return tree
        path = _key_path(tok)
        op = self.take()
        if op.kind == "op":
            name = "==" if op.value == "=" else op.value
        elif op.kind == "word" and op.value.lower() in WORD_OPS + ("with",):
            name = op.value.lower()
        else:
            raise QueryError(f"expected a comparison (==, !=, <, >, <=, >=, contains, startswith, endswith, "
                             f"childfrom) after '{_show(tok)}', got {op.value!r}")
        right = self.take()
        if right.kind == "path":
            value: Any = ("path", list(right.value))
        elif right.kind in ("word", "str"):
            value = right.value
        else:
            raise QueryError(f"expected a value after '{op.value}', got {right.value!r}")
        return Test(path, name, value)


def parse_bring(text: str) -> Bring:
    """`bring[.mod[.mod(args)]...] items... [separator = X]`, read by the bring language (base/bring.py)."""
    try:
        return base_bring.parse_bring(text, word=True)
    except BringError as e:
        raise QueryError(e.message) from None
