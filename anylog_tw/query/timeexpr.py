"""AnyLog's time expressions, resolved to one UTC literal on the query node before sending.

Users write `now()`, `NOW() - 1 day`, `-3d`, `date() + 2 days`, `timestamp('now', 'start of day')`
or `timestamp(now, '- 1 day')` in a WHERE clause.  None of it is portable SQL, and evaluating it on
each operator would give every operator a different instant, so the query node replaces each
expression by a literal computed once from one `now`.  The statement is read with sqlglot's
tokenizer (positions, quoting and comments come from the library); only the token sequences that
form a time expression are replaced, everything else is kept byte for byte.

Literals use the storage's text form of timestamps (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), the form
SQLite compares as text; AnyLog's `...T...Z` form would compare wrongly there.
"""

from __future__ import annotations

import calendar
import datetime
import re

import sqlglot
from sqlglot.tokens import Token, TokenType

from anylog_tw.query.errors import QueryError

UTC = datetime.timezone.utc

# unit name (singular, plural, one letter) -> canonical unit
_UNIT_WORDS = {
    "second": "second", "minute": "minute", "hour": "hour", "day": "day", "week": "week",
    "month": "month", "year": "year",
}
UNITS: dict[str, str] = {}
for _word, _unit in _UNIT_WORDS.items():
    UNITS[_word] = _unit
    UNITS[_word + "s"] = _unit
LETTERS = {"y": "year", "m": "month", "w": "week", "d": "day", "h": "hour", "t": "minute", "s": "second"}

_COMPARISON = {TokenType.GT, TokenType.GTE, TokenType.LT, TokenType.LTE, TokenType.EQ, TokenType.NEQ,
               TokenType.BETWEEN}
_MODIFIER = re.compile(r"^\s*([+-])\s*(\d+)\s*([a-z]+)\s*$")
_START_OF = re.compile(r"^\s*start\s+of\s+(day|month|year)\s*$")


def unit_name(word: str, letters: bool = True) -> str | None:
    """`days` -> `day`, `t` -> `minute`; None when the word is no time unit."""
    w = word.lower()
    return UNITS.get(w) or (LETTERS.get(w) if letters else None)


def shift(value: datetime.datetime, count: int, unit: str) -> datetime.datetime:
    """`value` moved by `count` units; months and years move on the calendar (day clamped)."""
    if unit in ("month", "year"):
        months = value.month - 1 + count * (12 if unit == "year" else 1)
        year, month = value.year + months // 12, months % 12 + 1
        if not 1 <= year <= 9999:
            raise QueryError(f"the date moves out of range ({count} {unit}s from {value:%Y-%m-%d})")
        day = min(value.day, calendar.monthrange(year, month)[1])
        return value.replace(year=year, month=month, day=day)
    seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}[unit]
    try:
        return value + datetime.timedelta(seconds=seconds * count)
    except OverflowError:
        raise QueryError(f"the date moves out of range ({count} {unit}s from {value:%Y-%m-%d})") from None


def format_literal(value: datetime.datetime, date_only: bool = False) -> str:
    """The text a time expression becomes: UTC in the storage's one form (microseconds only when
    there are some), so it compares with stored times as text too."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if date_only:
        return value.strftime("%Y-%m-%d")
    return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")


def parse_instant(text: str) -> datetime.datetime:
    """A date or date-time string as a naive UTC datetime (an explicit zone is converted)."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        value = datetime.datetime.fromisoformat(s)
    except ValueError:
        raise QueryError(f"'{text}' is not a date or date-time (YYYY-MM-DD [HH:MM:SS[.ffffff]])") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def apply_modifier(value: datetime.datetime, modifier: str) -> datetime.datetime:
    """One SQLite-style modifier: `start of day|month|year`, `+1 month`, `- 1 day`."""
    text = modifier.lower()
    m = _START_OF.match(text)
    if m:
        if m.group(1) == "day":
            return value.replace(hour=0, minute=0, second=0, microsecond=0)
        if m.group(1) == "month":
            return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return value.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    m = _MODIFIER.match(text)
    unit = unit_name(m.group(3)) if m else None
    if unit is None:
        raise QueryError(f"'{modifier}' is not a date modifier (start of day|month|year, or +N unit)")
    count = int(m.group(2))
    return shift(value, -count if m.group(1) == "-" else count, unit)


# --- token scanning ----------------------------------------------------------------------------


def tokenize(text: str) -> list[Token]:
    try:
        return sqlglot.Dialect.get_or_raise("sqlite").tokenize(text)
    except sqlglot.errors.TokenError as e:
        raise QueryError(f"SQL Failure: {e}") from None


def _is(tok: Token, *types: TokenType) -> bool:
    return tok.token_type in types


def _word(tok: Token) -> str:
    return tok.text.lower() if tok.token_type not in (TokenType.STRING, TokenType.IDENTIFIER) else ""


def _offsets(tokens: list[Token], i: int, value: datetime.datetime,
             spaced_letters: bool = True) -> tuple[datetime.datetime, int]:
    """Read `(+|-) N unit` groups from token i on; -> (shifted value, index after them)."""
    while i + 2 < len(tokens) and _is(tokens[i], TokenType.PLUS, TokenType.DASH) \
            and _is(tokens[i + 1], TokenType.NUMBER):
        found = _unit_after(tokens, i + 1, spaced_letters)
        if found is None:
            break
        count, unit, nxt = found
        value = shift(value, -count if _is(tokens[i], TokenType.DASH) else count, unit)
        i = nxt
    return value, i


