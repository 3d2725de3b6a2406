"""The local file utilities behind `file copy|move|delete|test|hash|compress|decompress`, `get files`,
`get directories` and `get archived files`: blocking functions over paths, run in worker threads.

Every write is published through `base/atomic.py`: a hidden temporary name in the destination
directory, renamed to its final name only once it is complete and fsync'ed, so a failure (a full
disk, a corrupt gzip, a crash) leaves no half-written file behind.
An existing destination is kept unless the caller says to replace it, and then it is replaced in
one rename: a user's typo should not cost a file.

Errors are `CommandError`/`NotFound` with a message that names the path and what to do, never a
bare `OSError`.
"""

from __future__ import annotations

import datetime
import gzip
import os
import shutil
import stat
import zlib
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterable, Iterator

from anylog_tw.base import atomic
from anylog_tw.base.errors import CommandError, NotFound
from anylog_tw.base.filename import archive_subdir, file_hash, parse_file_name
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.base.timefmt import format_utc

_BUF = 1 << 20

# --- paths --------------------------------------------------------------------------------------


def absolute(path: str) -> str:
    """A path as typed (`~` expanded, relative to the working directory), made absolute."""
    if not path:
        raise CommandError("a file path is empty")
    if "\x00" in path:
        raise CommandError(f"path {path!r} holds a NUL character")
    full = os.path.abspath(os.path.expanduser(path))
    if path.endswith(("/", os.sep)) and not full.endswith(os.sep):
        full += os.sep  # "a directory": `destination` keeps the source's name under it
    return full


def is_inside(path: str, roots: Iterable[str]) -> bool:
    """Whether `path`, with every symbolic link resolved, lies in one of `roots` (resolved too).

    Resolving first is what makes `home/../etc` and a link from the home to `/etc` count as
    outside.
    """
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def confine(path: str, roots: Iterable[str], who: str) -> str:
    """`path` with every link resolved, or a CommandError when it lies outside `roots`.

    The resolved path is what the caller gets back, so a link swapped in after the check cannot
    redirect the work to where the check did not look.
    """
    full = absolute(path)
    if not is_inside(full, roots):
        raise CommandError(f"path {path!r} is outside this node's home and work directories; {who} may only "
                           f"use paths inside them (the node's owner, at its prompt or in its startup script, "
                           f"may go further; see docs/security.md)")
    real = os.path.realpath(full)
    return real + os.sep if full.endswith(os.sep) and not real.endswith(os.sep) else real


def path_checker(origin, roots: Iterable[str]) -> Callable[[str], str]:
    """How a caller's paths are read: the one rule for every command that takes a path.

    The owner (the node's prompt and startup scripts) may name any path; every other caller
    (console, REST, peers, their scheduled tasks and scripts) stays inside `roots` (the home first,
    then the work directories), with `..` and symbolic links resolved before the check; a relative
    path is read from the home.
    """
    if origin.grant == "owner":
        return absolute
    fixed = tuple(roots)
    home = fixed[0]
    who = f"{origin.label} (grant '{origin.grant}')"

    def check(path: str) -> str:
        if path and not os.path.isabs(path) and not path.startswith("~"):
            path = os.path.join(home, path)  # relative to the home, not to where the process was started
        return confine(path, fixed, who)

    return check


def destination(src: str, dest: str, name: str | None = None) -> str:
    """Where a copy, move or (de)compression of `src` lands: `dest` itself, or `dest/<name>` when
    `dest` is a directory (an existing one, or any path written with a trailing slash)."""
    name = name or os.path.basename(src)
    if dest.endswith(("/", os.sep)) or os.path.isdir(dest):
        if not os.path.isdir(dest):
            raise NotFound(f"directory {dest!r} does not exist (create it first, or give a file name)")
        return os.path.join(absolute(dest), name)
    return absolute(dest)


