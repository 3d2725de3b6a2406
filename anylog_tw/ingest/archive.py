"""Moving files out of the watch dir: renamed in place, archived (gzipped), deleted, or failed.

Blocking functions over paths, run in worker threads.  Each leaves the file either where it was
or complete at its destination, never half-written (`base/atomic.py` publishes every copy), and
only then is the source removed.  Doing a step twice gives the same result: a crash between the
copy and the removal finds the archived copy there on restart, keeps it and removes the source.

With `fsync` (the operator's default, `durable = true`) the archived copy and its directory are
synced before the source goes, so a power loss right after leaves the file in one of the two
places, complete.
"""

from __future__ import annotations

import os

from anylog_tw.base import atomic
from anylog_tw.base.filename import archive_subdir, error_name, tsd_date


def rename_in_place(directory: str, old: str, new: str) -> None:
    """Give a file its registered name (atomic within the directory)."""
    if old == new:
        return
    os.replace(os.path.join(directory, old), os.path.join(directory, new))


def archive(src: str, archive_dir: str, date: str, name: str, gz_in: bool, compress: bool,
            fsync: bool = True) -> str:
    """Put the file under `archive_dir/YY/MM/DD/` (gzipped when `compress`), then remove it.

    `name` is the archived name without `.gz`; a file that came gzipped stays as it is when
    compressing, and is unpacked when not.  An archived copy already there (the same 8-segment
    name: the same file, archived before a crash removed the source) is kept.
    """
    dest_dir = os.path.join(archive_dir, archive_subdir(date))
    os.makedirs(dest_dir, exist_ok=True)
    final = os.path.join(dest_dir, name + (".gz" if compress else ""))
    try:
        if compress == gz_in:
            return atomic.move(src, final, fsync=fsync)  # same file system: a rename, nothing copied
        atomic.publish(final, atomic.copy_writer(src, "gzip" if compress else "gunzip"), fsync=fsync)
    except FileExistsError:
        pass
    os.unlink(src)
    return final


def move_to_error(src: str, err_dir: str, name: str, reason: str, epoch: int, fsync: bool = True) -> str:
    """Move a failed file to the error dir as `<name>.err_<reason>.<epoch>.<type>` (a free name)."""
    os.makedirs(err_dir, exist_ok=True)
    while True:
        dest = os.path.join(err_dir, error_name(name, reason, epoch))
        try:
            return atomic.move(src, dest, fsync=fsync)
        except FileExistsError:
            epoch += 1


def delete(src: str) -> None:
    os.unlink(src)


def sweep(watch_dir: str, err_dir: str, archive_dir: str, started: float) -> None:
    """(In a thread.) The temp files a killed node left where the operator publishes (the watch
    dir, the error dir, the archive days a restart finishes into); only those older than `started`."""
    days = {tsd_date(started - back)[:6] for back in (0, 86400)}
    for directory in [watch_dir, err_dir] + [os.path.join(archive_dir, archive_subdir(d)) for d in days]:
        atomic.remove_stale_temps(directory, started)
