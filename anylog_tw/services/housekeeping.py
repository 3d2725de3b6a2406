"""System tasks every node runs on scheduler 0 (`get scheduler 0` shows them).

- `peer ping`: every minute, peers marked "not responding" are asked for their status; one that
  answers is marked active again, so the publisher, HA and `run client` use it at once instead
  of waiting for their own next attempt.
- `archive clean-up`: every hour, when the dictionary holds `archive_days = N`, the archive's day
  folders (`archive/YY/MM/DD`) older than N days are deleted, as `delete archive where days = N`
  does on demand.  Without `archive_days` nothing is ever deleted.
"""

from __future__ import annotations

import os
import shutil
import time

from twisted.logger import Logger

from anylog_tw.base.errors import AnyLogError, OptionError
from anylog_tw.net.peers import Peers

PING_INTERVAL = 60.0
ARCHIVE_INTERVAL = 3600.0
ARCHIVE_DAYS_KEY = "archive_days"

log = Logger()


def day_folders(archive_dir: str) -> list[tuple[str, float]]:
    """(path, UTC midnight of that day) for each `YY/MM/DD` folder under the archive."""
    found = []
    for yy in _numbered(archive_dir, 2):
        for mm in _numbered(os.path.join(archive_dir, yy), 2):
            for dd in _numbered(os.path.join(archive_dir, yy, mm), 2):
                try:
                    day = time.strptime(f"{yy}{mm}{dd}", "%y%m%d")
                except ValueError:
                    continue
                found.append((os.path.join(archive_dir, yy, mm, dd), float(_timegm(day))))
    return found


def _numbered(path: str, width: int) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if len(n) == width and n.isdigit()
                      and os.path.isdir(os.path.join(path, n)))
    except OSError:
        return []


def _timegm(t: time.struct_time) -> int:
    import calendar

    return calendar.timegm(t)


def delete_archive(archive_dir: str, days: int, now: float) -> list[str]:
    """Delete the day folders whose whole day ended more than `days` days before `now` (blocking).

    Returns the folders deleted; emptied month and year folders go too.  `days = 0` keeps today.
    """
    if days < 0:
        raise OptionError("'days' cannot be negative")
    cutoff = now - days * 86400
    removed = []
    for path, midnight in day_folders(archive_dir):
        if midnight + 86400 <= cutoff:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    months = {os.path.dirname(p) for p in removed}
    for path in [*months, *{os.path.dirname(m) for m in months}]:  # months first: a year empties after them
        try:
            os.rmdir(path)  # only when empty
        except OSError:
            pass
    return removed


async def ping_peers(node) -> int:
    """Ask every peer marked not responding for its status; returns how many were asked."""
    peers = node.component(Peers)
    down = [address for address, st in list(peers.states.items()) if st.status == "not responding"]
    for address in down:
        try:
            await peers.command(address, "get status", timeout=5.0)
        except AnyLogError:
            pass  # still down: the peer layer recorded why
    return len(down)


async def clean_archive(node) -> int:
    """The `archive clean-up` task: delete old day folders when `archive_days` is set."""
    days = node.dictionary.get(ARCHIVE_DAYS_KEY)
    if not days:
        return 0
    try:
        n = int(days)
    except ValueError:
        raise OptionError(f"'{ARCHIVE_DAYS_KEY}' is {days!r}: set it to a whole number of days") from None
    archive = node.dirs["archive_dir"]
    removed = await node.in_thread(delete_archive, archive, n, node.reactor.seconds())
    if removed:
        log.info("archive clean-up removed {n} day folders older than {days} days", n=len(removed), days=n)
    return len(removed)


def install(schedulers, node) -> None:
    """Add the system tasks to scheduler 0."""
    schedulers.add_system_task("peer ping", PING_INTERVAL, lambda: ping_peers(node))
    schedulers.add_system_task("archive clean-up", ARCHIVE_INTERVAL, lambda: clean_archive(node))
