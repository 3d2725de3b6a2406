"""Reply: what every command answers, and its two renderings (text and JSON).

A command builds one Reply; the console, REST, peers and scripts each render it the way their
reader wants.  Tables keep their rows as data, so `where format = json` needs no second code
path in the command.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

TEXT = "text"
JSON_FORMAT = "json"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def render_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> str:
    """A fixed-width text table in AnyLog's console style (`|` after every column)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, v in enumerate(row):
            first = v.split("\n", 1)[0]
            if len(first) > widths[i]:
                widths[i] = len(first)
    lines = []
    if title:
        lines.append(title)
    lines.append(" ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    lines.append("|".join("-" * w for w in widths) + "|")
    for row in cells:
        lines.append("|".join(v.ljust(w) for v, w in zip(row, widths)) + "|")
    return "\n".join(lines)


def to_json(data: Any) -> str:
    return json.dumps(data, default=str, ensure_ascii=False)


class Reply:
    """The outcome of one command.

    Exactly one of `text`, `data` (JSON-able) or a table (`columns` + `rows`) is the payload.  A
    table may also carry `data`: the JSON shape to use instead of a list of row objects (for
    example `get processes`, keyed by process name, as AnyLog answers).  `fmt` is the rendering
    the user asked for with `where format = ...`.
    """

    __slots__ = ("ok", "text", "data", "columns", "rows", "title", "fmt", "error_code", "status", "json_text")

    def __init__(self, ok=True, text=None, data=None, columns=None, rows=None, title=None,
                 fmt=TEXT, error_code=None, status=200, json_text=None):
        self.ok = ok
        self.text = text
        self.data = data
        self.columns = columns
        self.rows = rows
        self.title = title
        self.fmt = fmt
        self.error_code = error_code
        self.status = status
        # `data` already rendered as JSON, by a command that made a big reply in a thread (`sql`), so
        # that no front door renders it again on the reactor thread.
        self.json_text = json_text

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def of_text(cls, text: str) -> "Reply":
        return cls(text=text)

    @classmethod
    def of_json(cls, data: Any) -> "Reply":
        return cls(data=data, fmt=JSON_FORMAT)

    @classmethod
    def of_table(cls, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                 data: Any = None) -> "Reply":
        return cls(columns=list(columns), rows=[list(r) for r in rows], title=title, data=data)

    @classmethod
    def of_error(cls, message: str, code: str = "error", status: int = 400) -> "Reply":
        return cls(ok=False, text=message, error_code=code, status=status)

    @classmethod
    def coerce(cls, value: Any) -> "Reply":
        """What a handler returned, as a Reply: a Reply, text, None, or JSON-able data."""
        if isinstance(value, Reply):
            return value
        if value is None:
            return cls(text="")
        if isinstance(value, str):
            return cls(text=value)
        return cls.of_json(value)

    # -- renderings --------------------------------------------------------------------------

    @property
    def is_table(self) -> bool:
        return self.columns is not None

    def json_data(self) -> Any:
        """The payload as JSON-able data, whatever its kind."""
        if not self.ok:
            return {"error": {"code": self.error_code or "error", "message": self.text}}
        if self.data is not None:
            return self.data
        if self.is_table:
            return [dict(zip(self.columns, row)) for row in self.rows]
        return self.text

    def render(self, fmt: str | None = None) -> str:
        """The reply as the text a user reads: JSON when asked for, or when the payload is JSON."""
        if self.renders_json(fmt):
            if self.json_text is not None and self.ok and not self.is_table:
                return self.json_text
            return to_json(self.json_data())
        if not self.ok:
            return f"Error: {self.text}"
        if self.is_table:
            return render_table(self.columns, self.rows, self.title)
        return self.text or ""

    def renders_json(self, fmt: str | None = None) -> bool:
        """Whether `render(fmt)` gives JSON (the REST server picks its Content-Type from this)."""
        if (fmt or self.fmt) == JSON_FORMAT:
            return True
        return self.ok and self.data is not None and not self.is_table

    def __repr__(self) -> str:
        kind = "table" if self.is_table else ("json" if self.data is not None else "text")
        return f"<Reply ok={self.ok} {kind} {self.render()[:60]!r}>"
