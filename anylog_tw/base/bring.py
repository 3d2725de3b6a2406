"""The bring language: how AnyLog names a value inside JSON, for policies and for data alike.

`blockchain get ... bring[.modifiers] <items>` (metadata/bring.py), mapping policies, the
MQTT client's `column.x.type = "bring [a][b]"` and the `dbms`/`table` rules all use it, so it
is read and evaluated here, once:

* **Keys** are taken whole between brackets, spaces and punctuation included:
  `[meta][station id]`, `[PM 2.5 (ug/m3)]`.  A key holding brackets or quotes is quoted:
  `['a]b']`, `["it's"]` (a backslash escapes the quote or itself).  `[]` walks a list: every
  element gives its own value (`Many`), and so one row each when a mapping reads it.  An
  unquoted key may end in a substring function: `[ip(rfind(.))]`, `find(x)`, `prefix(n)`,
  `suffix(n)`.
* **Literals** between keys are kept as written (`bring [a] _ [b]` gives `x_y`); two keys side
  by side are parted by a space; `separator = X` joins the results of several records.
* **Modifiers** after `bring.`: unique, first, recent, json, list, table (`.sort(i,j)`), count,
  null, ip_port, min, max, children.  `format_rows` applies the formats to records' rows
  (`blockchain get`); `compile_value` applies first, recent, unique, count, min, max, json,
  list and null to the one value a column takes.

`parse_bring` reads the text here; `bring_values.py` evaluates it (compile once with
`compile_key`/`compile_value`, evaluate many times).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from anylog_tw.base.errors import GrammarError

MISSING: Any = object()  # a key the value does not have (JSON null is a value: None)


class BringError(GrammarError):
    """A bring that cannot be read or used where it stands; the message says which part and why."""


class Many(list):
    """The values a `[]` walk found, one per list element: rows, not one value."""


@dataclass(frozen=True, slots=True)
class Segment:
    name: str | None  # None: `[]`, each element of a list
    func: tuple[str, str] | None = None  # (find|rfind|prefix|suffix, argument)


EACH = Segment(None)
Key = tuple[Segment, ...]

MODIFIERS = ("unique", "first", "recent", "json", "list", "table", "count", "null", "ip_port", "min", "max",
             "children")
VALUE_MODIFIERS = ("unique", "first", "recent", "json", "list", "count", "null", "min", "max")


@dataclass(frozen=True)
class Bring:
    text: str = ""
    items: tuple = ()  # ("key", Key) | ("lit", text)
    modifiers: tuple = ()  # (name, args)
    separator: str | None = None

    def has(self, name: str) -> bool:
        return any(m == name for m, _ in self.modifiers)

    @property
    def keys(self) -> list[Key]:
        return [k for kind, k in self.items if kind == "key"]


@dataclass
class Outcome:
    kind: str  # json, text, table
    value: Any
    columns: list | None = field(default=None)


# --- reading ----------------------------------------------------------------------------------

_HEAD = re.compile(r"\s*bring((?:\.[A-Za-z_]+(?:\([^)]*\))?)*)(?=[\s\[\"']|$)", re.IGNORECASE)
_MODIFIER = re.compile(r"\.([A-Za-z_]+)(\(([^)]*)\))?")
_FUNCTION = re.compile(r"^([^()]+)\((rfind|find|prefix|suffix)\((.*)\)\)$")


def is_bring(text: Any) -> bool:
    """Whether a rule's value is a bring (`"bring [a]"`) rather than a literal."""
    return isinstance(text, str) and _HEAD.match(text) is not None


def parse_bring(text: str, word: bool = False) -> Bring:
    """`[bring[.mod[.mod(args)]...]] items... [separator = X]` as a Bring.

    `word`: the text must start with `bring` (as in commands); a mapping policy's `"bring":
    "[created]"` may leave it out.
    """
    if not isinstance(text, str):
        raise BringError(f"a bring is text like '[a][b]', not {text!r}")
    m = _HEAD.match(text)
    if m is None and word:
        raise BringError(f"{text[:40]!r} does not start with 'bring'")
    modifiers: list = []
    start = 0
    if m is not None:
        start = m.end()
        for mm in _MODIFIER.finditer(m.group(1)):
            name = mm.group(1).lower()
            if name == "sort":
                if not any(n == "table" for n, _ in modifiers):
                    raise BringError("'.sort(i, j)' follows '.table', as in 'bring.table.sort(0)'")
                try:
                    modifiers.append(("sort", [int(a) for a in (mm.group(3) or "").split(",") if a.strip()]))
                except ValueError:
                    raise BringError(f"'.sort({mm.group(3)})' takes column numbers") from None
                continue
            if name not in MODIFIERS:
                raise BringError(f"unknown bring modifier '.{name}' (modifiers: {', '.join(MODIFIERS)}, table.sort)")
            modifiers.append((name, None))
    items, separator = _items(text, start)
    return Bring(text.strip(), tuple(items), tuple(modifiers), separator)


