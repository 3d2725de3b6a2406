"""The one publish primitive (base/atomic.py) and the writers that use it: every file appears
complete under its final name, synced with its directory, never replacing one unless asked, and
nothing is left behind when anything fails."""

from __future__ import annotations

import errno
import gzip
import os

import pytest

from anylog_tw.base import atomic
from anylog_tw.ingest import archive, dropfile, outbox
from anylog_tw.metadata import ledger_file
from anylog_tw.storage import backup


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


@pytest.fixture
def synced(monkeypatch):
    """Records every fsync: ("file", path) for a file's data, ("dir", path) for a directory."""
    calls = []
    real_fsync, real_dir = os.fsync, atomic.fsync_dir

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not os.path.isdir(path):  # a directory's fsync is recorded by fsync_dir
            calls.append(("file", path))
        return real_fsync(fd)

    def fsync_dir(path):
        calls.append(("dir", os.path.abspath(path)))
        return real_dir(path)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic, "fsync_dir", fsync_dir)
    return calls


def test_publish_syncs_the_file_then_renames_then_syncs_the_directory(tmp_path, synced):
    final = tmp_path / "a.json"
    atomic.publish(str(final), b"data\n")
    assert final.read_bytes() == b"data\n" and listing(tmp_path) == ["a.json"]
    kinds = [k for k, _ in synced]
    assert kinds == ["file", "dir"] and synced[1][1] == str(tmp_path)
    assert os.stat(final).st_mode & 0o777 == 0o644


def test_publish_never_replaces_unless_asked(tmp_path):
    final = tmp_path / "a.json"
    final.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        atomic.publish(str(final), b"new")
    assert final.read_bytes() == b"old" and listing(tmp_path) == ["a.json"]
    atomic.publish(str(final), b"new", replace=True)
    assert final.read_bytes() == b"new" and listing(tmp_path) == ["a.json"]


