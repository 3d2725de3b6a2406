"""The directory watcher: polling on a Clock (no real time), and INotify on the real reactor."""

from __future__ import annotations

import os
import shutil

import pytest
from twisted.internet import reactor
from twisted.internet.task import Clock

from anylog_tw.ingest import watcher as W
from anylog_tw.ingest.watcher import DirectoryWatcher
from tests.helpers import poll


def write(path, name, data=b"{}\n"):
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def test_scan_at_start_reports_files_already_there_but_not_temporary_ones(tmp_path):
    write(tmp_path, "a.b.json")
    write(tmp_path, "c.d.json")
    write(tmp_path, "e.f.json.part")
    write(tmp_path, ".hidden")
    os.mkdir(tmp_path / "sub.json")
    seen = []
    w = DirectoryWatcher(Clock(), str(tmp_path), seen.append, use_inotify=False)
    w.start()
    try:
        assert seen == ["a.b.json", "c.d.json"]
    finally:
        w.stop()


def test_polling_reports_a_file_once_it_holds_still(tmp_path):
    """A file still growing is not reported; once its size and time hold for a poll, it is."""
    clock = Clock()
    seen = []
    w = DirectoryWatcher(clock, str(tmp_path), seen.append, use_inotify=False, poll=1.0)
    w.start()
    try:
        write(tmp_path, "x.y.json", b"{}")
        clock.advance(1)
        assert seen == []  # first sight
        write(tmp_path, "x.y.json", b"{}\n{}\n")  # still being written
        os.utime(tmp_path / "x.y.json", ns=(1, 2))
        clock.advance(1)
        assert seen == []
        clock.advance(1)
        assert seen == ["x.y.json"]
    finally:
        w.stop()
    assert not clock.getDelayedCalls()


def test_polling_survives_the_directory_being_removed(tmp_path):
    clock = Clock()
    path = tmp_path / "watch"
    seen = []
    w = DirectoryWatcher(clock, str(path), seen.append, use_inotify=False, poll=1.0)
    w.start()
    try:
        shutil.rmtree(path)
        clock.advance(1)
        assert path.is_dir()  # made again
        write(path, "a.b.json")
        clock.advance(1)
        clock.advance(1)
        assert seen == ["a.b.json"]
    finally:
        w.stop()


@pytest.mark.allow_logged_errors
def test_a_failing_callback_is_logged_and_the_watcher_goes_on(tmp_path):
    clock = Clock()
    calls = []

    def boom(name):
        calls.append(name)
        raise RuntimeError("bad handler")

    write(tmp_path, "a.b.json")
    w = DirectoryWatcher(clock, str(tmp_path), boom, use_inotify=False, poll=1.0)
    errors = []
    from twisted.logger import globalLogPublisher

    def observe(event):
        if event.get("log_failure") is not None:
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        w.start()
        clock.advance(1)
        clock.advance(1)
    finally:
        globalLogPublisher.removeObserver(observe)
        w.stop()
    assert len(calls) >= 2 and errors


pytestmark_inotify = pytest.mark.skipif(W.inotify is None, reason="INotify is Linux only")


@pytestmark_inotify
async def test_inotify_sees_moved_in_and_written_files_at_once(tmp_path):
    seen = []
    w = DirectoryWatcher(reactor, str(tmp_path), seen.append, rescan=3600)
    w.start()
    try:
        assert w.mode == "inotify"
        write(tmp_path, "in.place.json")                    # IN_CLOSE_WRITE
        write(tmp_path, "moved.in.json.part")               # temporary: ignored
        os.rename(tmp_path / "moved.in.json.part", tmp_path / "moved.in.json")   # IN_MOVED_TO
        await poll(lambda: "moved.in.json" in seen and "in.place.json" in seen, 5, what="inotify events")
        assert not any(n.endswith(".part") for n in seen)
    finally:
        w.stop()


@pytestmark_inotify
async def test_inotify_is_rebuilt_after_the_watched_directory_is_deleted(tmp_path):
    """Twisted closes the notifier when the watched dir goes: the watcher makes a new one."""
    path = tmp_path / "watch"
    seen = []
    w = DirectoryWatcher(reactor, str(path), seen.append, rescan=3600)
    w.start()
    try:
        shutil.rmtree(path)
        await poll(lambda: w.rebuilds >= 1 and w.notifier is not None and w.notifier.connected, 5,
                   what="the notifier rebuilt")
        write(path, "after.rebuild.json")
        await poll(lambda: "after.rebuild.json" in seen, 5, what="an event after the rebuild")
    finally:
        w.stop()



def test_listings_go_through_in_thread_and_report_only_when_it_answers(tmp_path):
    """Every scan hands its listing to `in_thread` (the node's thread pool): nothing is listed on the
    calling thread, nothing is reported before the listing returns, and no second scan starts while
    one is in flight."""
    from twisted.internet.defer import Deferred

    clock = Clock()
    asked = []

    def in_thread(fn, *args):
        d = Deferred()
        asked.append((fn, args, d))
        return d

    write(tmp_path, "a.b.json")
    seen = []
    w = DirectoryWatcher(clock, str(tmp_path), seen.append, use_inotify=False, poll=1.0, in_thread=in_thread)
    w.start()
    try:
        assert len(asked) == 1 and seen == []
        fn, args, d = asked.pop()
        clock.advance(5)  # the scan in flight holds the next ones
        assert asked == []
        d.callback(fn(*args))  # the "thread" answers
        assert seen == ["a.b.json"]
    finally:
        w.stop()
