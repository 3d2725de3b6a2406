"""JSON rows from PUT bodies: arrays, one object, NDJSON with LF or CRLF; bad bodies are named."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.ingest import jsonrows
from anylog_tw.ingest.jsonrows import BodyError, join_rows, json_rows, rows_text

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
objects = st.dictionaries(st.text(min_size=1, max_size=10), scalars, min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(objects, min_size=1, max_size=20), st.sampled_from(["array", "lf", "crlf", "lf-blank"]))
def test_every_body_form_gives_the_same_rows(rows, form):
    """The same rows sent in any of the accepted forms come back as the same objects, one per line."""
    if form == "array":
        body = json.dumps(rows).encode()
    else:
        sep = {"lf": "\n", "crlf": "\r\n", "lf-blank": "\n\n"}[form]
        body = sep.join(json.dumps(r) for r in rows).encode() + sep.encode()
    got = json_rows(body)
    assert [orjson.loads(r) for r in got] == [orjson.loads(orjson.dumps(r)) for r in rows]
    assert all(b"\n" not in r for r in got)
    assert join_rows(got).count(b"\n") == len(rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(objects, min_size=1, max_size=10), st.booleans())
def test_simdjson_and_orjson_paths_agree(rows, crlf):
    """The fast check (simdjson) and the plain one (orjson) accept the same NDJSON and write the same file."""
    sep = b"\r\n" if crlf else b"\n"
    body = sep.join(orjson.dumps(r) for r in rows)
    fast = rows_text(body)
    saved, jsonrows.cysimdjson = jsonrows.cysimdjson, None
    try:
        assert rows_text(body) == fast
    finally:
        jsonrows.cysimdjson = saved
    assert fast[1] == len(rows) and fast[0].count(b"\n") == len(rows) and b"\r" not in fast[0]


def test_a_64_bit_overflow_is_taken_as_orjson_takes_it():
    assert rows_text(b'{"a": 123456789012345678901234567890}\n{"a": 1}')[1] == 2


def test_one_pretty_printed_object_is_one_row():
    body = b'{\n  "a": 1,\n  "b": "x"\n}\n'
    assert json_rows(body) == [b'{"a":1,"b":"x"}']


@pytest.mark.parametrize("body, words", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"[]", "array is empty"),
    (b"hello world\n", "line 1 is not JSON"),
    (b'{"a": 1}\n{"a": 2\n', "line 2 is not JSON"),
    (b'{"a": 1}\n[1, 2]\n', "line 2 is a JSON array"),
    (b"[1, 2]", "row 1 is a number"),
    (b'[{"a": 1}, "x"]', "row 2 is a string"),
    (b"42", "the body is a number"),
    (b'{"a": 1} {"b": 2}', "not JSON"),
])
def test_bad_bodies_are_named(body, words):
    with pytest.raises(BodyError) as e:
        json_rows(body)
    assert words in e.value.message
    assert "JSON object" in e.value.message
