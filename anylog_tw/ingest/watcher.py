"""Watching a directory for complete files: INotify where it exists, polling where it does not.

A file is "complete" when INotify reports `IN_CLOSE_WRITE` (written in place) or `IN_MOVED_TO`
(renamed in: the safe way to deliver a file).  Around that:

* a scan at start reports the files already there (the node was down while they arrived);
* a periodic rescan is the backstop for anything an event missed (a queue overflow, a file
  that arrived while the notifier was being rebuilt); it reports a file only once its size and
  time are the same on two rescans, so a file still being written is not taken half-done;
* Twisted closes the whole notifier when a watched directory is deleted: the watcher notices
  (`IN_DELETE_SELF`/`IN_MOVE_SELF`, or a closed notifier at the next rescan), recreates the
  directory and builds a new notifier;
* without INotify (not Linux), the same stability rule runs every `poll` seconds.

Hidden and temporary names (`.x`, `*.part`, `*.tmp`, `*~` ...) are never reported.  The
watcher only says "this name looks complete"; it may say so twice, so its user keeps track of
the files it has in hand.  Time comes from the reactor given (a Clock in tests).  Listing a
directory and stat-ing its files can take long after downtime (100k files waiting), so it runs in
the thread helper the watcher is given (`node.in_thread`); the comparison is done on the reactor.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from anylog_tw.base.filename import is_temporary
from anylog_tw.base.periodic import Periodic

try:
    from twisted.internet import inotify
except ImportError:  # pragma: no cover - not Linux
    inotify = None


def list_files(path: str) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of the regular, non-temporary files directly in `path`."""
    out = {}
    try:
        with os.scandir(path) as it:
            for entry in it:
                if is_temporary(entry.name):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        out[entry.name] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    continue  # gone between listing and stat
    except FileNotFoundError:
        pass
    return out


class DirectoryWatcher:
    """Calls `on_file(name)` for each complete file that appears in `path`."""

    log = Logger()

    def __init__(self, reactor, path: str, on_file: Callable[[str], None], rescan: float = 10.0,
                 use_inotify: bool = True, poll: float = 1.0, in_thread: Callable[..., Deferred] | None = None):
        self.reactor = reactor
        self.path = os.path.abspath(path)
        self.on_file = on_file
        self.rescan_interval = rescan
        self.poll_interval = poll
        self.use_inotify = use_inotify and inotify is not None
        self.in_thread = in_thread or _inline
        self.notifier = None
        self.rebuilds = 0
        self._seen: dict[str, tuple[int, int]] | None = None  # None: report everything at the next scan
        self.periodic: Periodic | None = None
        self._rebuild_call = None
        self.running = False

    @property
    def mode(self) -> str:
        return "inotify" if self.use_inotify else "polling"

    def start(self) -> None:
        """Watch, and scan at once for the files already there (the first run of the rescan loop)."""
        os.makedirs(self.path, exist_ok=True)
        self.running = True
        if self.use_inotify:
            try:
                self._watch()
            except Exception as e:
                self.log.warn("INotify is not usable on {path} ({error}); polling instead", path=self.path, error=e)
                self.use_inotify = False
        self._seen = None
        interval = self.rescan_interval if self.use_inotify else self.poll_interval
        self.periodic = Periodic(self.reactor, interval, self._rescan, name=f"watching {self.path}")
        self.periodic.start()

    def stop(self) -> Deferred:
        """Stop watching; fires when a scan in flight has ended."""
        self.running = False
        if self._rebuild_call is not None and self._rebuild_call.active():
            self._rebuild_call.cancel()
        self._rebuild_call = None
        self._close_notifier()
        periodic, self.periodic = self.periodic, None
        return periodic.stop() if periodic is not None else succeed(None)

    # -- INotify ---------------------------------------------------------------------------------

    def _watch(self) -> None:
        n = inotify.INotify(reactor=self.reactor)
        try:
            n.startReading()
            n.watch(FilePath(self.path),
                    mask=inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF,
                    callbacks=[self._event])
        except BaseException:
            n.loseConnection()
            raise
        self.notifier = n

    def _close_notifier(self) -> None:
        n, self.notifier = self.notifier, None
        if n is not None and n.connected:
            n.loseConnection()

    def _event(self, _watch, fp: FilePath, mask: int) -> None:
        if mask & (inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF):
            self._schedule_rebuild()
            return
        name = fp.asTextMode().basename()
        if not is_temporary(name):
            self._report(name)

    def _schedule_rebuild(self) -> None:
        if self.running and (self._rebuild_call is None or not self._rebuild_call.active()):
            self._rebuild_call = self.reactor.callLater(0, self._rebuild)

    def _rebuild(self) -> None:
        """A new notifier on the (re-created) directory, then a scan for what arrived meanwhile."""
        self._rebuild_call = None
        if not self.running:
            return
        self._close_notifier()
        self.rebuilds += 1
        try:
            os.makedirs(self.path, exist_ok=True)
            self._watch()
        except Exception as e:
            self.log.error("cannot watch {path} again ({error}); the rescan keeps trying", path=self.path, error=e)
            return
        self.log.info("watching {path} again (the directory was removed or moved)", path=self.path)
        self._seen = None
        if self.periodic is not None:
            self.periodic.call_soon()

    # -- scanning --------------------------------------------------------------------------------

    async def _rescan(self) -> None:
        """Report files whose size and time held still since the last scan (every file at a first scan)."""
        if self.use_inotify and (self.notifier is None or not self.notifier.connected):
            self._rebuild()
        now = await self.in_thread(_list_again, self.path)
        if not self.running:
            return
        seen, self._seen = self._seen, now
        for name in sorted(now):
            if seen is None or seen.get(name) == now[name]:
                self._report(name)

    def _report(self, name: str) -> None:
        try:
            self.on_file(name)
        except Exception:
            self.log.failure("handling {name} from {path} failed", name=name, path=self.path)


def _list_again(path: str) -> dict[str, tuple[int, int]]:
    """(In a thread.) The listing, with the directory made again if it was removed."""
    os.makedirs(path, exist_ok=True)
    return list_files(path)


def _inline(fn: Callable, *args: Any) -> Deferred:
    return maybeDeferred(fn, *args)
