"""Files published into a watch dir (REST PUT, peer transfers) are seen by INotify at once,
not on the watcher's backstop rescan."""

from __future__ import annotations

from twisted.internet import reactor

from anylog_tw.ingest.dropfile import write_file
from anylog_tw.ingest.watcher import DirectoryWatcher
from tests.helpers import poll


async def test_a_published_file_raises_an_event_the_watcher_takes(tmp_path):
    watch = tmp_path / "watch"
    seen = []
    watcher = DirectoryWatcher(reactor, str(watch), seen.append, rescan=3600)
    watcher.start()
    try:
        assert watcher.mode == "inotify"
        write_file(str(watch), "d.t.0.abc.0.json", b'{"a": 1}\n')
        await poll(lambda: seen == ["d.t.0.abc.0.json"], timeout=5, what="the watcher to report the file")
    finally:
        watcher.stop()