def test_a_writer_that_fails_half_way_leaves_nothing(tmp_path):
    def write(f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic.publish(str(tmp_path / "a.json"), write)
    assert listing(tmp_path) == []


def test_without_fsync_nothing_is_synced(tmp_path, synced):
    atomic.publish(str(tmp_path / "a.json"), b"x", fsync=False)
    atomic.move(str(tmp_path / "a.json"), str(tmp_path / "b.json"), fsync=False)
    assert synced == [] and listing(tmp_path) == ["b.json"]


def test_move_across_file_systems_copies_syncs_and_removes_the_source(tmp_path, monkeypatch, synced):
    (tmp_path / "d").mkdir()
    src = tmp_path / "a.json"
    src.write_bytes(b"data")

    real = atomic.rename_no_replace

    def exdev(a, b):
        if os.path.dirname(a) != os.path.dirname(b):  # only the move itself crosses file systems
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(a, b)

    monkeypatch.setattr(atomic, "rename_no_replace", exdev)
    atomic.move(str(src), str(tmp_path / "d" / "a.json"))
    assert not src.exists() and (tmp_path / "d" / "a.json").read_bytes() == b"data"
    assert listing(tmp_path / "d") == ["a.json"]
    assert ("dir", str(tmp_path / "d")) in synced and any(k == "file" for k, _ in synced)


def test_archive_gzips_syncs_and_keeps_an_earlier_copy(tmp_path, synced):
    watch = tmp_path / "watch"
    watch.mkdir()
    src = watch / "d.t.0.h.0.1.7.260101.json"
    src.write_bytes(b'{"a": 1}\n')
    out = archive.archive(str(src), str(tmp_path / "arch"), "260101", src.name, False, True)
    assert gzip.decompress(open(out, "rb").read()) == b'{"a": 1}\n' and not src.exists()
    assert ("dir", os.path.dirname(out)) in synced
    # a crash after the copy and before the removal: the source is there again; the copy stays
    src.write_bytes(b'{"a": 1}\n')
    assert archive.archive(str(src), str(tmp_path / "arch"), "260101", src.name, False, True) == out
    assert not src.exists() and listing(os.path.dirname(out)) == [os.path.basename(out)]


def test_archive_that_runs_out_of_space_leaves_no_part_and_the_source(tmp_path, monkeypatch):
    src = tmp_path / "d.t.0.h.0.1.7.260101.json"
    src.write_bytes(b"x" * 100_000)
    real = atomic.copy_writer

    def full(path, transform=""):
        inner = real(path, transform)

        def write(out):
            inner(out)
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    monkeypatch.setattr(atomic, "copy_writer", full)
    with pytest.raises(OSError) as e:
        archive.archive(str(src), str(tmp_path / "arch"), "260101", src.name, False, True)
    assert e.value.errno == errno.ENOSPC and src.exists()
    day = tmp_path / "arch" / "26" / "01" / "01"
    assert listing(day) == []


def test_move_to_error_finds_a_free_name(tmp_path):
    for i in range(2):
        f = tmp_path / "d.t.0.h.0.json"
        f.write_bytes(b"%d" % i)
        archive.move_to_error(str(f), str(tmp_path / "err"), f.name, "json", 100)
    assert listing(tmp_path / "err") == ["d.t.0.h.0.err_json.100.json", "d.t.0.h.0.err_json.101.json"]


def test_outbox_backup_publishes_and_removes_the_source(tmp_path, synced):
    src = tmp_path / "d.t.0.h.0.json"
    src.write_bytes(b"data\n")
    out = outbox.backup(str(src), str(tmp_path / "bkup"), src.name, True)
    assert gzip.decompress(open(out, "rb").read()) == b"data\n" and not src.exists()
    assert ("dir", str(tmp_path / "bkup")) in synced


def test_a_put_file_is_renamed_into_the_watch_dir_and_the_dir_synced(tmp_path, synced):
    watch = tmp_path / "watch"
    watch.mkdir()
    dropfile.write_file(str(watch), "d.t.0.h.0.json", b"{}\n")
    assert listing(watch) == ["d.t.0.h.0.json"] and ("dir", str(watch)) in synced
    with pytest.raises(dropfile.DuplicateFile):
        dropfile.write_file(str(watch), "d.t.0.h.0.json", b"{}\n")
    assert listing(watch) == ["d.t.0.h.0.json"]


def test_a_put_on_a_full_disk_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    watch = tmp_path / "watch"
    watch.mkdir()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "rename_no_replace", full)
    with pytest.raises(dropfile.WriteError) as e:
        dropfile.write_file(str(watch), "d.t.0.h.0.json", b"{}\n")
    assert e.value.full and listing(watch) == []


def test_the_ledger_is_replaced_whole_and_keeps_the_old_one(tmp_path, synced):
    path = str(tmp_path / "blockchain.json")
    ledger_file.write_atomically(path, b"one\n")
    ledger_file.write_atomically(path, b"two\n", keep_old=True)
    assert open(path).read() == "two\n" and open(path + ".old").read() == "one\n"
    assert listing(tmp_path) == ["blockchain.json", "blockchain.json.old"]
    assert ("dir", str(tmp_path)) in synced


def test_a_backup_is_named_after_its_content_and_a_failed_one_leaves_nothing(tmp_path):
    out = backup.write_backup(["a"], [[(1,), (2,)]], str(tmp_path), "d", "t", ["int"], False)
    assert listing(tmp_path) == [os.path.basename(out.path)] and out.rows == 2

    def batches():
        yield [(3,)]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(Exception, match="no backup file was left"):
        backup.write_backup(["a"], batches(), str(tmp_path), "d", "t2", ["int"], False)
    assert listing(tmp_path) == [os.path.basename(out.path)]


def test_stale_temps_of_a_killed_process_are_swept_but_not_new_ones(tmp_path):
    old = tmp_path / ".a.json.k2j4h5g6.tmp"
    old.write_bytes(b"half")
    os.utime(old, (1000, 1000))
    new = tmp_path / ".b.json.x8y7z6w5.tmp"
    new.write_bytes(b"being written")
    (tmp_path / "c.json").write_bytes(b"{}")
    os.utime(tmp_path / "c.json", (1000, 1000))
    assert atomic.remove_stale_temps(str(tmp_path), 2000) == 1
    assert listing(tmp_path) == [".b.json.x8y7z6w5.tmp", "c.json"]
