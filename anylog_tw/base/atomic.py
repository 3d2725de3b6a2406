"""Publishing complete files: the one way a file appears under its final name.

Every writer of a file others may read (the archive, the publisher's backup, the error dir, the
file commands, a REST PUT into the watch dir, the ledger, a table backup) goes through here:

* the bytes go to a hidden temporary name in the target directory (`.<name>.<random>.tmp`, which
  the watcher never takes), so nobody sees half a file and the final rename cannot cross file
  systems;
* the temp file is fsynced, renamed to its final name without replacing one that exists (unless
  the caller asks to replace), and the directory is fsynced, so after a power loss the file is
  there complete or not at all;
* on any failure (a full disk, a corrupt gzip, a bug in the writer) the temp file is removed:
  nothing half-written is left behind, not even a `.part`.

`move` renames where it can and copies through `publish` where the source is on another file
system (EXDEV).  `fsync=False` skips the syncs for callers that chose speed over durability
(`run operator where durable = false`).  Blocking functions: run them in a worker thread.  The announce helper is for files published
with a hard link (peer transfers), which raise no event a watcher takes.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import os
import shutil
import sys
import tempfile
from typing import BinaryIO, Callable


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


_BUF = 1 << 20


class TempFile:
    """A hidden temp file in `directory`, published under a final name or removed.

    Use as a context manager: write to `.file`, then `publish(final)`; leaving the block without
    publishing (or with an exception) removes the temp file.  For writers that learn the final
    name only at the end (a backup is named after its content's hash).
    """

    def __init__(self, directory: str, hint: str = "file", fsync: bool = True):
        self.directory = directory or "."
        self.fsync = fsync
        fd, self.path = tempfile.mkstemp(prefix=f".{hint}.", suffix=".tmp", dir=self.directory)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.published: str | None = None

    def __enter__(self) -> "TempFile":
        return self

    def __exit__(self, *exc) -> None:
        if self.published is None:
            self.discard()

    def publish(self, final: str, replace: bool = False, mode_from: str | None = None) -> str:
        """Sync the bytes, give them `final` (FileExistsError when it exists and not `replace`),
        sync the directory.  On failure the temp file stays for `__exit__` to remove."""
        if os.path.dirname(os.path.abspath(final)) != os.path.abspath(self.directory):
            raise ValueError(f"{final} is not in {self.directory}")
        self.file.flush()
        if self.fsync:
            os.fsync(self.file.fileno())
        self.file.close()
        if mode_from is not None:
            shutil.copymode(mode_from, self.path)
        else:
            os.chmod(self.path, 0o644)  # mkstemp's 0600 would hide an archive from its readers
        if replace:
            os.replace(self.path, final)
        else:
            rename_no_replace(self.path, final)
        self.published = final
        if self.fsync:
            fsync_dir(self.directory)
        return final

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def publish(final: str, write: Callable[[BinaryIO], None] | bytes, replace: bool = False, fsync: bool = True,
            mode_from: str | None = None) -> str:
    """Make `final` hold what `write(file)` writes (or the bytes given), all or nothing."""
    directory, name = os.path.split(os.path.abspath(final))
    with TempFile(directory, name, fsync) as t:
        if isinstance(write, (bytes, bytearray, memoryview)):
            t.file.write(write)
        else:
            write(t.file)
        return t.publish(final, replace, mode_from)


def copy_writer(src: str, transform: str = "") -> Callable[[BinaryIO], None]:
    """A `publish` writer that copies `src` as it is, gzipped (`transform="gzip"`) or unpacked ("gunzip")."""

    def write(out: BinaryIO) -> None:
        opener = gzip.open if transform == "gunzip" else open
        with opener(src, "rb") as fin:
            if transform == "gzip":
                with gzip.GzipFile(filename=os.path.basename(src), mode="wb", fileobj=out, compresslevel=1,
                                   mtime=0) as z:
                    shutil.copyfileobj(fin, z, _BUF)
            else:
                shutil.copyfileobj(fin, out, _BUF)

    return write


def move(src: str, final: str, replace: bool = False, fsync: bool = True) -> str:
    """Rename `src` to `final` (another directory of the same file system), or copy it through a temp
    file there and remove the source (another file system).  Never replaces unless asked."""
    try:
        if replace:
            os.replace(src, final)
        else:
            rename_no_replace(src, final)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        publish(final, copy_writer(src), replace, fsync, mode_from=src)
        os.unlink(src)
        return final
    if fsync:
        fsync_dir(os.path.dirname(os.path.abspath(final)))
    return final


def remove_stale_temps(directory: str, older_than: float) -> int:
    """Remove the temp files `publish` left in `directory` when its process was killed (SIGKILL
    cannot clean up), those last changed before `older_than` (a wall-clock time: the start of the
    process that sweeps, so its own temps are never touched).  The number removed."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed
