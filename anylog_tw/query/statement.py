"""AnyLog's additions to a SELECT, taken off the text before sqlglot parses the rest.

Three things users write are not SQL: output casts chained with `::` after a projected column
(`max(value)::float(3)`, `count(*)::str::format(0:*>8s)`), `limit N per <col>`, and the filter of
`period(...)` written as a fifth argument starting with `and`.  They are found in sqlglot's token
stream (so quoting and nesting are the library's), recorded, and removed; time expressions are
then resolved (`timeexpr.resolve`).  What remains is plain SQL for `sqlglot.parse_one`.

The projection items' text is kept too: AnyLog titles an unaliased column by the projection as
written (`count(*)`, `min(value)`), which the parsed tree no longer knows.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from sqlglot.tokens import Token, TokenType

from anylog_tw.query import timeexpr
from anylog_tw.query.errors import QueryError


@dataclass(frozen=True)
class Cast:
    """One `::name(arg)` output cast; `arg` is the raw text inside the parentheses, or None."""

    name: str
    arg: str | None = None


@dataclass
class Prepared:
    sql: str                                   # plain SQL, time expressions resolved
    items: list[str] = field(default_factory=list)         # projection items as written (no casts)
    casts: list[tuple[Cast, ...]] = field(default_factory=list)
    per: tuple[int, str] | None = None         # `limit N per col` -> (N, col)


_OPEN = (TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE)
_CLOSE = (TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE)
_SPACES = re.compile(r"\s+")


def _depths(tokens: list[Token]) -> list[int]:
    depth, out = 0, []
    for t in tokens:
        if t.token_type in _CLOSE:
            depth -= 1
        out.append(depth)
        if t.token_type in _OPEN:
            depth += 1
    return out


def _closing(tokens: list[Token], i: int) -> int:
    """Index of the token closing the bracket at i."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].token_type in _OPEN:
            depth += 1
        elif tokens[j].token_type in _CLOSE:
            depth -= 1
            if depth == 0:
                return j
    raise QueryError("SQL Failure: unbalanced parentheses in the statement")


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` without the [start, end) spans (sorted, not overlapping)."""
    out, pos = [], 0
    for start, end in sorted(spans):
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _lower_outside_quotes(text: str) -> str:
    parts = re.split(r"('(?:[^']|'')*')", text)
    return "".join(p if i % 2 else p.lower() for i, p in enumerate(parts))


_TIMELESS: dict[str, Prepared] = {}  # statements without time expressions: prepared once
_TIMELESS_MAX = 256


def prepare(text: str, now: datetime.datetime) -> Prepared:
    """Take AnyLog's additions off a SELECT and resolve its time expressions to literals.

    A statement with no time expression does not depend on `now`, so the same text asked again
    (a dashboard's query, the count a monitor repeats) is read once: two sqlglot tokenizations
    were a tenth of a small network query's CPU.  The Prepared returned is shared: read only."""
    found = _TIMELESS.get(text)
    if found is not None:
        return found
    prepared, timeless = _prepare(text, now)
    if timeless:
        if len(_TIMELESS) >= _TIMELESS_MAX:
            _TIMELESS.pop(next(iter(_TIMELESS)))
        _TIMELESS[text] = prepared
    return prepared


def _prepare(text: str, now: datetime.datetime) -> tuple[Prepared, bool]:
    text = text.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise QueryError("SQL Failure: the statement is empty")
    tokens = timeexpr.tokenize(text)
    depths = _depths(tokens)
    if tokens and (min(depths) < 0 or depths[-1] + (tokens[-1].token_type in _OPEN) != 0):
        raise QueryError("SQL Failure: unbalanced parentheses in the statement")
    if not tokens or tokens[0].token_type != TokenType.SELECT:
        raise QueryError("a network query must be one SELECT statement")
    cuts: list[tuple[int, int]] = []
    # the projection: from after SELECT [DISTINCT] to the FROM at depth 0
    start = 1
    while start < len(tokens) and tokens[start].token_type in (TokenType.DISTINCT, TokenType.ALL):
        start += 1
    end = next((i for i in range(start, len(tokens)) if depths[i] == 0
                and tokens[i].token_type == TokenType.FROM), None)
    if end is None:
        raise QueryError("a network query needs FROM <table>")
    prepared = Prepared(sql="")
    item: list[int] = []
    for i in list(range(start, end)) + [end]:
        if i == end or (depths[i] == 0 and tokens[i].token_type == TokenType.COMMA):
            if not item:
                raise QueryError("SQL Failure: an empty item in the projection")
            _item(text, tokens, depths, item, prepared, cuts)
            item = []
        else:
            item.append(i)
    # `limit N per col` (at depth 0, anywhere after FROM)
    for i in range(end, len(tokens) - 3):
        if depths[i] == 0 and tokens[i].token_type == TokenType.LIMIT \
                and tokens[i + 2].text.lower() == "per" and tokens[i + 1].token_type == TokenType.NUMBER:
            if i + 4 != len(tokens):
                raise QueryError("'limit N per <column>' must end the statement")
            if not tokens[i + 1].text.isdigit() or int(tokens[i + 1].text) < 1:
                raise QueryError(f"'limit {tokens[i + 1].text} per': the limit must be a positive integer")
            prepared.per = (int(tokens[i + 1].text), tokens[i + 3].text.lower())
            cuts.append((tokens[i].start, tokens[i + 3].end + 1))
    # period(..., and <filter>): the leading `and` of the fifth argument
    for i in range(end, len(tokens) - 1):
        if tokens[i].text.lower() == "period" and tokens[i + 1].token_type == TokenType.L_PAREN:
            close = _closing(tokens, i + 1)
            commas = [j for j in range(i + 2, close) if depths[j] == depths[i + 1] + 1
                      and tokens[j].token_type == TokenType.COMMA]
            if len(commas) >= 4 and tokens[commas[3] + 1].token_type == TokenType.AND:
                and_tok = tokens[commas[3] + 1]
                cuts.append((and_tok.start, and_tok.end + 1))
    plain = _cut(text, cuts)
    prepared.sql = timeexpr.resolve(plain, now)
    return prepared, prepared.sql == plain


def _item(text: str, tokens: list[Token], depths: list[int], idx: list[int], prepared: Prepared,
          cuts: list[tuple[int, int]]) -> None:
    """Record one projection item: its written text without casts, and its casts."""
    casts: list[Cast] = []
    base = depths[idx[0]]
    kept: list[tuple[int, int]] = []
    k = 0
    first_cast = None
    while k < len(idx):
        t = tokens[idx[k]]
        if depths[idx[k]] == base and t.token_type == TokenType.DCOLON:
            if k + 1 >= len(idx):
                raise QueryError(f"'{text[t.start:].split(',')[0]}': a cast name must follow '::'")
            name = tokens[idx[k + 1]].text.lower()
            arg = None
            stop = idx[k + 1]
            if k + 2 < len(idx) and tokens[idx[k + 2]].token_type == TokenType.L_PAREN:
                close = _closing(tokens, idx[k + 2])
                arg = text[tokens[idx[k + 2]].end + 1:tokens[close].start]
                stop = close
            casts.append(Cast(name, arg))
            cuts.append((t.start, tokens[stop].end + 1))
            first_cast = t.start if first_cast is None else first_cast
            while k < len(idx) and idx[k] <= stop:
                k += 1
            continue
        kept.append((t.start, t.end + 1))
        k += 1
    written = text[kept[0][0]:kept[-1][1]] if kept else ""
    if first_cast is not None:  # the written text without the cast spans
        written = _cut(written, [(s - kept[0][0], e - kept[0][0]) for s, e in cuts
                                 if kept[0][0] <= s < kept[-1][1]])
    prepared.items.append(_SPACES.sub(" ", _lower_outside_quotes(written)).strip())
    prepared.casts.append(tuple(casts))
