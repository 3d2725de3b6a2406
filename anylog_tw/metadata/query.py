"""`blockchain get`: the metadata query language, as pure functions over policies.

    blockchain get <type | (t1, t2) | *> [where <k = v and ...> | <conditional>] [bring[.mods] <items>]
                   [separator = X]

`parse_query(text)` turns the text after `blockchain get` into a `Query`; `evaluate(query, store)`
runs it over a store of policies and gives an `Outcome` (JSON data, text or a table).  A store is
anything with the small interface of `MemoryStore` below: the ledger implements it with indexes,
so `operator where name = x` is a dictionary lookup and not a scan.

Paths: `[operator][name]`, `operator[name]`, `[name]` and `name` all read attribute `name` of an
operator policy; a first segment that is not the policy's type starts inside the policy
(`table[dbms]` reads `dbms` in each element of the cluster's `table` list), `[*]` matches any
type and `[]` is the whole policy.  A path through a list gives the list of values, and a test on
a list is true when any element passes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

from anylog_tw.errors import GrammarError

MISSING = object()

# Types a query may name even when the ledger holds none of them yet (an empty answer, not a typo).
KNOWN_TYPES = frozenset({
    "master", "operator", "query", "publisher", "cluster", "table", "mapping", "config", "distribution",
    "anmp", "schedule", "monitor", "policy", "transform", "security", "member", "permissions", "user",
})

COMPARE_OPS = ("==", "!=", "<=", ">=", "<", ">")
WORD_OPS = ("contains", "startswith", "endswith", "childfrom")
MODIFIERS = ("unique", "first", "recent", "json", "list", "table", "count", "null", "ip_port", "min", "max",
             "children")


class QueryError(GrammarError):
    """A `blockchain get` that cannot be read or run; the message says which part and why."""


# --- the store interface --------------------------------------------------------------------


class Store(Protocol):
    def types(self) -> Iterable[str]: ...
    def of_type(self, ptype: str) -> Sequence[dict]: ...
    def all(self) -> Sequence[dict]: ...
    def by_id(self, pid: str) -> dict | None: ...
    def equal(self, ptype: str, attr: str, text: str) -> Sequence[dict] | None: ...


class MemoryStore:
    """A store over a plain list of policies (tests, and the reference for the ledger's indexes)."""

    def __init__(self, policies: Iterable[dict]):
        self.policies = list(policies)

    def types(self):
        return {policy_type(p) for p in self.policies}

    def of_type(self, ptype):
        return [p for p in self.policies if policy_type(p) == ptype]

    def all(self):
        return self.policies

    def by_id(self, pid):
        for p in self.policies:
            if body(p).get("id") == pid:
                return p
        return None

    def equal(self, ptype, attr, text):
        return None  # no index: the caller filters


# --- values ---------------------------------------------------------------------------------


def policy_type(policy: dict) -> str:
    return next(iter(policy))


def body(policy: dict) -> dict:
    return next(iter(policy.values()))


def index_keys(value: Any) -> list:
    """The keys under which an attribute value is indexed, so that `matches` and the index agree."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        return [value]
    return []  # lists and objects are not indexed: queries on them scan


def lookup_keys(text: str) -> list:
    """The index keys a where-value `text` can match (see `matches`)."""
    keys: list = [text]
    number = as_number(text)
    if number is not None:
        keys.append(number)
    if text.lower() in ("true", "false") and text != text.lower():
        keys.append(text.lower())
    return keys


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def matches(actual: Any, text: str) -> bool:
    """Equality of an attribute value and a where-value typed as text (`port = 32148` matches 32148)."""
    if actual is MISSING or actual is None:
        return False
    if isinstance(actual, list):
        return any(matches(a, text) for a in actual)
    if isinstance(actual, bool):
        return text.lower() == ("true" if actual else "false")
    if isinstance(actual, (int, float)):
        number = as_number(text)
        return number is not None and float(actual) == number
    if isinstance(actual, str):
        return actual == text
    return False


def resolve(policy: dict, segments: Sequence[str]) -> Any:
    """The value at a path, MISSING when absent; through a list, the list of values found."""
    ptype = policy_type(policy)
    if not segments:
        return policy
    value: Any = policy[ptype]
    if segments[0] == ptype or segments[0] == "*":
        segments = segments[1:]
    for seg in segments:
        seg, func = _split_function(seg)
        if isinstance(value, dict):
            value = value.get(seg, MISSING)
        elif isinstance(value, list):
            found = [e[seg] for e in value if isinstance(e, dict) and seg in e]
            value = found if found else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
        if func is not None:
            value = _apply_function(func, text_of(value))
    return value


_FUNCTION = re.compile(r"^([^()]+)\((rfind|find|prefix|suffix)\((.*)\)\)$")


def _split_function(segment: str) -> tuple[str, tuple[str, str] | None]:
    m = _FUNCTION.match(segment)
    if not m:
        return segment, None
    return m.group(1), (m.group(2), m.group(3).strip().strip("'\""))


def _apply_function(func: tuple[str, str], text: str) -> str:
    """Substring functions: find(x) keeps what precedes the first x, rfind(x) what follows the last
    x, prefix(n) the first n characters and suffix(n) the last n."""
    name, arg = func
    if name in ("prefix", "suffix"):
        try:
            n = int(arg)
        except ValueError:
            raise QueryError(f"{name}({arg}) needs a whole number") from None
        return text[:n] if name == "prefix" else (text[-n:] if n else "")
    if name == "find":
        i = text.find(arg)
        return text if i < 0 else text[:i]
    i = text.rfind(arg)
    return text if i < 0 else text[i + len(arg):]


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
            return ctx.child_from(policy, self._other(policy))
        if actual is MISSING:
            return False
        other = self._other(policy)
        if other is MISSING:
            return False
        return compare(actual, self.op, other)

    def _other(self, policy: dict) -> Any:
        if isinstance(self.value, tuple):
            return resolve(policy, self.value[1])
        return self.value


@dataclass
class BoolOp:
    op: str  # and / or
    parts: list

    def __call__(self, policy: dict, ctx: "Context") -> bool:
        if self.op == "and":
            return all(p(policy, ctx) for p in self.parts)
        return any(p(policy, ctx) for p in self.parts)


def compare(actual: Any, op: str, other: Any) -> bool:
    """A conditional test; numbers compare as numbers, everything else as text."""
    if isinstance(actual, list):
        if op == "contains":
            return any(compare(a, "==", other) for a in actual) or any(
                compare(a, "contains", other) for a in actual if isinstance(a, str))
        if op == "!=":
            return all(compare(a, "!=", other) for a in actual)
        return any(compare(a, op, other) for a in actual)
    other_text = text_of(other)
    if op in ("==", "=", "with"):
        return matches(actual, other_text)
    if op == "!=":
        return not matches(actual, other_text)
    if op in ("<", ">", "<=", ">="):
        a, b = as_number(actual), as_number(other)
        left, right = (a, b) if a is not None and b is not None else (text_of(actual), other_text)
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
    text = text_of(actual)
    if op == "contains":
        return other_text in text
    if op == "startswith":
        return text.startswith(other_text)
    if op == "endswith":
        return text.endswith(other_text)
    raise QueryError(f"unknown operator {op!r}")


@dataclass
class Bring:
    items: list = field(default_factory=list)  # ("key", segments) | ("lit", text)
    modifiers: list = field(default_factory=list)  # (name, args)
    separator: str | None = None

    def has(self, name: str) -> bool:
        return any(m == name for m, _ in self.modifiers)


@dataclass
class Query:
    types: tuple[str, ...] | None  # None: every type (`*`)
    where: Any = None  # a Test / BoolOp tree, or None
    equalities: list = field(default_factory=list)  # form 1 tests usable with an index
    bring: Bring | None = None


@dataclass
class Outcome:
    kind: str  # json, text, table
    value: Any
    columns: list | None = None


class Context:
    def __init__(self, store: Store):
        self.store = store

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
    for pos, word in _top_level_words(text):
        low = word.lower()
        if low == "where" and where_at is None and bring_at is None:
            where_at = pos
        elif (low == "bring" or low.startswith("bring.")) and bring_at is None:
            bring_at = pos
    head_end = min(p for p in (where_at, bring_at, len(text)) if p is not None)
    query = Query(types=parse_types(text[:head_end]))
    if where_at is not None:
        where_text = text[where_at + len("where"): bring_at if bring_at is not None else len(text)]
        query.where, query.equalities = parse_where(where_text)
    if bring_at is not None:
        query.bring = parse_bring(text[bring_at:])
    return query


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
    equalities = [t for t in tests if t.op == "=" and len(t.path) in (1, 2)]
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


def select(query: Query, store: Store) -> list[dict]:
    """The policies the type and where clause select, in ledger order."""
    ctx = Context(store)
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
    if query.bring is None:
        return Outcome("json", policies)
    return apply_bring(query.bring, policies, store)


def _date(policy: dict) -> str:
    return str(body(policy).get("date", ""))


def apply_bring(bring: Bring, policies: list[dict], store: Store) -> Outcome:
    """Modifiers first reshape the set of policies (first, recent, children), then format it."""
    for name, _ in bring.modifiers:
        if name == "first" and policies:
            policies = [min(policies, key=_date)]
        elif name == "recent" and policies:
            policies = [max(policies, key=_date)]
        elif name == "children":
            ids = {body(p).get("id") for p in policies}
            policies = [p for p in store.all() if body(p).get("parent") in ids]
    mods = {name for name, _ in bring.modifiers}
    sep = bring.separator
    if "ip_port" in mods:
        rows = [f"{body(p)['ip']}:{body(p)['port']}" for p in policies
                if body(p).get("ip") is not None and body(p).get("port") is not None]
        if "unique" in mods:
            rows = list(dict.fromkeys(rows))
        if "count" in mods:
            return Outcome("text", str(len(rows)))
        if "json" in mods or "list" in mods:
            return Outcome("json", rows)
        return Outcome("text", (sep if sep is not None else ",").join(rows))
    keys = [item for item in bring.items if item[0] == "key"]
    if not keys:
        if "count" in mods:
            return Outcome("text", str(len(policies)))
        if bring.items and "json" not in mods:  # only literals
            return Outcome("text", (sep or "").join("".join(v for _, v in bring.items) for _ in policies))
        return Outcome("json", policies)
    _check_keys_exist(keys, policies, "null" in mods)
    rows: list[list] = []
    for p in policies:
        values = []
        skip = False
        for kind, value in bring.items:
            if kind == "lit":
                values.append(("lit", value))
                continue
            v = resolve(p, value)
            if v is MISSING:
                if "null" not in mods:
                    skip = True
                    break
                v = ""
            values.append(("key", v))
        if not skip:
            rows.append(values)
    if "unique" in mods:
        seen = {}
        for r in rows:
            seen.setdefault(json.dumps([[k, text_of(v)] for k, v in r], ensure_ascii=False), r)
        rows = list(seen.values())
    labels = [_label(segs) for _, segs in keys]
    key_rows = [[v for k, v in r if k == "key"] for r in rows]
    if "count" in mods:
        return Outcome("text", str(len(rows)))
    if "min" in mods or "max" in mods:
        flat = [v for r in key_rows for v in (r[0] if isinstance(r[0], list) else [r[0]])] if key_rows else []
        if not flat:
            return Outcome("text", "")
        numbers = [as_number(v) for v in flat]
        pick = min if "min" in mods else max
        if all(n is not None for n in numbers):
            best = pick(range(len(flat)), key=lambda i: numbers[i])
        else:
            best = pick(range(len(flat)), key=lambda i: text_of(flat[i]))
        return Outcome("text", text_of(flat[best]))
    if "table" in mods:
        sort = next((args for name, args in bring.modifiers if name == "sort"), None)
        table_rows = [[text_of(v) for v in r] for r in key_rows]
        if sort:
            bad = [c for c in sort if c < 0 or c >= len(labels)]
            if bad:
                raise QueryError(f"'.sort({bad[0]})': the table has columns 0 to {len(labels) - 1}")
            table_rows.sort(key=lambda r: [(as_number(r[c]) is None, as_number(r[c]) or 0, r[c]) for c in sort])
        return Outcome("table", table_rows, labels)
    if "json" in mods:
        out = []
        for r in key_rows:
            if len(keys) == 1 and not keys[0][1]:
                out.append(r[0])
            else:
                out.append({label: v for label, v in zip(labels, r)})
        return Outcome("json", out)
    texts = [_join_row(r) for r in rows]
    if "list" in mods:
        return Outcome("json", texts)
    return Outcome("text", (sep if sep is not None else "").join(texts))


def _label(segments: list[str]) -> str:
    return _split_function(segments[-1])[0] if segments else "policy"


def _join_row(values: list) -> str:
    """Keys and literals concatenated as written; two keys in a row are parted by a space."""
    out = []
    prev = None
    for kind, v in values:
        if kind == "key" and prev == "key":
            out.append(" ")
        out.append(v if kind == "lit" else text_of(v))
        prev = kind
    return "".join(out)


def _check_keys_exist(keys: list, policies: list[dict], null: bool) -> None:
    """A key no selected policy has is an error (a typo would otherwise give an empty answer)."""
    if null or not policies:
        return
    for _, segs in keys:
        if not segs:
            continue
        if all(resolve(p, segs) is MISSING for p in policies):
            shown = "".join(f"[{s}]" for s in segs)
            types = sorted({policy_type(p) for p in policies})
            raise QueryError(f"bring {shown}: no selected policy ({', '.join(types)}) has that attribute "
                             f"(add '.null' to bring empty values instead)")


def run_query(text: str, store: Store) -> Outcome:
    """Parse and evaluate in one call."""
    return evaluate(parse_query(text), store)


__all__ = ["parse_query", "evaluate", "run_query", "select", "MemoryStore", "Outcome", "Query", "QueryError",
           "resolve", "matches", "index_keys", "lookup_keys", "policy_type", "body", "KNOWN_TYPES"]
