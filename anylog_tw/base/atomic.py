"""File system primitives for publishing complete files: a rename that never replaces, a directory
fsync that makes a rename durable, and the touch that tells a directory watcher a file is there.  Used wherever a file appears under its final name
(peer transfers, the file commands, `time file rename`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_no_replace(src: str, dest: str) -> None:
    """Rename `src` to `dest` unless `dest` exists (FileExistsError), in one step where the kernel can.

    A rename, not a hard link plus an unlink, because the watcher learns of a complete file from
    IN_MOVED_TO: a file that arrives in the watch dir by a rename is taken at once.  Where
    RENAME_NOREPLACE is missing (not Linux, an old C library, a file system without it) the
    check and the rename are two steps.
    """
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), src, None, dest)  # EEXIST makes a FileExistsError
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dest)
    os.rename(src, dest)


def fsync_dir(path: str) -> None:
    """Make a rename in `path` durable (best effort: some file systems refuse a directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def announce(path: str) -> None:
    """Make a watcher of the directory see a file published with a hard link, now.

    A link raises only IN_CREATE, which watchers rightly ignore (it also comes when a file is
    opened to be written); opening the complete file for append and closing it raises
    IN_CLOSE_WRITE without changing a byte.  Without it the file waits for the next rescan.
    """
    try:
        with open(path, "ab"):
            pass
    except OSError:
        pass  # the file is there; a watcher's rescan will find it
