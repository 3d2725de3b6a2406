"""The blocking file utilities behind the `file ...` and listing commands (anylog_tw.ingest.fileops)."""

from __future__ import annotations

import ctypes
import datetime
import errno
import gzip
import hashlib
import os

import pytest

from anylog_tw.base import atomic
from anylog_tw.base.errors import CommandError, NotFound
from anylog_tw.base.filename import parse_file_name
from anylog_tw.commands.files import EXAMPLE_NAMES, FILE_STRUCT
from anylog_tw.ingest import fileops

DATA = b'{"ts": "2026-11-28 05:00:00", "v": 1}\n' * 50


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "lsl_demo.ping_sensor.json"
    path.write_bytes(DATA)
    os.chmod(path, 0o640)
    return path


def leftovers(directory) -> list[str]:
    """Temporary files a write left behind."""
    return [n for n in os.listdir(directory) if n.startswith(".") or n.endswith(".tmp")]


# --- copy --------------------------------------------------------------------------------------


def test_copy_writes_the_same_bytes_and_mode_and_leaves_no_temporary(src, tmp_path):
    out = fileops.copy_file(str(src), str(tmp_path / "copy.json"))
    assert out == str(tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_bytes() == DATA and src.read_bytes() == DATA
    assert os.stat(out).st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_copy_into_a_directory_keeps_the_name(src, tmp_path):
    (tmp_path / "d").mkdir()
    assert fileops.copy_file(str(src), str(tmp_path / "d")) == str(tmp_path / "d" / src.name)
    assert fileops.copy_file(str(src), str(tmp_path / "d") + "/", overwrite=True) == str(tmp_path / "d" / src.name)
    assert (tmp_path / "d" / src.name).read_bytes() == DATA


def test_copy_to_a_missing_directory_is_refused(src, tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        fileops.copy_file(str(src), str(tmp_path / "nowhere") + "/")
    with pytest.raises(NotFound, match="nowhere"):
        fileops.copy_file(str(src), str(tmp_path / "nowhere" / "x.json"))
    assert not (tmp_path / "nowhere").exists()


def test_copy_keeps_an_existing_destination_unless_told_to_overwrite(src, tmp_path):
    dest = tmp_path / "dest.json"
    dest.write_bytes(b"precious")
    with pytest.raises(CommandError, match="exists.*overwrite = true"):
        fileops.copy_file(str(src), str(dest))
    assert dest.read_bytes() == b"precious"
    fileops.copy_file(str(src), str(dest), overwrite=True)
    assert dest.read_bytes() == DATA and leftovers(tmp_path) == []


def test_copy_onto_itself_and_of_a_missing_file_or_a_directory_are_errors(src, tmp_path):
    with pytest.raises(CommandError, match="onto itself"):
        fileops.copy_file(str(src), str(tmp_path), overwrite=True)
    with pytest.raises(NotFound, match="missing.json"):
        fileops.copy_file(str(tmp_path / "missing.json"), str(tmp_path / "x"))
    with pytest.raises(CommandError, match="is a directory"):
        fileops.copy_file(str(tmp_path), str(tmp_path / "x"))
    assert src.read_bytes() == DATA


def test_a_copy_that_fails_half_way_leaves_no_file(src, tmp_path, monkeypatch):
    """A full disk in the middle of the copy: an error that says so, and no partial destination."""
    def half_then_full(fin, fout, length=0):
        fout.write(fin.read(100))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileops.shutil, "copyfileobj", half_then_full)
    dest = tmp_path / "dest.json"
    with pytest.raises(CommandError, match="No space left"):
        fileops.copy_file(str(src), str(dest))
    assert not dest.exists() and leftovers(tmp_path) == []
    dest.write_bytes(b"old")
    with pytest.raises(CommandError):
        fileops.copy_file(str(src), str(dest), overwrite=True)
    assert dest.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_without_renameat2_an_existing_destination_is_still_kept(src, tmp_path, monkeypatch):
    """The fallback for kernels and C libraries without RENAME_NOREPLACE: check, then rename."""
    monkeypatch.setattr(atomic, "_RENAMEAT2", None)
    assert fileops.copy_file(str(src), str(tmp_path / "a.json")) == str(tmp_path / "a.json")
    with pytest.raises(CommandError, match="exists"):
        fileops.copy_file(str(src), str(tmp_path / "a.json"))
    assert (tmp_path / "a.json").read_bytes() == DATA and leftovers(tmp_path) == []
    fileops.move_file(str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert (tmp_path / "b.json").read_bytes() == DATA and not (tmp_path / "a.json").exists()


def test_rename_no_replace_refuses_an_existing_name_and_links_nothing(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        atomic.rename_no_replace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "a").read_bytes() == b"a" and (tmp_path / "b").read_bytes() == b"b"
    atomic.rename_no_replace(str(tmp_path / "a"), str(tmp_path / "c"))
    assert os.stat(tmp_path / "c").st_nlink == 1 and not (tmp_path / "a").exists()


# --- move and delete ---------------------------------------------------------------------------


def test_move_renames_and_refuses_to_replace(src, tmp_path):
    (tmp_path / "watch").mkdir()
    out = fileops.move_file(str(src), str(tmp_path / "watch"))
    assert out == str(tmp_path / "watch" / src.name) and not src.exists()
    assert (tmp_path / "watch" / src.name).read_bytes() == DATA
    src.write_bytes(b"second")
    with pytest.raises(CommandError, match="exists"):
        fileops.move_file(str(src), str(tmp_path / "watch"))
    assert src.read_bytes() == b"second" and (tmp_path / "watch" / src.name).read_bytes() == DATA
    fileops.move_file(str(src), str(tmp_path / "watch"), overwrite=True)
    assert not src.exists() and (tmp_path / "watch" / src.name).read_bytes() == b"second"


def test_move_to_another_file_system_copies_then_removes(src, tmp_path, monkeypatch):
    """A rename across devices fails with EXDEV: the file is copied completely, then the source goes."""
    def cross_device(src_dir, old, dest_dir, new, flags):
        if old == os.fsencode(src):
            ctypes.set_errno(errno.EXDEV)
            return -1
        os.rename(old, new)  # the copy's temporary file, on the "other" device
        return 0

    monkeypatch.setattr(atomic, "_RENAMEAT2", cross_device)
    out = fileops.move_file(str(src), str(tmp_path / "moved.json"))
    assert not src.exists() and open(out, "rb").read() == DATA and leftovers(tmp_path) == []


def test_delete_removes_one_file_and_nothing_else(src, tmp_path):
    (tmp_path / "d").mkdir()
    fileops.delete_file(str(src))
    assert not src.exists()
    with pytest.raises(NotFound, match="does not exist"):
        fileops.delete_file(str(src))
    with pytest.raises(CommandError, match="directory"):
        fileops.delete_file(str(tmp_path / "d"))
    assert (tmp_path / "d").is_dir()


def test_file_exists_is_true_only_for_a_file(src, tmp_path):
    assert fileops.file_exists(str(src)) is True
    assert fileops.file_exists(str(tmp_path / "missing")) is False
    assert fileops.file_exists(str(tmp_path)) is False


# --- compress and decompress -------------------------------------------------------------------


def test_compress_then_decompress_gives_back_the_data_and_keeps_the_sources(src, tmp_path):
    gz = fileops.compress_file(str(src))
    assert gz == str(src) + ".gz" and src.read_bytes() == DATA
    assert gzip.decompress(open(gz, "rb").read()) == DATA
    src.unlink()
    out = fileops.decompress_file(gz)
    assert out == str(src) and src.read_bytes() == DATA and os.path.exists(gz)
    assert leftovers(tmp_path) == []


def test_compress_and_decompress_to_a_directory_or_a_name(src, tmp_path):
    (tmp_path / "bkup").mkdir()
    gz = fileops.compress_file(str(src), str(tmp_path / "bkup"))
    assert gz == str(tmp_path / "bkup" / (src.name + ".gz"))
    assert fileops.decompress_file(gz, str(tmp_path / "plain.txt")) == str(tmp_path / "plain.txt")
    assert (tmp_path / "plain.txt").read_bytes() == DATA
    with pytest.raises(CommandError, match="exists"):
        fileops.compress_file(str(src), str(tmp_path / "bkup"))


def test_decompressed_names_follow_anylog():
    assert fileops.decompressed_name("a.json.gz") == "a.json"
    assert fileops.decompressed_name("a.GZ") == "a"
    assert fileops.decompressed_name("blob.bin") == "blob.bin.dat"


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(DATA)[:-30]], ids=["not-gzip", "truncated"])
def test_a_bad_gzip_is_refused_and_nothing_is_written(tmp_path, content):
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(content)
    with pytest.raises(CommandError, match="not a complete gzip file"):
        fileops.decompress_file(str(bad))
    assert sorted(os.listdir(tmp_path)) == ["bad.json.gz"]