def _regular_file(path: str, what: str = "file") -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"{what} {path!r} does not exist") from None
    except OSError as e:
        raise CommandError(f"cannot read {what} {path!r}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CommandError(f"{path!r} is a directory; these commands take one file")
    if not stat.S_ISREG(st.st_mode):
        raise CommandError(f"{path!r} is not a regular file")
    return st


def _directory(path: str) -> str:
    full = absolute(path)
    if not os.path.exists(full):
        raise NotFound(f"directory {path!r} does not exist")
    if not os.path.isdir(full):
        raise CommandError(f"{path!r} is a file, not a directory")
    return full


def _target_dir(dest: str) -> None:
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise NotFound(f"directory {parent!r} does not exist (create it first)")


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


@contextmanager
def _os_errors(action: str) -> Iterator[None]:
    """OSError as a CommandError that says what was being done ("copy a to b: No space left")."""
    try:
        yield
    except gzip.BadGzipFile:
        raise  # an OSError too, but the caller says what is wrong with the data
    except OSError as e:
        raise CommandError(f"cannot {action}: {e.strerror or e}") from None


# --- writing atomically -------------------------------------------------------------------------


def _exists_error(dest: str) -> CommandError:
    return CommandError(f"{dest!r} exists; add 'where overwrite = true' to replace it, or give another name")


def write_atomically(dest: str, write: Callable[[BinaryIO], None], overwrite: bool = False,
                     mode_from: str | None = None) -> str:
    """Write `dest` through a temporary file in its directory (`atomic.publish`); on any failure
    nothing is left."""
    _target_dir(dest)
    if not overwrite and os.path.lexists(dest):
        raise _exists_error(dest)
    if os.path.isdir(dest):
        raise CommandError(f"{dest!r} is a directory")
    try:
        return atomic.publish(dest, write, replace=overwrite, mode_from=mode_from)
    except FileExistsError:
        raise _exists_error(dest) from None


# --- the commands' work -------------------------------------------------------------------------


def _source_and_target(src: str, dest: str, done: str) -> tuple[str, str]:
    """(the source, checked to be a regular file; where it lands), never the same file."""
    src = absolute(src)
    _regular_file(src)
    target = destination(src, dest)
    if _same_file(src, target):
        raise CommandError(f"{src!r} cannot be {done} onto itself")
    return src, target


def copy_file(src: str, dest: str, overwrite: bool = False) -> str:
    """Copy `src` to `dest` (a file, or a directory for the same name); returns the new path."""
    src, target = _source_and_target(src, dest, "copied")
    with _os_errors(f"copy {src} to {target}"):
        return write_atomically(target, atomic.copy_writer(src), overwrite, mode_from=src)


def move_file(src: str, dest: str, overwrite: bool = False) -> str:
    """Move `src` to `dest`: a rename on the same file system, else a complete copy, then the removal."""
    src, target = _source_and_target(src, dest, "moved")
    _target_dir(target)
    if os.path.isdir(target):
        raise CommandError(f"{target!r} is a directory")
    with _os_errors(f"move {src} to {target}"):
        try:
            return atomic.move(src, target, replace=overwrite)  # a rename, or a copy to another file system
        except FileExistsError:
            raise _exists_error(target) from None


def delete_file(path: str) -> str:
    path = absolute(path)
    _regular_file(path)
    with _os_errors(f"delete {path}"):
        os.unlink(path)
    return path


def file_exists(path: str) -> bool:
    """AnyLog's `file test`: True when the path names an existing file (not a directory)."""
    return os.path.isfile(absolute(path))


def compress_file(src: str, dest: str | None = None, overwrite: bool = False) -> str:
    """gzip `src` to `dest` (default: `<src>.gz` beside it); the source stays."""
    src = absolute(src)
    _regular_file(src)
    name = os.path.basename(src) + ".gz"
    target = destination(src, dest, name) if dest else os.path.join(os.path.dirname(src), name)
    if _same_file(src, target):
        raise CommandError(f"{src!r} cannot be compressed onto itself")

    def write(out: BinaryIO) -> None:
        with open(src, "rb") as f, gzip.GzipFile(filename=os.path.basename(src), mode="wb", fileobj=out) as z:
            shutil.copyfileobj(f, z, _BUF)

    with _os_errors(f"compress {src} to {target}"):
        return write_atomically(target, write, overwrite, mode_from=src)


def decompressed_name(name: str) -> str:
    """`x.json.gz` -> `x.json`; a name without `.gz` gets `.dat` added, as AnyLog does."""
    if name.lower().endswith(".gz") and len(name) > 3:
        return name[:-3]
    return name + ".dat"


def decompress_file(src: str, dest: str | None = None, overwrite: bool = False) -> str:
    """Unpack the gzip `src` to `dest` (default: beside it, without `.gz`); the source stays.

    A file that is not gzip, or is truncated, is refused and nothing is written.
    """
    src = absolute(src)
    _regular_file(src)
    name = decompressed_name(os.path.basename(src))
    target = destination(src, dest, name) if dest else os.path.join(os.path.dirname(src), name)
    if _same_file(src, target):
        raise CommandError(f"{src!r} cannot be decompressed onto itself")

    def write(out: BinaryIO) -> None:
        with gzip.open(src, "rb") as z:
            shutil.copyfileobj(z, out, _BUF)

    try:
        with _os_errors(f"decompress {src} to {target}"):
            return write_atomically(target, write, overwrite, mode_from=src)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CommandError(f"{src!r} is not a complete gzip file ({e or 'it ends too early'}); nothing was written") \
            from None


def hash_file(path: str, dbms: str | None = None, table: str | None = None) -> str:
    """The hash the operator gives this file (spec §3.4): md5 of `dbms.table` then the (uncompressed) data.

    dbms and table come from the file's name unless given; a `.gz` file is hashed by its data,
    so it has the same hash as the file it was compressed from.
    """
    path = absolute(path)
    _regular_file(path)
    name = os.path.basename(path)
    gz = name.lower().endswith(".gz")
    if not (dbms and table):
        try:
            parsed = parse_file_name(name)
        except IngestError as e:
            raise CommandError(f"{name!r} does not name its dbms and table ({e}); give them: "
                               f"file hash {path} where dbms = <dbms> and table = <table>") from None
        dbms, table, gz = dbms or parsed.dbms, table or parsed.table, parsed.gz
    dbms, table = dbms.lower(), table.lower()

    def blocks(f: BinaryIO) -> Iterator[bytes]:
        while block := f.read(_BUF):
            yield block

    try:
        if gz:
            with gzip.open(path, "rb") as z:
                return file_hash(dbms, table, blocks(z))
        with open(path, "rb") as f:
            return file_hash(dbms, table, blocks(f))
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CommandError(f"{path!r} is not a complete gzip file ({e or 'it ends too early'})") from None
    except OSError as e:
        raise CommandError(f"cannot read {path!r}: {e.strerror or e}") from None


# --- listings -----------------------------------------------------------------------------------




def _entries(directory: str) -> list[os.DirEntry]:
    with _os_errors(f"list {directory}"):
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)


