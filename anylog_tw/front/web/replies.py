"""What the page shows for a command's reply or a query's rows: pure functions over data.

The command box shows a table as a table and JSON as a tree, so the server says which it is (a
Reply knows; its text rendering has lost it).  The query box charts a time series when the rows
have one: a column whose every value is a timestamp and at least one whose every value is a
number.  Deciding that here keeps the browser code small and the rule testable.
"""

from __future__ import annotations

import calendar
from typing import Any

from anylog_tw.storage.schema import parse_timestamp

MAX_ROWS = 5000  # rows sent to the page; the reply says when there were more


def reply_payload(reply) -> dict:
    """A Reply as the page's JSON: kind `table`, `json`, `text`, or `ok: false` with the error."""
    if not reply.ok:
        return {"ok": False, "error": {"code": reply.error_code or "error", "message": reply.text or ""},
                "status": reply.status}
    if reply.renders_json():  # JSON asked for (`where format = json`), or JSON data
        return {"ok": True, "kind": "json", "data": reply.json_data()}
    if reply.is_table:
        rows = reply.rows[:MAX_ROWS]
        return {"ok": True, "kind": "table", "title": reply.title or "", "columns": list(reply.columns),
                "rows": rows, "truncated": len(reply.rows) > len(rows)}
    return {"ok": True, "kind": "text", "text": reply.text or ""}


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    return calendar.timegm(parsed.timetuple()) + parsed.microsecond / 1e6


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def time_series(columns: list[str], rows: list[list]) -> dict | None:
    """The chart of the rows: x (epoch seconds, ascending) and one y list per numeric column, or None.

    The time column is the first whose non-null values are all timestamps; the numeric columns are
    those whose non-null values are all numbers (at least one must be).  Fewer than two rows is no
    series.
    """
    if len(rows) < 2:
        return None
    time_index = None
    for i in range(len(columns)):
        values = [r[i] for r in rows if r[i] is not None]
        if values and all(_epoch(v) is not None for v in values):
            time_index = i
            break
    if time_index is None:
        return None
    numeric = [i for i in range(len(columns)) if i != time_index
               and any(r[i] is not None for r in rows) and all(r[i] is None or _is_number(r[i]) for r in rows)]
    if not numeric:
        return None
    points = sorted(((_epoch(r[time_index]), r) for r in rows if r[time_index] is not None), key=lambda p: p[0])
    return {"x_column": columns[time_index], "columns": [columns[i] for i in numeric],
            "x": [p[0] for p in points], "y": [[p[1][i] for p in points] for i in numeric]}


def query_payload(data: Any) -> dict:
    """An `sql` reply's JSON ({"Query": [rows], "Statistics": [...]}) as columns, rows and a chart."""
    if not isinstance(data, dict):
        return {"ok": True, "columns": [], "rows": [], "statistics": None, "chart": None, "data": data}
    records = data.get("Query") or []
    columns: list[str] = []
    for record in records[:MAX_ROWS]:
        if isinstance(record, dict):
            for key in record:
                if key not in columns:
                    columns.append(key)
    rows = [[record.get(c) for c in columns] for record in records[:MAX_ROWS] if isinstance(record, dict)]
    stats = data.get("Statistics")
    return {"ok": True, "columns": columns, "rows": rows, "truncated": len(records) > len(rows),
            "statistics": stats[0] if isinstance(stats, list) and stats else None,
            "chart": time_series(columns, rows)}
