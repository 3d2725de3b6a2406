"""The streamer's rows handed to the operator in memory (ingest/handoff.py): the rows taken are
exactly what parsing the file gives, and anything but the very bytes they were written as is parsed."""

from __future__ import annotations

import math
import os

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anylog_tw.base.filename import parse_file_name
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest import mapping, pipeline
from anylog_tw.ingest.handoff import Handoff, plain
from anylog_tw.ingest.jsonrows import join_rows
from anylog_tw.ingest.streamer import Streamer
from anylog_tw.storage import schema
from tests.helpers import fired, unit_node

NAME = "d.t.0.0123456789abcdef0123456789abcdef.0.json"


def strict(v):
    """A value with its exact type at every level (True is not 1, -0.0 is not 0.0, a list is not a tuple)."""
    if type(v) is dict:
        return ("dict", [(type(k).__name__, k, strict(x)) for k, x in v.items()])
    if type(v) is list:
        return ("list", [strict(x) for x in v])
    if type(v) is float:
        return ("float", "nan" if math.isnan(v) else repr(v))
    return (type(v).__name__, v)


def outcome(path, handoff=None):
    """What the operator would insert from the file: the parse, then each part adapted to its columns."""
    try:
        parsed = pipeline.first_pass(str(path), parse_file_name(os.path.basename(path)), None, handoff=handoff)
    except IngestError as e:
        return ("refused", e.reason, e.message)
    result = [parsed.hash, parsed.objects, parsed.big]
    for key, part in parsed.parts.items():
        batch = part.batch
        result.append((key, batch.columns, [strict(c) for c in batch.values], batch.lines, part.rows))
        try:
            columns, _ = mapping.plan_columns(batch, None, part.fixed)
            adapted = pipeline.adapt(batch, columns, schema.SQLITE)
            result.append((columns, [[strict(v) for v in col] for col in adapted]))
        except Exception as e:  # the same refusal either way
            result.append(("adapt refused", type(e).__name__, str(e)))
    return result


keys = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), st.text(max_size=6))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 64, 2 ** 65), st.floats(),
                    st.text(max_size=12), st.from_regex(r"20[0-9]{2}-0[1-9]-1[0-9] 1[0-9]:[0-5][0-9]:[0-5][0-9]\.[0-9]{6}",
                                                        fullmatch=True),
                    st.just("12345678901234567890123"))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                      max_leaves=6)