def list_files(path: str) -> list[tuple[str, int, str]]:
    """(name, size, modified UTC) of the files in a directory, by name; links are followed."""
    rows = []
    for entry in _entries(_directory(path)):
        try:
            if entry.is_file():
                st = entry.stat()
                rows.append((entry.name, st.st_size, format_utc(st.st_mtime)))
        except OSError:
            continue  # gone, or a dangling link, since the listing was read
    return rows


def list_directories(path: str) -> list[tuple[str, str]]:
    """(name, modified UTC) of the subdirectories of a directory, by name."""
    rows = []
    for entry in _entries(_directory(path)):
        try:
            if entry.is_dir():
                rows.append((entry.name, format_utc(entry.stat().st_mtime)))
        except OSError:
            continue
    return rows


def parse_day(text: str) -> datetime.date:
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise CommandError(f"date {text!r} is not a day written YYYY-MM-DD (e.g. 2026-11-28)") from None


def archive_day_dir(archive_dir: str, day: datetime.date) -> str:
    """`archive_dir/YY/MM/DD`, where the operator archives the files it registered that UTC day."""
    return os.path.join(archive_dir, archive_subdir(day.strftime("%y%m%d")))


def archived_files(archive_dir: str, day: datetime.date) -> tuple[str, list[tuple[str, int, str]]]:
    """(the day's folder, its files); a day with no folder has no files."""
    folder = archive_day_dir(archive_dir, day)
    if not os.path.isdir(folder):
        return folder, []
    return folder, list_files(folder)
