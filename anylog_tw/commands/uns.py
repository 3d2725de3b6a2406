"""The UNS streamer of dynamic MQTT topics: `run uns streamer`, `exit uns streamer`.

The values and the process are in `anylog_tw.msg.uns_streamer`; these read the words and answer."""

from __future__ import annotations

from anylog_tw.base.errors import OptionError
from anylog_tw.base.registry import Option, command

KEYWORDS = ("mqtt", "messages", "streaming", "background processes")


@command("run uns streamer", usage="run uns streamer [where frequency = <seconds>]",
         text="Write the plain values that dynamic topics received (a number or a word per topic, not a JSON "
              "object) as rows: every 'frequency' seconds (5 by default), one row per table that got a value since "
              "its last row, with the time and the latest value of each of its columns (the topic's last segment "
              "names the column, the rest of the topic the table).",
         examples=("run uns streamer", "run uns streamer where frequency = 3"), keywords=KEYWORDS,
         options=(Option("frequency", kind="float", default=5.0, help="seconds between rows"),), grant="admin")
async def run_uns_streamer(call):
    from anylog_tw.msg.uns_streamer import UnsStreamer

    frequency = call.opts["frequency"]
    if not 0.1 <= frequency <= 86400:
        raise OptionError(f"frequency must be between 0.1 and 86400 seconds, not {frequency:g}")
    call.node.add_process(UnsStreamer(frequency))
    return f"UNS streamer started: a row per table every {frequency:g} seconds"


@command("exit uns streamer", usage="exit uns streamer",
         text="Stop the UNS streamer; the values received since its last rows are written first.",
         examples=("exit uns streamer",), keywords=KEYWORDS, grant="admin")
async def exit_uns_streamer(call):
    from anylog_tw.msg.uns_streamer import UnsStreamer

    await call.node.stop_process(UnsStreamer.name)
    return "UNS streamer stopped"