@st.composite
def table_rows(draw):
    """Rows of one file: mostly the same columns (the mapper's case), sometimes each its own."""
    if draw(st.booleans()):
        cols = draw(st.lists(keys, min_size=1, max_size=4, unique=True))
        return [dict(zip(cols, draw(st.lists(values, min_size=len(cols), max_size=len(cols)))))
                for _ in range(draw(st.integers(1, 6)))]
    return draw(st.lists(st.dictionaries(keys, values, min_size=1, max_size=4), min_size=1, max_size=6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=table_rows())
def test_handed_rows_insert_exactly_what_the_parse_does(tmp_path, rows):
    """Differential: for any rows the streamer may be given, the operator's outcome from the handed
    rows (when the handoff takes them) equals its outcome from parsing the file, types included."""
    try:
        lines = [orjson.dumps(r) for r in rows]
    except TypeError:  # orjson refuses it (an integer past 64 bits, a lone surrogate): never buffered
        return
    data = join_rows(lines)
    path = tmp_path / NAME
    path.write_bytes(data)
    parsed = outcome(path)
    handoff = Handoff()
    handoff.put(NAME, data, rows)
    handed = outcome(path, handoff)
    assert handed == parsed
    took = handoff.taken == 1
    has_nan = any(type(v) is float and not math.isfinite(v) for r in rows for v in r.values())
    if plain(rows) and b"0" * 20 not in data.translate(bytes.maketrans(b"123456789", b"0" * 9)):
        assert took, "rows that survive a dump and load must be handed over"
    if has_nan:
        assert not took, "NaN and infinity are written as null: the dicts would differ from the file"


def test_plain_rows_are_taken_once_and_without_a_parse(tmp_path, monkeypatch):
    rows = [{"timestamp": "2020-12-14 15:23:47.550000", "value": i} for i in range(3)]
    data = join_rows([orjson.dumps(r) for r in rows])
    (tmp_path / NAME).write_bytes(data)
    handoff = Handoff()
    handoff.put(NAME, data, rows)
    monkeypatch.setattr(pipeline.reader, "parse_objects", lambda *a: pytest.fail("parsed although handed over"))
    first = outcome(tmp_path / NAME, handoff)
    assert first[1] == 3 and handoff.taken == 1 and len(handoff) == 0
    monkeypatch.undo()
    assert outcome(tmp_path / NAME, handoff) == first and handoff.missed == 1  # taken once: parsed the second time


@pytest.mark.parametrize("change", ["edited", "replaced", "appended"])
def test_a_file_changed_after_it_was_written_is_parsed(tmp_path, change):
    """Only the exact bytes the rows were written as take them; any other content is parsed as it is."""
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    data = join_rows([orjson.dumps(r) for r in rows])
    other = {"edited": data.replace(b'"x"', b'"z"'), "replaced": b'{"c": 3.5}\n',
             "appended": data + b'{"a": 3, "b": "w"}\n'}[change]
    path = tmp_path / NAME
    path.write_bytes(other)
    handoff = Handoff()
    handoff.put(NAME, data, rows)
    assert outcome(path, handoff) == outcome(path)
    assert handoff.taken == 0 and handoff.missed == 1


def test_evicted_unknown_and_restarted_files_are_parsed(tmp_path):
    """The cache is bounded (the oldest files go first) and lost with the process: those files are parsed."""
    handoff = Handoff(max_rows=3)
    files = {}
    for n in range(3):
        rows = [{"n": n, "i": i} for i in range(2)]
        data = join_rows([orjson.dumps(r) for r in rows])
        name = f"d.t.0.{n:032x}.0.json"
        (tmp_path / name).write_bytes(data)
        handoff.put(name, data, rows)
        files[name] = data
    assert len(handoff) == 1  # 6 rows offered, 3 kept: only the newest file
    names = sorted(files)
    for name in names:
        assert outcome(tmp_path / name, handoff) == outcome(tmp_path / name)
    assert handoff.taken == 1 and handoff.missed == 2
    assert outcome(tmp_path / names[-1], Handoff()) == outcome(tmp_path / names[-1])  # a restart: nothing held


def test_rows_that_would_not_read_back_the_same_are_not_kept():
    handoff = Handoff()
    for rows in ([{"f": float("nan")}], [{"f": [1, float("inf")]}], [{1: "x"}], [{"t": (1, 2)}],
                 [{"s": type("S", (str,), {})("x")}]):
        handoff.put(NAME, b"{}\n", rows)
    handoff.put(NAME, b'{"n":123456789012345678901}\n', [{"n": 123456789012345678901}])
    handoff.put(NAME, b'{"a":1}\n{"a":2}\n', [{"a": 1}])  # not one row a line
    assert len(handoff) == 0


def make(tmp_path, operator: bool = True):
    """A unit node's streamer, as if an operator ran in the node (or not)."""
    node = unit_node(tmp_path)
    os.makedirs(node.dictionary["watch_dir"])
    streamer = node.component(Streamer)
    streamer._operator_reads = lambda: operator
    return node, streamer, node.component(Handoff)


def test_without_an_operator_in_the_node_nothing_is_left(tmp_path):
    """Nobody would take the rows: they would only hold memory until evicted."""
    node, streamer, handoff = make(tmp_path, operator=False)
    assert Streamer._operator_reads(streamer) is False  # the real check: no Operator process runs
    streamer.add("d", "t", [b'{"a":1}'], objs=[{"a": 1}])
    assert fired(streamer.flush_all()) == 1 and len(handoff) == 0


def test_the_streamer_writes_the_same_file_and_leaves_its_rows(tmp_path):
    """Rows given with their dicts are written exactly as rows given alone; only they leave an entry."""
    node, streamer, handoff = make(tmp_path)
    rows = [{"seq": i, "value": i * 1.5} for i in range(4)]
    lines = [orjson.dumps(r) for r in rows]
    streamer.add("d", "t", lines[:2], objs=rows[:2])
    streamer.add("d", "t", lines[2:], objs=rows[2:])
    streamer.add("d", "u", lines)  # REST streaming: bytes only
    streamer.add("d", "v", lines[:2], objs=rows[:2])
    streamer.add("d", "v", lines[2:])  # one add without dicts: the file is parsed
    assert fired(streamer.flush_all()) == 3
    watch = node.dictionary["watch_dir"]
    names = {n.split(".")[1]: n for n in os.listdir(watch)}
    assert {open(os.path.join(watch, n), "rb").read() for n in names.values()} == {join_rows(lines)}
    assert len(handoff) == 1
    data = open(os.path.join(watch, names["t"]), "rb").read()
    assert handoff.take(names["t"], data) == rows
    assert handoff.take(names["u"], data) is None and handoff.take(names["v"], data) is None


def test_a_file_the_streamer_could_not_write_leaves_nothing_until_written(tmp_path, monkeypatch):
    """A failed write forgets the rows it left; the retry that writes the file leaves them again."""
    from anylog_tw.ingest import streamer as module
    from anylog_tw.ingest.dropfile import WriteError

    node, streamer, handoff = make(tmp_path)
    real, errors = module.write_file, [WriteError("No space left on device", full=True)]

    def write_file(*args):
        if errors:
            raise errors.pop()
        return real(*args)

    monkeypatch.setattr(module, "write_file", write_file)
    streamer.add("d", "t", [b'{"a":1}'], objs=[{"a": 1}])
    assert fired(streamer.flush_all()) == 0
    assert len(handoff) == 0 and streamer.buffered_rows == 1
    assert fired(streamer.flush_all()) == 1
    watch = node.dictionary["watch_dir"]
    [name] = os.listdir(watch)
    assert handoff.take(name, open(os.path.join(watch, name), "rb").read()) == [{"a": 1}]


def test_a_buffer_past_the_handoff_bound_drops_its_dicts(tmp_path):
    """The dicts cost memory beside the rows: a buffer that could not be handed over anyway keeps none."""
    node, streamer, handoff = make(tmp_path)
    handoff.max_rows = 3
    streamer.add("d", "t", [b'{"a":1}'] * 3, objs=[{"a": 1}] * 3)
    assert streamer.buffers[("d", "t", "0", "0")].objs == [{"a": 1}] * 3
    streamer.add("d", "t", [b'{"a":1}'], objs=[{"a": 1}])
    assert streamer.buffers[("d", "t", "0", "0")].objs is None
    assert fired(streamer.flush_all()) == 1 and len(handoff) == 0


@settings(max_examples=300, deadline=None)
@given(value=st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                      max_size=3), max_leaves=8))
def test_what_orjson_reads_is_plain(value):
    """A message kept whole for a mapping policy is orjson's own output: the streamer may trust it."""
    try:
        text = orjson.dumps({"m": value})
    except TypeError:
        return
    try:
        loaded = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    assert plain([loaded])


@pytest.mark.parametrize("text", [b'{"a": 1e400}', b'{"a": 123456789012345678901234567890}', b'{"a": -0.0}',
                                  b'{"a": 18446744073709551616, "b": [1.5e-320]}'])
def test_extreme_numbers_orjson_reads_are_plain_or_refused(text):
    try:
        loaded = orjson.loads(text)
    except orjson.JSONDecodeError:  # infinity: the message is refused as not JSON
        return
    assert plain([loaded]) and orjson.loads(orjson.dumps(loaded)) == loaded
