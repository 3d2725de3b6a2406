"""base/bring.py: the bring language shared by `blockchain get`, mapping policies and messages."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from anylog_tw.base.bring import EACH, MISSING, BringError, Many, Segment, format_key, parse_bring, parse_key
from anylog_tw.base.bring_values import compile_key, compile_value

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
any_key = st.text(max_size=12)  # spaces, brackets, quotes, backslashes, parentheses: any key at all
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(any_key, inner, max_size=4), max_leaves=12)
objects = st.dictionaries(any_key, json_values, min_size=1, max_size=5)


@st.composite
def object_and_path(draw):
    """A JSON object and a path of keys it has, walked by hand (the reference the bring must match)."""
    obj = draw(objects)
    path, value = [], obj
    while True:
        key = draw(st.sampled_from(sorted(value)))
        path.append(key)
        value = value[key]
        if not isinstance(value, dict) or not value or draw(st.booleans()):
            return obj, path, value


@settings(max_examples=500)
@given(object_and_path(), st.booleans())
def test_any_bring_over_an_objects_keys_finds_the_value_walking_finds(case, with_word):
    obj, path, expected = case
    text = ("bring " if with_word else "") + format_key(path)
    bring = parse_bring(text)
    assert bring.keys == [tuple(Segment(k) for k in path)]
    assert compile_value(bring)(obj) == expected
    assert compile_key(bring.keys[0], fold_case=False)(obj) == expected


@settings(max_examples=300)
@given(any_key, any_key, st.lists(st.dictionaries(any_key, scalars, max_size=3), max_size=5), scalars)
def test_a_list_walk_gives_one_value_per_element(list_key, item_key, elements, other):
    """`[list][][key]`: one value per element, MISSING where an element lacks the key (looked up
    exactly, then without regard to case)."""
    obj = {list_key: elements}

    def lookup(e):
        if item_key in e:
            return e[item_key]
        return next((v for k, v in e.items() if k.lower() == item_key.lower()), MISSING)

    expected = [lookup(e) for e in elements]
    found = compile_value(parse_bring("bring " + format_key([list_key]) + "[]" + format_key([item_key])))(obj)
    assert type(found) is Many and list(found) == expected


@given(st.lists(any_key, min_size=1, max_size=4))
def test_format_key_and_parse_key_round_trip(path):
    assert parse_key(format_key(path)) == tuple(Segment(k) for k in path)


def test_keys_are_taken_whole_with_spaces_and_punctuation():
    obj = {"meta": {"station id": "s-7"}, "PM 2.5 (ug/m3)": 12.5, "a]b": 1, "it's": 2, 'say "x"': 3}
    assert compile_value(parse_bring("bring [meta][station id]"))(obj) == "s-7"
    assert compile_value(parse_bring("['PM 2.5 (ug/m3)']"))(obj) == 12.5  # AnyLog's mapping-policy spelling
    assert compile_value(parse_bring("[PM 2.5 (ug/m3)]"))(obj) == 12.5
    assert compile_value(parse_bring("bring ['a]b']"))(obj) == 1
    assert compile_value(parse_bring('bring ["it\'s"]'))(obj) == 2
    assert compile_value(parse_bring("bring ['it\\'s']"))(obj) == 2
    assert compile_value(parse_bring("bring ['say \"x\"']"))(obj) == 3


def test_literal_text_between_keys_is_kept():
    """anylog-mqtt-spec §3: `bring [metadata][machine_name] _ [metadata][serial_number]`."""
    msg = {"metadata": {"company": "Anylog", "machine_name": "cutter 23", "serial_number": "1234567890"}}
    value = compile_value(parse_bring("bring [metadata][machine_name] _ [metadata][serial_number]"))
    assert value(msg) == "cutter 23_1234567890"
    assert compile_value(parse_bring("bring [metadata][company] [metadata][serial_number]"))(msg) == \
        "Anylog 1234567890"  # two keys side by side: a space, as in blockchain get
    assert compile_value(parse_bring('bring [metadata][company] ": " [x]'))(msg) is MISSING


def test_several_list_walks_are_matched_by_position():
    msg = {"readings": [{"name": "a", "value": 1}, {"name": "b", "value": 2}], "device": "d"}
    names = compile_value(parse_bring("bring [readings][][name] - [device]"))(msg)
    assert names == ["a-d", "b-d"] and type(names) is Many
    bad = {"x": [1, 2], "y": [1]}
    with pytest.raises(BringError, match="2 and 1 elements"):
        compile_value(parse_bring("bring [x][] [y][]"))(bad)


def test_lookups_fall_back_to_any_case():
    assert compile_value(parse_bring("[Value]"))({"value": 3}) == 3
    assert compile_value(parse_bring("[value]"))({"value": 3, "Value": 4}) == 3


def test_value_modifiers():
    msg = {"tags": ["b", "a", "b"], "nums": ["10", 9, "11"], "r": [{"v": 1}, {"v": 2}]}
    assert compile_value(parse_bring("bring.first [tags]"))(msg) == "b"
    assert compile_value(parse_bring("bring.recent [tags]"))(msg) == "b"
    assert compile_value(parse_bring("bring.unique [tags]"))(msg) == ["b", "a"]
    assert compile_value(parse_bring("bring.unique.count [tags]"))(msg) == 2
    assert compile_value(parse_bring("bring.min [nums]"))(msg) == 9
    assert compile_value(parse_bring("bring.max [nums]"))(msg) == "11"
    assert compile_value(parse_bring("bring.json [r][][v]"))(msg) == [1, 2]  # one value, not rows
    assert compile_value(parse_bring("bring.first [r][][v]"))(msg) == 1
    assert compile_value(parse_bring("bring.list [nums]"))(msg) == ["10", "9", "11"]
    assert compile_value(parse_bring("bring.null [nope]"))(msg) is None
    assert compile_value(parse_bring("bring [nope]"))(msg) is MISSING
    assert compile_value(parse_bring("bring.count [nope]"))(msg) == 0


@pytest.mark.parametrize("text,fragment", [
    ("bring.table [a]", "formats a 'blockchain get' answer"),
    ("bring.ip_port", "formats"),
    ("bring _", "names no key"),
])
def test_brings_that_cannot_give_a_column_value(text, fragment):
    with pytest.raises(BringError, match=fragment):
        compile_value(parse_bring(text))


@pytest.mark.parametrize("text,fragment", [
    ("bring [a", "no matching ']'"), ("bring a]", "unbalanced ']'"), ("bring ['a]", "unterminated quote"),
    ("bring ['a' b]", "expected ']' after the quoted key"), ("bring [a[b]]", "holding '\\[' is quoted"),
    ("bring.sideways [a]", "unknown bring modifier"), ("bring.sort(1) [a]", "follows '.table'"),
    ("bring [a] separator", "'= X'"),
])
def test_bad_brings_are_clear_errors(text, fragment):
    with pytest.raises(BringError, match=fragment):
        parse_bring(text)


def test_parse_shapes():
    b = parse_bring('bring.table.sort(1,0) [*][name] ":" [x(rfind(.))] [] separator = \\n')
    assert b.modifiers == (("table", None), ("sort", [1, 0]))
    assert b.items == (("key", (Segment("*"), Segment("name"))), ("lit", ":"),
                       ("key", (Segment("x", ("rfind", ".")),)), ("key", (EACH,)))
    assert b.separator == "\n"
    assert parse_key("data") == parse_key("[data]") == (Segment("data"),)
    assert parse_key("['my data']") == (Segment("my data"),)


@given(st.text(max_size=40))
def test_any_text_parses_or_fails_with_a_bring_error(text):
    assume("\x00" not in text)
    try:
        bring = parse_bring(text)
    except BringError as e:
        assert e.message
        return
    for key in bring.keys:
        assert all(isinstance(s, Segment) for s in key)
