"""Streaming buffers: `set buffer threshold`, `flush buffers`, `get streaming`, `run streamer`, `exit streamer`."""

from __future__ import annotations

import time

from anylog_tw.base.errors import CommandError
from anylog_tw.base.process import NodeProcess
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands.files import confine_options
from anylog_tw.ingest.streamer import ALL, Streamer


def _volume_text(volume: int) -> str:
    return f"{volume:,} bytes"


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g} seconds"


@command("set buffer threshold", grant="admin",
         usage="set buffer threshold where [dbms_name = D and table_name = T and] time = T and volume = V "
               "[and write_immediate = false]",
         text="Set when streaming buffers become files: after 'time' from a buffer's first row, or when it holds "
              "'volume' bytes, whichever comes first. Without dbms_name the defaults change (60 seconds and 10,000 "
              "bytes at start); with dbms_name only that database, with table_name only that table. 'time = 0 and "
              "volume = 0' restores the defaults of the scope. write_immediate is accepted, but rows still reach "
              "the database through files.",
         examples=("set buffer threshold where time = 30 seconds and volume = 1MB",
                   "set buffer threshold where dbms_name = lsl_demo and table_name = ping_sensor and time = 5 seconds",
                   "set buffer threshold where time = 0 and volume = 0"),
         keywords=("streaming", "data", "configuration"),
         options=(Option("dbms_name", help="the database (all when omitted)"),
                  Option("dbms", help="same as dbms_name"),
                  Option("table_name", help="the table (needs dbms_name)"),
                  Option("table", help="same as table_name"),
                  Option("time", kind="seconds", help="seconds from the first row to the flush"),
                  Option("volume", kind="size", help="bytes that trigger a flush (KB, MB, GB)"),
                  Option("write_immediate", kind="bool", help="accepted; rows still go through files")))
def set_buffer_threshold(call):
    opts = call.opts
    dbms = (opts["dbms_name"] or opts["dbms"] or ALL).lower()
    table = (opts["table_name"] or opts["table"] or ALL).lower()
    if opts["time"] is None and opts["volume"] is None and opts["write_immediate"] is None:
        raise CommandError("set buffer threshold needs time, volume or write_immediate "
                           "(e.g. 'set buffer threshold where time = 30 seconds and volume = 10KB')")
    if (opts["time"] or 0) < 0:
        raise CommandError("time must not be negative")
    streamer = call.node.component(Streamer)
    th = streamer.set_thresholds(dbms, table, opts["time"], opts["volume"], opts["write_immediate"])
    scope = "all tables" if dbms == ALL else (f"database {dbms}" if table == ALL else f"{dbms}.{table}")
    return f"Streaming thresholds for {scope}: {_seconds_text(th.time)} and {_volume_text(th.volume)}"


@command("flush buffers", grant="write", usage="flush buffers",
         text="Write every streaming buffer to the watch dir now, whatever its thresholds.",
         examples=("flush buffers",), keywords=("streaming", "data"))
async def flush_buffers(call):
    files = await call.node.component(Streamer).flush_all()
    return f"Flushed {files} buffer{'s' if files != 1 else ''}"


def _stamp(seconds: float | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds else ""


@command("get streaming", grant="read", usage="get streaming [config] [where format = json]",
         text="Show the streaming buffers: the default thresholds, rows buffered and flushed, and per dbms.table the "
              "file-mode PUTs, streaming calls and rows, cached rows, thresholds, buffer fill and time left.",
         examples=("get streaming", "get streaming config", "get streaming where format = json"),
         keywords=("streaming", "monitor", "data"), options=(FORMAT,), nargs=(0, 1), readonly=True)
def get_streaming(call):
    if call.args and call.args[0].lower() != "config":
        raise CommandError(f"get streaming takes 'config' or nothing, not {call.args[0]!r}")
    streamer = call.node.component(Streamer)
    d = streamer.defaults
    if call.args:
        rows = [("*", "*", d.time, d.volume, d.immediate)]
        rows += [(k[0], k[1], t.time, t.volume, t.immediate) for k, t in sorted(streamer.scoped.items())]
        return Reply.of_table(("DBMS", "Table", "Time (sec)", "Volume (bytes)", "Immediate"), rows)
    summary = {"Default time": d.time, "Default volume": d.volume, "Default immediate": d.immediate,
               "Buffered rows": streamer.buffered_rows, "Flushed rows": streamer.flushed_rows}
    columns = ("DBMS-Table", "Put files", "Put rows", "Streaming calls", "Streaming rows", "Cached rows",
               "Immediate", "Threshold volume (KB)", "Buffer fill (%)", "Threshold time (sec)", "Time left (sec)",
               "Last process")
    rows, tables = [], {}
    for (dbms, table), s in sorted(streamer.stats.items()):
        th = streamer.thresholds(dbms, table)
        cached_rows, cached_bytes = streamer.cached(dbms, table)
        fill = round(100.0 * cached_bytes / th.volume, 1) if th.volume else 0.0
        left = round(streamer.time_left(dbms, table), 1)
        row = (f"{dbms}.{table}", s.put_files, s.put_rows, s.streaming_calls, s.streaming_rows, cached_rows,
               th.immediate, round(th.volume / 1024, 2), fill, th.time, left, _stamp(s.last_process))
        rows.append(row)
        tables[f"{dbms}.{table}"] = dict(zip(columns[1:], row[1:]))
    title = (f"Streaming: default thresholds {_seconds_text(d.time)} and {_volume_text(d.volume)}, "
             f"immediate {d.immediate}; buffered rows {streamer.buffered_rows}, flushed rows {streamer.flushed_rows}")
    return Reply.of_table(columns, rows, title=title, data={"summary": summary, "tables": tables})


class StreamerProcess(NodeProcess):
    """The "Streamer" row of `get processes`: the buffers always flush on time; this names the dirs."""

    name = "Streamer"
    exit_command = "exit streamer"

    def __init__(self, streamer: Streamer, dirs: dict[str, str]):
        self.streamer = streamer
        self.dirs = dirs

    def startService(self):
        NodeProcess.startService(self)
        self.streamer.dirs = dict(self.dirs)

    def stopService(self):
        NodeProcess.stopService(self)
        self.streamer.dirs = {}

    def details(self) -> str:
        d = self.streamer.defaults
        return f"Default streaming thresholds are {_seconds_text(d.time)} and {_volume_text(d.volume)}"


@command("run streamer", grant="admin", usage="run streamer [where prep_dir = P and watch_dir = W and err_dir = E]",
         text="Show the Streamer process and, optionally, send streaming files to other directories. Buffers are "
              "written on their time and volume thresholds whether or not the streamer runs (AnyLog needs it for "
              "the time threshold; here it is always on).",
         examples=("run streamer", "run streamer where watch_dir = !watch_dir"),
         keywords=("streaming", "background processes"),
         options=(Option("prep_dir", help="accepted for AnyLog scripts: files are written through a hidden temp "
                                          "name in the watch dir itself"),
                  Option("watch_dir"), Option("err_dir")))
def run_streamer(call):
    node = call.node
    node.check_free(StreamerProcess.name)
    confine_options(call, "prep_dir", "watch_dir", "err_dir")
    dirs = {k: v for k, v in call.opts.items() if v}
    node.add_process(StreamerProcess(node.component(Streamer), dirs))
    return "Streamer running"


@command("exit streamer", grant="admin", usage="exit streamer", text="Stop the Streamer process (buffers still flush on time).",
         examples=("exit streamer",), keywords=("streaming", "background processes"))
async def exit_streamer(call):
    await call.node.stop_process(StreamerProcess.name)
    return "Streamer stopped"
