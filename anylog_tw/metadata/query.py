"""`blockchain get`: the metadata query language, as pure functions over policies.

    blockchain get <type | (t1, t2) | *> [where <k = v and ...> | <conditional>] [bring[.mods] <items>]
                   [separator = X]

`parse_query(text)` turns the text after `blockchain get` into a `Query`; `evaluate(query, store)`
runs it over a store of policies and gives an `Outcome` (JSON data, text or a table).  A store is
anything with the small interface of `values.MemoryStore`: the ledger implements it with indexes,
so `operator where name = x` is a dictionary lookup and not a scan.

Paths: `[operator][name]`, `operator[name]`, `[name]` and `name` all read attribute `name` of an
operator policy; a first segment that is not the policy's type starts inside the policy
(`table[dbms]` reads `dbms` in each element of the cluster's `table` list), `[*]` matches any
type and `[]` is the whole policy.  A path through a list gives the list of values, and a test on
a list is true when any element passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from anylog_tw.metadata.bring import MODIFIERS, Bring, Outcome, apply_bring
from anylog_tw.metadata.values import (MISSING, MemoryStore, QueryError, Store, body, compare,
                                       index_keys, lookup_keys, matches, policy_type, resolve, text_of)

KNOWN_TYPES = frozenset({
    "master", "operator", "query", "publisher", "cluster", "table", "mapping", "config", "distribution",
    "anmp", "schedule", "monitor", "policy", "transform", "security", "member", "permissions", "user",
})

COMPARE_OPS = ("==", "!=", "<=", ">=", "<", ">")
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


# --- the query ------------------------------------------------------------------------------


@dataclass
class Test:
    """One comparison: path op value (value is a literal text or another path)."""

    path: list[str]
    op: str
    value: Any  # str, or ("path", segments)

    def __call__(self, policy: dict, ctx: "Context") -> bool:
        actual = resolve(policy, self.path)
        if self.op == "childfrom":
            return ctx.child_from(policy, self._other(policy, ctx))
        if actual is MISSING:
            return False
        other = self._other(policy, ctx)
        if other is MISSING:
            return False
        return compare(actual, self.op, other)

    def _other(self, policy: dict, ctx: "Context | None" = None) -> Any:
        if isinstance(self.value, tuple):
            segs = self.value[1]
            outer = ctx.outer if ctx is not None else None
            if outer is not None and segs and segs[0] in outer:  # join/merge: a value from the left side
                return resolve(outer, segs)
            return resolve(policy, segs)
        return self.value


@dataclass
class BoolOp:
    op: str  # and / or
    parts: list

    def __call__(self, policy: dict, ctx: "Context") -> bool:
        if self.op == "and":
            return all(p(policy, ctx) for p in self.parts)
        return any(p(policy, ctx) for p in self.parts)


@dataclass
class Query:
    types: tuple[str, ...] | None  # None: every type (`*`)
    where: Any = None  # a Test / BoolOp tree, or None
    equalities: list = field(default_factory=list)  # form 1 tests usable with an index
    bring: Bring | None = None
    joins: list = field(default_factory=list)  # ("join" | "merge", Query): the right side, per left record


class Context:
    def __init__(self, store: Store, outer: dict | None = None):
        self.store = store
        self.outer = outer  # the left record of a join/merge: `[type][attr]` values come from it

    def child_from(self, policy: dict, ancestor: Any) -> bool:
        """True when following `parent` ids from the policy reaches `ancestor` (an id)."""
        target = text_of(ancestor)
        seen = set()
        current = body(policy).get("parent")
        while isinstance(current, str) and current not in seen:
            if current == target:
                return True
            seen.add(current)
            parent = self.store.by_id(current)
            current = body(parent).get("parent") if parent is not None else None
        return False


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


def _unescape_separator(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


_MODIFIER = re.compile(r"\.([A-Za-z_]+)(\(([^)]*)\))?")


def parse_bring(text: str) -> Bring:
    """`bring[.mod[.mod(args)]...] items... [separator = X]`."""
    m = re.match(r"bring((?:\.[A-Za-z_]+(?:\([^)]*\))?)*)", text, re.IGNORECASE)
    assert m is not None
    bring = Bring()
    for mm in _MODIFIER.finditer(m.group(1)):
        name = mm.group(1).lower()
        if name == "sort":
            if not bring.has("table"):
                raise QueryError("'.sort(i, j)' follows '.table', as in 'bring.table.sort(0)'")
            args = [a.strip() for a in (mm.group(3) or "").split(",") if a.strip()]
            try:
                bring.modifiers.append(("sort", [int(a) for a in args]))
            except ValueError:
                raise QueryError(f"'.sort({mm.group(3)})' takes column numbers") from None
            continue
        if name not in MODIFIERS:
            raise QueryError(f"unknown bring modifier '.{name}' (modifiers: {', '.join(MODIFIERS)}, table.sort)")
        bring.modifiers.append((name, None))
    toks = tokenize(text[m.end():])
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "word" and tok.value.lower() == "separator" and i + 1 < len(toks) and \
                toks[i + 1].kind == "op" and toks[i + 1].value == "=":
            if i + 2 >= len(toks):
                raise QueryError("'separator =' needs a value, e.g. 'separator = ,'")
            bring.separator = _unescape_separator(str(toks[i + 2].value))
            i += 3
            continue
        if tok.kind == "path":
            bring.items.append(("key", list(tok.value)))
        elif tok.kind in ("str", "word", "comma"):
            bring.items.append(("lit", _unescape_separator(str(tok.value))))
        else:
            raise QueryError(f"unexpected {tok.value!r} in the bring list (column {tok.pos + 1})")
        i += 1
    return bring


# --- evaluation -----------------------------------------------------------------------------


def check_types(query: Query, store: Store) -> None:
    """A type that is neither known nor in the ledger is most likely a typo: say so."""
    if query.types is None:
        return
    present = set(store.types())
    unknown = [t for t in query.types if t not in present and t not in KNOWN_TYPES]
    if unknown:
        listed = ", ".join(sorted(present | KNOWN_TYPES))
        raise QueryError(f"unknown policy type {', '.join(repr(u) for u in unknown)}: no such policy in the ledger "
                         f"and not a standard type (types: {listed})")


def select(query: Query, store: Store, outer: dict | None = None) -> list[dict]:
    """The policies the type and where clause select, in ledger order (`outer`: the left record
    of a join, whose attributes `[type][attr]` values name)."""
    ctx = Context(store, outer)
    candidates: Sequence[dict] | None = None
    if query.types is not None and len(query.types) == 1 and query.equalities:
        ptype = query.types[0]
        for test in query.equalities:
            path = test.path
            if len(path) == 2 and path[0] in (ptype, "*"):
                path = path[1:]
            if len(path) == 1:
                found = store.equal(ptype, path[0], test.value)
                if found is not None:
                    candidates = found if candidates is None or len(found) < len(candidates) else candidates
    if candidates is None:
        if query.types is None:
            candidates = store.all()
        elif len(query.types) == 1:
            candidates = store.of_type(query.types[0])
        else:
            wanted = set(query.types)
            candidates = [p for p in store.all() if policy_type(p) in wanted]
    if query.where is None:
        return list(candidates)
    where = query.where
    return [p for p in candidates if where(p, ctx)]


def evaluate(query: Query, store: Store) -> Outcome:
    check_types(query, store)
    policies = select(query, store)
    for kind, side in query.joins:
        check_types(side, store)
        policies = join(kind, policies, side, store)
    if query.bring is None:
        return Outcome("json", policies)
    return apply_bring(query.bring, policies, store)


def join(kind: str, left: list[dict], side: Query, store: Store) -> list[dict]:
    """`join`: one record holding both policies per match, left records without a match dropped
    (an inner join).  `merge`: the matches' attributes added to the left policy where it has none
    (a left join: a left policy without a match stays as it is)."""
    out: list[dict] = []
    for record in left:
        matched = select(side, store, outer=record)
        if kind == "join":
            out.extend({**record, **m} for m in matched)
            continue
        if not matched:
            out.append(record)
            continue
        ptype = policy_type(record)
        merged = dict(record[ptype])
        for m in matched:
            for key, value in body(m).items():
                merged.setdefault(key, value)
        out.append({ptype: merged, **{k: v for k, v in record.items() if k != ptype}})
    return out


def run_query(text: str, store: Store) -> Outcome:
    """Parse and evaluate in one call."""
    return evaluate(parse_query(text), store)


__all__ = ["parse_query", "evaluate", "run_query", "select", "MemoryStore", "Outcome", "Query", "QueryError",
           "resolve", "matches", "index_keys", "lookup_keys", "policy_type", "body", "KNOWN_TYPES"]
