"""Moving files out of the watch dir: renamed in place, archived (gzipped), deleted, or failed.

Blocking functions over paths, run in worker threads.  Each leaves the file either where it was
or complete at its destination, never half-written: copies go to a temporary name in the
destination directory and are then renamed over the final name, and only then is the source
removed.  Doing a step twice gives the same result (a crash between the copy and the removal
just repeats the copy on restart).

Durability is the same as the databases' (SQLite WAL with synchronous=NORMAL): safe across a
process crash (SIGKILL), where the OS keeps every write; nothing is fsync'ed per file, which
would cost more than the insert itself on a busy disk.
"""

from __future__ import annotations

import gzip
import os
import shutil

from anylog_tw.base.filename import archive_subdir, error_name

_BUF = 1 << 20


def rename_in_place(directory: str, old: str, new: str) -> None:
    """Give a file its registered name (atomic within the directory)."""
    if old == new:
        return
    os.replace(os.path.join(directory, old), os.path.join(directory, new))


def archive(src: str, archive_dir: str, date: str, name: str, gz_in: bool, compress: bool) -> str:
    """Put the file under `archive_dir/YY/MM/DD/` (gzipped when `compress`), then remove it.

    `name` is the archived name without `.gz`; a file that came gzipped stays as it is when
    compressing, and is unpacked when not.
    """
    dest_dir = os.path.join(archive_dir, archive_subdir(date))
    os.makedirs(dest_dir, exist_ok=True)
    final = os.path.join(dest_dir, name + (".gz" if compress else ""))
    tmp = final + ".part"
    if compress == gz_in:
        try:
            os.replace(src, final)  # same filesystem: a rename, nothing copied
            return final
        except OSError as e:
            if e.errno != 18:  # EXDEV: another filesystem, copy below
                raise
        shutil.copyfile(src, tmp)
    else:
        opener = gzip.open if gz_in else open
        with opener(src, "rb") as fin, open(tmp, "wb") as raw:
            if compress:
                with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, compresslevel=1, mtime=0) as fout:
                    shutil.copyfileobj(fin, fout, _BUF)
            else:
                shutil.copyfileobj(fin, raw, _BUF)
    os.replace(tmp, final)
    os.unlink(src)
    return final


def move_to_error(src: str, err_dir: str, name: str, reason: str, epoch: int) -> str:
    """Move a failed file to the error dir as `<name>.err_<reason>.<epoch>.<type>` (a free name)."""
    os.makedirs(err_dir, exist_ok=True)
    while True:
        dest = os.path.join(err_dir, error_name(name, reason, epoch))
        if not os.path.exists(dest):
            break
        epoch += 1
    try:
        os.replace(src, dest)
    except OSError as e:
        if e.errno != 18:  # EXDEV: another filesystem, copy instead
            raise
        shutil.copyfile(src, dest + ".part")
        os.replace(dest + ".part", dest)
        os.unlink(src)
    return dest


def delete(src: str) -> None:
    os.unlink(src)
