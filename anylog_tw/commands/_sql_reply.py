"""The reply of `sql`, made in the statement's thread: rows shaped and rendered off the reactor.

`shaper(...)` gives the function a Database calls with (columns, rows, rowcount, cut) in the
thread that fetched the rows; it returns a finished Reply whose text (a table, or JSON in
`json_text`) is already rendered, so the console, REST and peers only send it (review §2.7).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from anylog_tw.base.reply import Reply, render_table, to_json
from anylog_tw.storage import sqlfmt


def cut_note(dbms: str, limit: int) -> str:
    return (f"only the first {limit} rows are in this reply; ask for more with "
            f"'sql {dbms} limit = <rows> \"...\"'")


def shaper(fmt: str, dbms: str, limit: int | None, started: float,
           clock: Callable[[], float] = time.monotonic) -> Callable[..., Reply]:
    """The `shape` of `Database.statement` for `sql`: AnyLog's Query/Statistics shape, or a table."""

    def shape(columns: list[str] | None, rows: list[tuple], count: int, cut: bool) -> Reply:
        stats: dict[str, Any] = {"Count": len(rows) if columns is not None else count,
                                 "Time": sqlfmt.hms(clock() - started), "Nodes": 0}
        if cut:
            stats["Limit"] = limit
            stats["Note"] = cut_note(dbms, limit or 0)
        if columns is None:
            if fmt == "table":
                return Reply.of_text(f"{count} rows affected" if count >= 0 else "Done")
            data = {"Statistics": [stats]}
            return Reply(data=data, fmt="json", json_text=to_json(data))
        if fmt == "table":
            table = render_table(columns, [[sqlfmt.json_value(v) for v in row] for row in rows])
            return Reply.of_text(f"{table}\n\n{json.dumps({'Statistics': [stats]}, indent=2)}")
        data = {"Query": sqlfmt.reply_rows(columns, rows), "Statistics": [stats]}
        return Reply(data=data, fmt="json", json_text=to_json(data))

    return shape
