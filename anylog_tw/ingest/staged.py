"""Publishing a watch-dir file in two durable steps, so that whoever records the first can finish the second.

The streamer writes the buffers holding rows of unacknowledged MQTT QoS 1 messages this way: the
message clients journal the stage between the two steps (msg/acks.py), and a client starting
again after a crash publishes every stage its journal names (spec and reasons in docs/mqtt.md,
"QoS 1: acknowledged when durable, each message once").
"""

from __future__ import annotations

import os

from anylog_tw.base import atomic
from anylog_tw.base.errors import no_space
from anylog_tw.ingest.dropfile import DuplicateFile, WriteError


def write_staged(watch_dir: str, name: str, data: bytes, staged) -> str:
    """Publish `data` as `watch_dir/name` in two durable steps, calling `staged(stage, final)` between.

    The stage file is hidden (the watcher and the stale-temp sweep leave `.<name>.stage` alone),
    fsynced with its directory entry before `staged` runs, so whoever recorded it there can
    finish the rename after a crash: a stage that is still there is published then, one that is
    gone was published.  Blocking; raises as `write_file` does.
    """
    final = os.path.join(watch_dir, name)
    stage = os.path.join(watch_dir, f".{name}.stage")
    if os.path.lexists(final):
        raise DuplicateFile(f"{name} is already in the watch dir: the same data was sent twice (the hash names "
                            f"the content)")
    try:
        fd = os.open(stage, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        atomic.fsync_dir(watch_dir)
    except OSError as e:
        _unlink(stage)
        raise WriteError(f"cannot write {name} into {watch_dir}: {e.strerror or e}", no_space(e)) from None
    try:
        staged(stage, final)
    except BaseException:  # not recorded: nobody would publish it
        _unlink(stage)
        raise
    try:
        atomic.rename_no_replace(stage, final)
    except OSError as e:  # after `staged`: the stage stays, to be published when its recorder next starts
        raise WriteError(f"cannot publish {name} in {watch_dir}: {e.strerror or e}", no_space(e)) from None
    atomic.fsync_dir(watch_dir)
    return final


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