def _items(text: str, i: int) -> tuple[list, str | None]:
    items: list = []
    separator = None
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "[":
            key, i = read_key(text, i)
            items.append(("key", key))
        elif c in "'\"":
            lit, i = read_quoted(text, i, c)
            items.append(("lit", unescape(lit)))
        elif c == "]":
            raise BringError(f"unbalanced ']' at column {i + 1} of {text!r}")
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "[]'\"":
                j += 1
            word = text[i:j]
            low = word.lower()
            if low == "separator" or low.startswith("separator="):
                value, i = _separator(text, i + len("separator"))
                separator = unescape(value)
                continue
            items.append(("lit", unescape(word)))
            i = j
    return items, separator


def _separator(text: str, i: int) -> tuple[str, int]:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    if i >= n or text[i] != "=":
        raise BringError("'separator' is followed by '= X', e.g. 'separator = ,'")
    i += 1
    while i < n and text[i].isspace():
        i += 1
    if i >= n:
        raise BringError("'separator =' needs a value, e.g. 'separator = ,'")
    if text[i] in "'\"":
        return read_quoted(text, i, text[i])
    j = i
    while j < n and not text[j].isspace():
        j += 1
    return text[i:j], j


def read_quoted(text: str, i: int, quote: str) -> tuple[str, int]:
    """The text of a quoted string starting at `i` (backslash escapes), and the index after it."""
    out = []
    j, n = i + 1, len(text)
    while j < n and text[j] != quote:
        if text[j] == "\\" and j + 1 < n and text[j + 1] in (quote, "\\"):
            j += 1
        out.append(text[j])
        j += 1
    if j >= n:
        raise BringError(f"unterminated quote at column {i + 1}: {text[i:i + 30]!r}")
    return "".join(out), j + 1


def read_key(text: str, i: int) -> tuple[Key, int]:
    """`[a][b c]['d]'][]` from `i`: the segments, and the index after the last `]`."""
    segs: list[Segment] = []
    n = len(text)
    while i < n and text[i] == "[":
        j = i + 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] in "'\"":
            name, k = read_quoted(text, j, text[j])
            while k < n and text[k] in " \t":
                k += 1
            if k >= n or text[k] != "]":
                raise BringError(f"expected ']' after the quoted key {name!r} at column {k + 1}")
            segs.append(Segment(name))
            i = k + 1
            continue
        close = text.find("]", i + 1)
        inner = text.find("[", i + 1)
        if close < 0:
            raise BringError(f"unbalanced '[' at column {i + 1}: no matching ']'")
        if 0 <= inner < close:
            raise BringError(f"a key holding '[' is quoted: ['...'] (column {inner + 1} of {text!r})")
        content = text[i + 1:close].strip()
        if not content:
            segs.append(EACH)
        else:
            name, func = split_function(content)
            segs.append(Segment(name, func))
        i = close + 1
    return tuple(segs), i


def parse_key(text: str) -> Key:
    """One key path, such as a mapping policy's `readings` (`data` or `[data]` or `['my data']`)."""
    t = text.strip()
    if not t.startswith("["):
        return (Segment(t),)
    key, end = read_key(t, 0)
    if t[end:].strip():
        raise BringError(f"{text!r} is one key path like [a][b]; {t[end:].strip()!r} follows it")
    return key


def format_key(key: Iterable[Segment | str]) -> str:
    """The bring text that names `key` (quoting names that need it): `parse_key` reads it back."""
    out = []
    for seg in key:
        name = seg if isinstance(seg, str) else seg.name
        if name is None:
            out.append("[]")
        elif (name and name == name.strip() and not any(c in name for c in "[]'\"\\")
              and not _FUNCTION.match(name)):
            out.append(f"[{name}]")
        else:
            out.append("['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']")
    return "".join(out)


def unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def split_function(segment: str) -> tuple[str, tuple[str, str] | None]:
    m = _FUNCTION.match(segment)
    if not m:
        return segment, None
    return m.group(1), (m.group(2), m.group(3).strip().strip("'\""))
