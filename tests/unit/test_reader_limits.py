"""What one data file may cost (ingest/reader.py Limits): long lines refused in linear time,
compressed files read as bounded streams, JSON arrays bounded like a line."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base.filename import parse_file_name
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest import pipeline, reader
from anylog_tw.ingest.reader import Limits

MIB = 1 << 20


def gz_bomb(path, expanded: int, line: bool = True) -> None:
    """A .gz of `expanded` bytes: one line of zeros (or many short lines), written as a stream."""
    unit = b"0" * MIB if line else (b'{"a":1}\n' * (MIB // 8))
    with gzip.open(path, "wb", compresslevel=9) as z:
        for _ in range(expanded // MIB):
            z.write(unit)
        z.write(b"\n")


def chunks(path, gz=False, size=reader.CHUNK, limits=reader.DEFAULT_LIMITS):
    return list(reader.iter_chunks(str(path), gz, size, limits))


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=30),
       size=st.integers(1, 64), trailing=st.booleans())
def test_chunks_are_the_file_cut_at_line_ends(tmp_path_factory, lines, size, trailing):
    """Whatever the block size, the chunks join to the file, each ends a line, numbers are right."""
    data = b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    path = tmp_path_factory.mktemp("c") / "f.json"
    path.write_bytes(data)
    got = chunks(path, size=size)
    assert b"".join(c for _, c in got) == data
    line = 1
    for first, body in got:
        assert first == line
        line += body.count(b"\n")
    assert all(body.endswith(b"\n") for _, body in got[:-1])


def test_a_line_over_max_line_is_refused_naming_it(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b'{"a":1}\n' + b'{"b":"' + b"x" * 5000 + b'"}\n{"c":3}\n')
    with pytest.raises(IngestError) as e:
        chunks(path, size=512, limits=Limits(max_line=4096))
    assert e.value.reason == "line" and "line 2 " in e.value.message and "max_line" in e.value.message
    assert chunks(path, size=512, limits=Limits(max_line=0))  # 0: no limit


def test_a_line_over_max_line_inside_one_block_is_refused_too(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b'{"a":1}\n' * 3 + b"y" * 3000 + b"\n")
    with pytest.raises(IngestError, match="line 4 "):
        chunks(path, size=1 << 20, limits=Limits(max_line=2048))


def test_a_long_line_is_refused_after_reading_max_line_not_the_file(tmp_path, monkeypatch):
    """The work on a line past max_line stops at max_line plus one block, whatever the file holds."""
    path = tmp_path / "f.json"
    path.write_bytes(b"x" * (24 * MIB) + b"\n")
    given = []
    real = reader.open_data

    def counting(*args):
        f = real(*args)
        read = f.read
        f.read = lambda n: given.append(len(data := read(n))) or data
        return f

    monkeypatch.setattr(reader, "open_data", counting)
    with pytest.raises(IngestError, match="line 1 "):
        chunks(path, size=MIB, limits=Limits(max_line=4 * MIB))
    assert sum(given) <= 5 * MIB


def test_a_gz_that_expands_past_max_expanded_stops_there(tmp_path):
    path = tmp_path / "d.t.0.0.0.json.gz"
    gz_bomb(path, 40 * MIB, line=False)
    with pytest.raises(IngestError) as e:
        chunks(path, gz=True, limits=Limits(max_expanded=8 * MIB, max_ratio=0))
    assert e.value.reason == "expanded" and "max_expanded" in e.value.message


def test_a_gz_bomb_is_stopped_by_the_ratio(tmp_path):
    path = tmp_path / "d.t.0.0.0.json.gz"
    gz_bomb(path, 64 * MIB, line=False)  # ~1000x
    with pytest.raises(IngestError) as e:
        chunks(path, gz=True)
    assert e.value.reason == "expanded" and "max_ratio" not in e.value.message or "times" in e.value.message


def test_an_ordinary_gz_reads_whole_and_in_chunks(tmp_path):
    rows = b"".join(b'{"seq": %d, "dev": "d-%d", "v": %d.5}\n' % (i, i % 97, i * 7919 % 1000) for i in range(50_000))
    path = tmp_path / "d.t.0.0.0.json.gz"
    path.write_bytes(gzip.compress(rows, 6))
    assert b"".join(c for _, c in chunks(path, gz=True)) == rows
    assert reader.read_small(str(path), True, 64 * MIB) == rows
    assert reader.read_small(str(path), True, 1000) is None  # over the cap: read in chunks instead


def test_a_corrupt_gz_is_an_io_error(tmp_path):
    path = tmp_path / "d.t.0.0.0.json.gz"
    path.write_bytes(gzip.compress(b'{"a":1}\n' * 1000)[:-30] + b"garbage" * 5)
    with pytest.raises(IngestError) as e:
        chunks(path, gz=True)
    assert e.value.reason == "io"
    path.write_bytes(zlib.compress(b"not gzip"))
    with pytest.raises(IngestError, match="cannot read"):
        reader.read_small(str(path), True, MIB)


def test_a_small_gz_holding_a_huge_line_is_refused_by_the_first_pass(tmp_path):
    """The first pass reads a small .gz whole only up to a cap: a one-line bomb is refused, not loaded."""
    path = tmp_path / "d.t.0.0.0.json.gz"
    gz_bomb(path, 40 * MIB)
    with pytest.raises(IngestError) as e:
        pipeline.first_pass(str(path), parse_file_name(path.name), None, limits=Limits(max_ratio=0))
    assert e.value.reason == "line"


def test_a_json_array_over_max_line_is_refused(tmp_path):
    path = tmp_path / "d.t.0.0.0.json"
    path.write_bytes(b"[" + b",".join(b'{"a": %d}' % i for i in range(2000)) + b"]")
    with pytest.raises(IngestError) as e:
        pipeline.first_pass(str(path), parse_file_name(path.name), None, limits=Limits(max_line=4096))
    assert e.value.reason == "line" and "array" in e.value.message
    parsed = pipeline.first_pass(str(path), parse_file_name(path.name), None)
    assert parsed.rows == 2000
