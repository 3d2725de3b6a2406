"""`delete archive`: the archive of ingested files, kept by day, trimmed on demand or by the system scheduler."""

from __future__ import annotations

from anylog_tw.base.registry import Option, command
from anylog_tw.services.housekeeping import ARCHIVE_DAYS_KEY, delete_archive


@command("delete archive", grant="admin", usage="delete archive where days = N",
         text="Delete the archive's day folders (archive_dir/YY/MM/DD) older than N days; 0 keeps only today. To "
              f"do it every hour on the system scheduler, set '{ARCHIVE_DAYS_KEY} = N' (see 'get scheduler 0', task "
              "'archive clean-up').",
         examples=("delete archive where days = 30", "delete archive where days = 0"),
         keywords=("archive", "high availability", "configuration"),
         options=(Option("days", kind="int", required=True, help="how many days to keep"),))
async def delete_archive_command(call):
    node = call.node
    removed = await node.in_thread(delete_archive, node.dirs["archive_dir"], call.opts["days"],
                                   node.reactor.seconds())
    return f"Deleted {len(removed)} archive day folders older than {call.opts['days']} days"