def _unit_after(tokens: list[Token], i: int, spaced_letters: bool = False) -> tuple[int, str, int] | None:
    """A NUMBER at i followed by a unit word (a letter only when written against the number,
    unless `spaced_letters`: after now() nothing else can follow)."""
    num = tokens[i]
    if not num.text.isdigit():
        return None
    if i + 1 < len(tokens):
        nxt = tokens[i + 1]
        adjacent = nxt.start == num.end + 1
        unit = unit_name(_word(nxt), letters=adjacent or spaced_letters)
        if unit is not None:
            return int(num.text), unit, i + 2
    return None


def _call_args(tokens: list[Token], i: int) -> tuple[list[list[Token]], int] | None:
    """The comma-separated arguments of a call whose `(` is at i; -> (args, index after `)`)."""
    if i >= len(tokens) or not _is(tokens[i], TokenType.L_PAREN):
        return None
    depth, args, current = 0, [], []
    for j in range(i, len(tokens)):
        t = tokens[j]
        if _is(t, TokenType.L_PAREN):
            depth += 1
            if depth == 1:
                continue
        elif _is(t, TokenType.R_PAREN):
            depth -= 1
            if depth == 0:
                if current or args:
                    args.append(current)
                return args, j + 1
        elif _is(t, TokenType.COMMA) and depth == 1:
            args.append(current)
            current = []
            continue
        current.append(t)
    return None


def _is_now(arg: list[Token]) -> bool:
    if len(arg) == 1:
        t = arg[0]
        return (t.token_type == TokenType.STRING and t.text.lower() == "now") or _word(t) == "now"
    return len(arg) == 3 and _word(arg[0]) == "now" and _is(arg[1], TokenType.L_PAREN) \
        and _is(arg[2], TokenType.R_PAREN)


def _sqlite_style(name: str, args: list[list[Token]], now: datetime.datetime) -> str | None:
    """`timestamp|date|datetime('now'|'<date>', modifiers...)`; None when it is a real SQL call."""
    if not args or any(len(a) != 1 or a[0].token_type != TokenType.STRING for a in args[1:]):
        return None
    first = args[0]
    if _is_now(first):
        value = now
    elif len(first) == 1 and first[0].token_type == TokenType.STRING:
        value = parse_instant(first[0].text)
    else:
        return None  # date(col), timestamp(col): SQL, not a time expression
    for modifier in args[1:]:
        value = apply_modifier(value, modifier[0].text)
    return format_literal(value, date_only=name == "date")


def _standalone_offset_allowed(tokens: list[Token], i: int) -> bool:
    """`-3d` alone means now - 3 days right after a comparison, BETWEEN, or BETWEEN's AND."""
    prev = tokens[i - 1]
    if _is(prev, *_COMPARISON):
        return True
    if not _is(prev, TokenType.AND):
        return False
    for j in range(i - 2, max(i - 12, -1), -1):
        if _is(tokens[j], TokenType.BETWEEN):
            return True
        if _is(tokens[j], TokenType.AND, TokenType.OR, TokenType.WHERE, *_COMPARISON):
            return False
    return False


def _now_call(tokens: list[Token], i: int) -> bool:
    return i + 2 < len(tokens) and _is(tokens[i + 1], TokenType.L_PAREN) and _is(tokens[i + 2], TokenType.R_PAREN)


def resolve(text: str, now: datetime.datetime) -> str:
    """The statement with every time expression replaced by a quoted UTC literal.

    `now` is the query's one instant (aware or naive UTC).  Text that is no time expression,
    including `date(col)` and a column called `timestamp`, is left as written.
    """
    now = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    tokens = tokenize(text)
    out: list[str] = []
    pos = i = 0
    while i < len(tokens):
        tok = tokens[i]
        word = _word(tok)
        replacement: tuple[str, int] | None = None
        if word in ("now", "date") and _now_call(tokens, i):
            value, end = _offsets(tokens, i + 3, now)
            if word == "date":
                value = value.replace(hour=0, minute=0, second=0, microsecond=0)
            replacement = (format_literal(value, word == "date"), end)
        elif word in ("timestamp", "date", "datetime") and i + 1 < len(tokens) \
                and _is(tokens[i + 1], TokenType.L_PAREN):
            call = _call_args(tokens, i + 1)
            literal = _sqlite_style(word, call[0], now) if call is not None else None
            if literal is not None:
                replacement = (literal, call[1])
        elif _is(tok, TokenType.PLUS, TokenType.DASH) and 0 < i < len(tokens) - 1 \
                and _is(tokens[i + 1], TokenType.NUMBER) and _standalone_offset_allowed(tokens, i) \
                and _unit_after(tokens, i + 1) is not None:
            value, end = _offsets(tokens, i, now, spaced_letters=False)
            replacement = (format_literal(value), end)
        if replacement is None:
            i += 1
            continue
        literal, end = replacement
        out.append(text[pos:tok.start])
        out.append("'" + literal + "'")
        pos = tokens[end - 1].end + 1
        i = end
    out.append(text[pos:])
    return "".join(out)


def evaluate(expression: str, now: datetime.datetime) -> datetime.datetime:
    """One time expression alone (`now() + 3 days`, `date() - 1 d`, `timestamp('now', ...)`) as UTC."""
    resolved = resolve(expression.strip(), now).strip()
    if len(resolved) < 2 or resolved[0] != "'" or resolved[-1] != "'" or "'" in resolved[1:-1]:
        raise QueryError(f"'{expression}' is not a time expression (now(), date(), timestamp(...), with "
                         f"optional +/- N unit)")
    return parse_instant(resolved[1:-1])
