"""`get ingest rate`: per table, rows, files and errors since the node started, and over the last hour.

What the web page charts, as a command like any other (so the console, REST and the page read the
same numbers, and the page needs nothing but the `read` grant).  The counts come from the
operator as it commits (`Metrics.ingest_history`); this module only reads them.
"""

from __future__ import annotations

import time

from anylog_tw.base.metrics import Metrics
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply


def _stamp(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) if seconds else ""


def rate_rows(history, dbms: str | None = None, table: str | None = None, series: bool = True) -> list[dict]:
    """One dict per table: totals, rows per second over the last minute and hour, and the series."""
    out = []
    minute = max(1, 60 // history.bucket)
    for d, t in history.tables():
        if (dbms and d != dbms) or (table and t != table):
            continue
        totals = history.totals(d, t)
        counts = history.series(d, t, "rows")
        row = {"dbms": d, "table": t, "rows": totals.rows, "files": totals.files, "errors": totals.errors,
               "last": _stamp(totals.last),
               "rate_minute": round(sum(counts[-minute:]) / (minute * history.bucket), 3),
               "rate_hour": round(sum(counts) / (len(counts) * history.bucket), 3)}
        if series:
            row["series"] = counts
            row["error_series"] = history.series(d, t, "errors")
        out.append(row)
    return out


COLUMNS = ("DBMS", "Table", "Rows", "Files", "Errors", "Rows/sec (1 min)", "Rows/sec (1 hour)", "Last")


@command("get ingest rate", usage="get ingest rate [where dbms = D and table = T and series = true and format = json]",
         text="Per table: the rows, files and errors the operator counted since the node started, the rows per "
              "second over the last minute and the last hour, and the time of the last file. In JSON, 'series' "
              "holds the rows of each 10-second bucket of the last hour (oldest first, the current bucket last) "
              "and 'end' the start time of the current bucket; the web page charts them (series = false leaves them out).",
         examples=("get ingest rate", "get ingest rate where dbms = lsl_demo and format = json"),
         keywords=("monitor", "operator", "data"), readonly=True, grant="read",
         options=(Option("dbms", help="only this dbms"), Option("table", help="only this table"),
                  Option("series", kind="bool", default=True, help="false: totals and rates only (JSON)"), FORMAT))
def get_ingest_rate(call):
    history = call.node.component(Metrics).ingest_history
    rows = rate_rows(history, call.opts["dbms"], call.opts["table"], call.opts["series"] and call.wants_json)
    if call.wants_json:
        return Reply.of_json({"bucket": history.bucket, "end": history.end(), "tables": rows})
    return Reply.of_table(COLUMNS, [(r["dbms"], r["table"], r["rows"], r["files"], r["errors"], r["rate_minute"],
                                     r["rate_hour"], r["last"]) for r in rows])
