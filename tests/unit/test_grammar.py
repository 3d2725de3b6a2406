"""The command language parser: tokens, where clauses, references, typed values, scripts."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import GrammarError
from anylog_tw.base.grammar import EQ, GROUP, JSON, STRING, WORD

identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(lambda k: k not in ("and", "where"))
plain_words = st.from_regex(r"[A-Za-z0-9_.:/\[\]@+-]{1,15}", fullmatch=True).filter(
    lambda w: w.lower() not in ("and", "where"))
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def kinds(text):
    return [(t.kind, t.value) for t in grammar.tokenize(text)]


def test_words_strings_and_equals():
    assert kinds('set x = "a b" and y=2') == [
        (WORD, "set"), (WORD, "x"), (EQ, "="), (STRING, "a b"), (WORD, "and"), (WORD, "y"), (EQ, "="), (WORD, "2")]


def test_comparison_operators_stay_inside_words():
    assert kinds("[operator][port] == 32048 and [a] != b") == [
        (WORD, "[operator][port]"), (WORD, "=="), (WORD, "32048"), (WORD, "and"), (WORD, "[a]"), (WORD, "!="),
        (WORD, "b")]
    assert kinds("x>=5") == [(WORD, "x>=5")]


def test_groups_and_json_are_single_tokens():
    tokens = grammar.tokenize('run client (10.0.0.1:2048, !ip !port) get status')
    assert tokens[2].kind == GROUP and tokens[2].value == "10.0.0.1:2048, !ip !port"
    policy = '{"operator": {"name": "a (b)", "ip": "1"}}'
    tokens = grammar.tokenize(f"blockchain insert where policy = {policy}")
    assert tokens[-1].kind == JSON and json.loads(tokens[-1].value)["operator"]["name"] == "a (b)"


@pytest.mark.parametrize("bad", ['echo "never closed', "run client (a, b get", "get status )", '{"a": 1'])
def test_unbalanced_input_is_a_clear_error(bad):
    with pytest.raises(GrammarError) as e:
        grammar.tokenize(bad)
    assert "column" in str(e.value) or "unbalanced" in str(e.value)


@given(any_text.filter(lambda s: s != ""))
def test_quote_round_trips_any_value(value):
    """Whatever a value holds, quoting it gives one token carrying it back."""
    tokens = grammar.tokenize(grammar.quote(value))
    assert len(tokens) == 1
    assert tokens[0].value == value


@given(st.lists(st.tuples(identifiers, st.one_of(
    st.lists(plain_words, min_size=1, max_size=3).map(" ".join),
    any_text.map(lambda s: ("q", s)))), min_size=1, max_size=6))
def test_where_clause_round_trip(pairs):
    """Any keys and values written as `where k = v and ...` parse back to the same pairs, in order."""
    rendered = []
    for key, value in pairs:
        text = grammar.quote(value[1]) if isinstance(value, tuple) else value
        rendered.append(f"{key} = {text}")
    tokens = list(grammar.tokenize("cmd where " + " and ".join(rendered)))
    _, clause = grammar.split_where(tokens)
    parsed = grammar.parse_where(clause)
    assert [k for k, _ in parsed] == [k for k, _ in pairs]
    for (_, value), (_, toks) in zip(pairs, parsed):
        expected = value[1] if isinstance(value, tuple) else value
        assert " ".join(t.value for t in toks) == expected


def test_where_values_keep_and_when_no_key_follows():
    parsed = grammar.parse_where(list(grammar.tokenize("name = salt and pepper and time = 30 seconds")))
    assert [(k, [t.value for t in v]) for k, v in parsed] == [("name", ["salt", "and", "pepper"]),
                                                               ("time", ["30", "seconds"])]


def test_multi_word_keys_and_repeated_keys():
    parsed = grammar.parse_where(list(grammar.tokenize("read only = true and dest = file and dest = dbms")))
    assert [k for k, _ in parsed] == ["read only", "dest", "dest"]


@pytest.mark.parametrize("bad", ["= 5", "key", "key =", "a = 1 and", "a = 1 and = 2"])
def test_bad_where_clauses_are_named(bad):
    with pytest.raises(GrammarError):
        grammar.parse_where(list(grammar.tokenize(bad)))


@given(identifiers, any_text)
def test_substitute_replaces_references(key, value):
    env = {"HOME": "/h"}.get
    text = grammar.substitute(f"<!{key}> !!{key} $HOME", {key: value}.get, env)
    assert text == f"<{value}> !{key} /h"


def test_substitute_typed_reads_and_unknown_keys():
    d = {"n": "42.7", "b": "TRUE", "s": "My Node"}.get
    assert grammar.substitute("!n.int !n.float !b.bool !s.name !s.len", d, {}.get) == "42 42.7 true my_node 7"
    assert grammar.substitute("a != b", d, {}.get) == "a != b"
    with pytest.raises(GrammarError, match="'!missing' is not in the dictionary"):
        grammar.substitute("!missing", d, {}.get)
    with pytest.raises(GrammarError, match="NOPE"):
        grammar.substitute("$NOPE", d, {}.get)
    with pytest.raises(GrammarError, match="not a int"):
        grammar.substitute("!s.int", d, {}.get)


@given(st.text(max_size=20), st.integers(0, 65535))
def test_json_policies_take_typed_references(name, port):
    d = {"name": name, "port": str(port)}.get
    text = grammar.substitute_json('{"operator": {"name": !name, "port": !port.int, "addr": "x:!port"}}', d, {}.get)
    assert json.loads(text) == {"operator": {"name": name, "port": port, "addr": f"x:{port}"}}


@given(st.integers(0, 10**6), st.sampled_from(sorted(values._TIME_UNITS)))
def test_seconds(amount, unit):
    assert values.parse_seconds(f"{amount} {unit}") == amount * values._TIME_UNITS[unit]


@pytest.mark.parametrize("bad", ["", "soon", "5 fortnights", "-3 seconds"])
def test_bad_times(bad):
    with pytest.raises(GrammarError):
        values.parse_seconds(bad)


@pytest.mark.parametrize("text,size", [("10KB", 10240), ("10 KB", 10240), ("10,000 bytes", 10000),
                                       ("2MB", 2 * 1024**2), ("512", 512)])
def test_sizes(text, size):
    assert values.parse_size(text) == size


NOW = 1_764_300_000.0  # 2025-11-28 03:20:00 UTC


@pytest.mark.parametrize("text,expected", [
    ("-3d", NOW - 3 * 86400), ("+2h", NOW + 7200), ("+5t", NOW + 300), ("-10s", NOW - 10), ("now()", NOW),
    ("+1m", 1_766_892_000.0), ("-1y", 1_732_764_000.0),
    ("start of day", 1_764_288_000.0), ("start of hour", 1_764_298_800.0),
    ("2026-12-01 10:00:00", 1_796_119_200.0), ('"26-12-01 10:00:00"', 1_796_119_200.0),
    ("2026-12-01T10:00:00.500000Z", 1_796_119_200.5),
])
def test_dates(text, expected):
    assert values.parse_date(text, NOW) == pytest.approx(expected)


def test_bad_date_names_the_forms():
    with pytest.raises(GrammarError, match="start of day"):
        values.parse_date("yesterday-ish", NOW)


@pytest.mark.parametrize("text,value", [("true", True), ("FALSE", False), (" True ", True)])
def test_booleans(text, value):
    assert values.parse_bool(text) is value


def test_booleans_refuse_other_words():
    with pytest.raises(GrammarError, match="true or false"):
        values.parse_bool("yes")


def test_scripts_comments_blocks_and_line_numbers():
    script = '''# a comment
get status

<p = {"operator": {
   # not a command
   "name": "x"}}>
echo done
'''
    assert list(grammar.split_script(script)) == [
        (2, "get status"), (4, 'p = {"operator": {\n"name": "x"}}'), (7, "echo done")]


def test_unclosed_block_is_reported_with_its_line():
    with pytest.raises(GrammarError, match="line 2"):
        list(grammar.split_script("get status\n<p = {\n"))


@given(st.lists(st.sampled_from(["get status", "# c", "", "echo a", "<x = {", '"a": 1}>']), max_size=20))
def test_split_script_never_loses_a_command(lines):
    """Every complete plain line comes out, in order, whatever surrounds it."""
    try:
        commands = [c for _, c in grammar.split_script("\n".join(lines))]
    except GrammarError:
        assume(False)
    plain = [c for c in commands if "\n" not in c and not c.startswith("x =")]
    outside = []
    depth = False
    for line in lines:
        if depth:
            depth = not line.endswith(">")
        elif line.startswith("<"):
            depth = not line.endswith(">")
        elif line and not line.startswith("#"):
            outside.append(line)
    assert plain == outside


def test_lists():
    assert values.split_list("(a.b, c.d)") == ["a.b", "c.d"]
    assert values.split_list("x,y") == ["x", "y"]


def test_output_target_and_options():
    assert grammar.split_output_target("get status") is None
    pairs, command = grammar.split_output_target('[file = !prep_dir/a b.json, key = "results", show = true] = rest get '
                                                 "where url = http://h/x?a=1&b=2")
    assert pairs == [("file", "!prep_dir/a b.json"), ("key", "results"), ("show", "true")]
    assert command == "rest get where url = http://h/x?a=1&b=2"
    assert grammar.with_options(command, pairs[:2]) == ('rest get where url = http://h/x?a=1&b=2 and '
                                                        'file = "!prep_dir/a b.json" and key = results')
    assert grammar.with_options("get status", [("format", "json")]) == "get status where format = json"