# --- hash --------------------------------------------------------------------------------------


def test_hash_is_md5_of_dbms_table_and_the_data(src):
    expected = hashlib.md5(b"lsl_demo.ping_sensor" + DATA).hexdigest()
    assert fileops.hash_file(str(src)) == expected


def test_hash_of_a_gz_file_is_the_hash_of_its_data(src):
    gz = fileops.compress_file(str(src))
    assert fileops.hash_file(gz) == fileops.hash_file(str(src))


def test_hash_of_a_file_named_otherwise_needs_dbms_and_table(tmp_path):
    other = tmp_path / "readings.txt"
    other.write_bytes(DATA)
    with pytest.raises(CommandError, match="where dbms = <dbms> and table = <table>"):
        fileops.hash_file(str(other))
    assert fileops.hash_file(str(other), "LSL_demo", "ping_sensor") == \
        hashlib.md5(b"lsl_demo.ping_sensor" + DATA).hexdigest()


def test_hash_of_a_broken_gz_is_an_error(tmp_path):
    bad = tmp_path / "d.t.json.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(CommandError, match="gzip"):
        fileops.hash_file(str(bad))


# --- where a peer may go -----------------------------------------------------------------------


def test_confine_allows_the_roots_and_refuses_the_rest(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (tmp_path / "home2").mkdir()
    roots = [str(home)]
    assert fileops.confine(str(home / "data" / "x.json"), roots, "peer a") == str(home / "data" / "x.json")
    assert fileops.confine(str(home), roots, "peer a") == str(home)
    for outside in (str(tmp_path / "home2" / "x"), str(home / ".." / "x"), "/etc/passwd"):
        with pytest.raises(CommandError, match="outside this node's home.*peer a"):
            fileops.confine(outside, roots, "peer a")


def test_a_link_out_of_the_home_counts_as_outside(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "secret").mkdir()
    (home / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(CommandError, match="outside"):
        fileops.confine(str(home / "escape" / "key.pem"), [str(home)], "peer a")
    assert fileops.confine(str(home / "escape"), [str(home), str(tmp_path / "secret")], "peer a")


def test_a_trailing_slash_survives_so_it_still_means_a_directory():
    assert fileops.absolute("/tmp/x/") == "/tmp/x/"
    assert fileops.absolute("/") == "/"
    with pytest.raises(CommandError, match="empty"):
        fileops.absolute("")


# --- listings ----------------------------------------------------------------------------------


def test_listings_separate_files_from_directories(tmp_path):
    (tmp_path / "b.json").write_bytes(b"12345")
    (tmp_path / "a.json").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    files = fileops.list_files(str(tmp_path))
    assert [(name, size) for name, size, _ in files] == [("a.json", 0), ("b.json", 5)]
    datetime.datetime.strptime(files[0][2], "%Y-%m-%d %H:%M:%S")
    assert [name for name, _ in fileops.list_directories(str(tmp_path))] == ["sub"]
    with pytest.raises(NotFound, match="does not exist"):
        fileops.list_files(str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="not a directory"):
        fileops.list_directories(str(tmp_path / "a.json"))


def test_archived_files_are_read_from_the_days_folder(tmp_path):
    day = fileops.parse_day("2026-11-28")
    folder = tmp_path / "26" / "11" / "28"
    folder.mkdir(parents=True)
    (folder / "d.t.0.h.0.1.2.261128050000.json.gz").write_bytes(b"x")
    found, rows = fileops.archived_files(str(tmp_path), day)
    assert found == str(folder) and [r[0] for r in rows] == ["d.t.0.h.0.1.2.261128050000.json.gz"]
    assert fileops.archived_files(str(tmp_path), fileops.parse_day("2026-11-29"))[1] == []


@pytest.mark.parametrize("text", ["2026-13-01", "26-11-28", "2026/11/28", "yesterday", "2026-02-30"])
def test_a_day_that_is_not_yyyy_mm_dd_is_refused(text):
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        fileops.parse_day(text)


# --- the naming convention ---------------------------------------------------------------------


def test_the_printed_examples_are_names_the_operator_accepts():
    assert len(EXAMPLE_NAMES) == 3
    parsed = [parse_file_name(name) for name in EXAMPLE_NAMES]
    assert not parsed[0].registered and parsed[2].registered and parsed[2].tsd_id == 42
    assert "archive_dir/" + parsed[2].tsd_date[:2] + "/" + parsed[2].tsd_date[2:4] in FILE_STRUCT
