"""The `blockchain get` language (spec 5.7): the spec's examples, bad input, and properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anylog_tw.base.errors import GrammarError
from anylog_tw.metadata.destinations import resolve as resolve_destination
from anylog_tw.metadata.ledger import Ledger
from anylog_tw.metadata.query import MemoryStore, QueryError, parse_query, run_query, select

OP1 = {"operator": {"hostname": "operator1", "name": "cluster1-operator1", "company": "AnyLog",
                    "ip": "155.248.209.193", "local_ip": "10.0.0.173", "port": 32148, "rest_port": 32149,
                    "cluster": "06f093559c851c6d4c3e950ebc9c5499", "loc": "37.3378,-121.8908", "country": "US",
                    "state": "California", "city": "San Jose", "id": "d93487bec012c8847bca734bcc31a3a6",
                    "date": "2022-06-06T01:36:02.312181Z", "member": 201, "ledger": "global"}}
OP2 = {"operator": {"name": "cluster2-operator1", "company": "Lit", "ip": "10.0.0.80", "port": 32158,
                    "cluster": "c2", "country": "DE", "city": "Berlin", "id": "op2",
                    "date": "2023-01-01T00:00:00.000000Z", "member": 7, "ledger": "global"}}
QUERY = {"query": {"name": "q1", "company": "AnyLog", "ip": "10.0.0.90", "port": 32348, "country": "US",
                   "city": "Paris", "id": "q1", "date": "2022-01-01T00:00:00.000000Z"}}
MASTER = {"master": {"name": "m", "ip": "10.0.0.25", "port": 32048, "id": "m1", "date": "2021-01-01T00:00:00.0Z"}}
CLUSTER = {"cluster": {"company": "Lit San Leandro", "name": "lsl-cluster2", "status": "active",
                       "table": [{"dbms": "lsl", "name": "ping"}, {"dbms": "lsl", "name": "temp"}],
                       "id": "06f093559c851c6d4c3e950ebc9c5499", "date": "2022-01-02T00:00:00.0Z"}}
CHILD = {"cluster": {"parent": "06f093559c851c6d4c3e950ebc9c5499", "name": "lsl-cluster2", "company": "Lit",
                     "table": [{"dbms": "lsl", "name": "volt"}], "id": "child1", "date": "2022-02-02T00:00:00.0Z"}}
TABLE = {"table": {"name": "t39", "dbms": "nov", "create": "CREATE TABLE t39 (...)", "id": "t39id",
                   "date": "2025-04-09T00:09:53.406292Z", "ledger": "local"}}
ALL = [OP1, OP2, QUERY, MASTER, CLUSTER, CHILD, TABLE]


@pytest.fixture
def store():
    return MemoryStore(ALL)


def get(store, text):
    return run_query(text, store)


def names(outcome):
    return [next(iter(p.values())).get("name") for p in outcome.value]


# --- types and form 1 ----------------------------------------------------------------------


def test_one_type_returns_the_policies_as_json(store):
    out = get(store, "operator")
    assert out.kind == "json" and out.value == [OP1, OP2]


def test_several_types_and_star(store):
    assert names(get(store, "(operator, query)")) == ["cluster1-operator1", "cluster2-operator1", "q1"]
    assert len(get(store, "*").value) == len(ALL)


def test_key_value_pairs_with_the_three_path_spellings(store):
    for key in ("name", "[operator][name]", "operator[name]", "[name]"):
        assert names(get(store, f"operator where {key} = cluster2-operator1")) == ["cluster2-operator1"]


def test_numbers_match_their_text_and_several_pairs_and_together(store):
    assert names(get(store, "operator where port = 32148 and company = AnyLog")) == ["cluster1-operator1"]
    assert get(store, "operator where port = 32148 and company = Lit").value == []


def test_a_list_attribute_is_tested_element_by_element(store):
    """The docs' table-to-cluster query: table[dbms] = D and table[name] = T bring [cluster][id]."""
    out = get(store, "cluster where table[dbms] = lsl and table[name] = ping bring [cluster][id]")
    assert out.value == "06f093559c851c6d4c3e950ebc9c5499"


def test_with_tests_that_a_list_holds_a_value():
    s = MemoryStore([{"config": {"name": "a", "tags": ["x", "y"], "id": "1"}},
                     {"config": {"name": "b", "tags": ["z"], "id": "2"}}])
    assert names(get(s, "config where tags with y")) == ["a"]


def test_a_multi_word_value_is_kept_whole(store):
    assert names(get(store, "operator where city = San Jose")) == ["cluster1-operator1"]
    assert names(get(store, 'operator where city = "San Jose" and country = US')) == ["cluster1-operator1"]


# --- the conditional form ------------------------------------------------------------------


@pytest.mark.parametrize("condition, expected", [
    ("[operator][port] > 32150", ["cluster2-operator1"]),
    ("[operator][port] <= 32148", ["cluster1-operator1"]),
    ("[operator][country] != US", ["cluster2-operator1"]),
    ("[operator][city] contains Jose", ["cluster1-operator1"]),
    ("[operator][name] startswith cluster2", ["cluster2-operator1"]),
    ("[operator][ip] endswith .80", ["cluster2-operator1"]),
    ("[operator][country] == US or [operator][city] == Berlin", ["cluster1-operator1", "cluster2-operator1"]),
    ("[operator][country] == US and ([operator][port] < 1 or [operator][member] == 201)", ["cluster1-operator1"]),
    ("[operator][name] == 'cluster1-operator1'", ["cluster1-operator1"]),
])
def test_conditions(store, condition, expected):
    assert names(get(store, f"operator where {condition}")) == expected


def test_conditions_across_types_with_star_paths(store):
    assert names(get(store, "(operator, query) where [*][country] == US")) == ["cluster1-operator1", "q1"]


def test_childfrom_follows_parent_links(store):
    assert names(get(store, "cluster where [cluster] childfrom 06f093559c851c6d4c3e950ebc9c5499")) == [
        "lsl-cluster2"]
    assert get(store, "cluster where [cluster] childfrom child1").value == []


# --- bring ---------------------------------------------------------------------------------


def test_bring_keys_and_literals_with_a_separator(store):
    out = get(store, 'operator bring [operator][ip] ":" [operator][port] separator = ,')
    assert out.value == "155.248.209.193:32148,10.0.0.80:32158"


def test_bring_without_separator_concatenates_and_two_keys_are_spaced(store):
    assert get(store, "operator bring [operator][name] [operator][port] ,").value == \
        "cluster1-operator1 32148,cluster2-operator1 32158,"
    assert get(store, "operator bring [operator][port] separator = \\n").value == "32148\n32158"


def test_bring_ip_port_and_the_shortcut_destinations(store):
    assert get(store, "operator bring.ip_port").value == "155.248.209.193:32148,10.0.0.80:32158"
    assert get(store, "master bring.ip_port").value == "10.0.0.25:32048"


def test_bring_first_recent_unique_count_min_max(store):
    assert get(store, "operator bring.first [operator][name]").value == "cluster1-operator1"
    assert get(store, "operator bring.recent [operator][name]").value == "cluster2-operator1"
    assert get(store, "(operator, query) bring.unique [*][company] separator = ,").value == "AnyLog,Lit"
    assert get(store, "(operator, query) bring.count").value == "3"
    assert get(store, "(operator, query) bring.unique.count [*][company]").value == "2"
    assert get(store, "operator bring.min [operator][port]").value == "32148"
    assert get(store, "operator bring.max [operator][port]").value == "32158"


def test_bring_json_list_and_whole_policy(store):
    assert get(store, "operator bring.json [operator][name] [operator][port]").value == [
        {"name": "cluster1-operator1", "port": 32148}, {"name": "cluster2-operator1", "port": 32158}]
    assert get(store, "operator bring.list [operator][port]").value == ["32148", "32158"]
    assert get(store, "master bring.json []").value == [MASTER]
    assert json.loads(get(store, "master bring []").value) == MASTER


def test_bring_table_and_sort(store):
    out = get(store, "(operator, query) bring.table.sort(1) [*][name] [*][port]")
    assert out.kind == "table" and out.columns == ["name", "port"]
    assert [r[1] for r in out.value] == ["32148", "32158", "32348"]
    out = get(store, "(operator, query) bring.table.sort(0) [*][city] [*][name]")
    assert [r[0] for r in out.value] == ["Berlin", "Paris", "San Jose"]


def test_bring_children(store):
    assert get(store, "cluster where id = 06f093559c851c6d4c3e950ebc9c5499 bring.children [cluster][id]").value \
        == "child1"


def test_bring_substring_functions(store):
    assert get(store, "operator where id = op2 bring [operator][ip(rfind(.))]").value == "80"
    assert get(store, "operator where id = op2 bring [operator][ip(find(.))]").value == "10"
    assert get(store, "operator where id = op2 bring [operator][name(prefix(8))]").value == "cluster2"
    assert get(store, "operator where id = op2 bring [operator][name(suffix(9))]").value == "operator1"


def test_bring_null_keeps_policies_without_the_key(store):
    assert get(store, "(operator, query) bring [*][member] separator = ,").value == "201,7"
    assert get(store, "(operator, query) bring.null [*][member] separator = ,").value == "201,7,"


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, fragment", [
    ("", "needs a policy type"),
    ("operatr", "unknown policy type 'operatr'"),
    ("operator where [operator][name == x", "unbalanced"),
    ("(operator, query where x = 1", "unbalanced"),
    ("operator where name = 'abc", "unterminated quote"),
    ("operator where", "must be followed by a condition"),
    ("operator where name", "no '= value'"),
    ("operator where name =", "has no value"),
    ("operator where [port] >", "ends too early"),
    ("operator where [port] > 3 and", "ends too early"),
    ("operator bring [operator][nope]", "no selected policy"),
    ("operator bring.sideways [operator][ip]", "unknown bring modifier"),
    ("operator bring.table.sort(5) [operator][ip]", "columns 0 to 0"),
    ("operator query", "give one policy type"),
])
def test_bad_queries_are_clear_errors(store, text, fragment):
    with pytest.raises(QueryError) as e:
        get(store, text)
    assert fragment in e.value.message


def test_a_known_type_with_no_policy_is_an_empty_answer_not_an_error():
    assert run_query("publisher", MemoryStore([])).value == []


# --- destinations --------------------------------------------------------------------------


def test_destinations_from_metadata(store):
    assert resolve_destination(store, "blockchain get operator where [country] == US bring.ip_port") == [
        "155.248.209.193:32148"]
    assert resolve_destination(store, "operator where [country] contains US") == ["155.248.209.193:32148"]
    assert resolve_destination(store, "(operator, query) where [country] == US") == [
        "155.248.209.193:32148", "10.0.0.90:32348"]
    assert resolve_destination(store, "dbms = lsl and table = volt") == ["155.248.209.193:32148"]
    assert resolve_destination(store, "table = ping and dbms = lsl") == ["155.248.209.193:32148"]
    assert resolve_destination(store, "dbms = lsl and table = nothing") == []
    assert resolve_destination(store, "10.0.0.1:32048, 10.0.0.2:32048") is None
    with pytest.raises(QueryError):
        resolve_destination(store, "blockchain get operator")


# --- properties ----------------------------------------------------------------------------

names_st = st.sampled_from(["a", "b", "c", "San Jose", "x-1"])
values_st = st.one_of(names_st, st.integers(-3, 3), st.booleans(), st.lists(names_st, max_size=3))
policy_st = st.builds(
    lambda t, attrs, n: {t: dict(attrs, id=f"id{n}")},
    st.sampled_from(["operator", "cluster"]),
    st.dictionaries(st.sampled_from(["name", "port", "flag", "city"]), values_st, max_size=4),
    st.integers(0, 10**9),
)


def _unique_ids(policies):
    seen = {}
    for i, p in enumerate(policies):
        inner = next(iter(p.values()))
        inner["id"] = f"id{i}"
        seen[inner["id"]] = p
    return list(seen.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(policy_st, max_size=25), st.sampled_from(["name", "port", "flag", "city"]),
       st.sampled_from(["a", "San Jose", "1", "-1", "true", "False", "1.0", "x-1", "b"]), st.data())
def test_the_ledger_indexes_answer_like_a_scan(tmp_path, policies, attr, value, data):
    """An equality answered from the ledger's index is exactly what a full scan answers."""
    policies = _unique_ids(policies)
    ledger = Ledger(str(tmp_path / "unused.json"))
    ledger.install([json.loads(json.dumps(p)) for p in policies], b"")
    quoted = f'"{value}"' if " " in value else value
    text = f"operator where {attr} = {quoted}"
    if data.draw(st.booleans()):
        text += " and name = a"
    assert select(parse_query(text), ledger) == select(parse_query(text), MemoryStore(ledger.all()))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-50, 50), max_size=20), st.integers(-60, 60),
       st.sampled_from(["<", ">", "<=", ">=", "==", "!="]))
def test_numeric_conditions_agree_with_python(ports, n, op):
    store = MemoryStore([{"operator": {"port": p, "id": str(i)}} for i, p in enumerate(ports)])
    got = [next(iter(p.values()))["port"] for p in run_query(f"operator where [operator][port] {op} {n}",
                                                              store).value]
    expected = [p for p in ports if eval(f"{p} {op} {n}")]
    assert got == expected


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=15))
def test_and_binds_tighter_than_or(flags):
    store = MemoryStore([{"operator": {"a": a, "b": b, "id": str(i)}} for i, (a, b) in enumerate(flags)])
    got = run_query("operator where [a] == true or [b] == true and [a] == false", store).value
    expected = [i for i, (a, b) in enumerate(flags) if a or (b and not a)]
    assert [int(next(iter(p.values()))["id"]) for p in got] == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("operatowhebing []()'\"=<>!,.*_:01 ")), max_size=40))
def test_any_text_parses_or_is_a_grammar_error(text):
    """Garbage never escapes as anything but a readable GrammarError."""
    try:
        run_query(text, MemoryStore(ALL))
    except GrammarError as e:
        assert e.message


# --- join and merge ------------------------------------------------------------------------

BUCKET = {"bucket": {"name": "my_bucket", "operator": "cluster2-operator1", "id": "b1", "date": "2026-01-01Z"}}
LONELY = {"bucket": {"name": "lonely", "operator": "nobody", "id": "b2", "date": "2026-01-02Z"}}


def test_join_keeps_both_policies_and_drops_left_records_without_a_match():
    s = MemoryStore(ALL + [BUCKET, LONELY])
    out = get(s, "bucket join (blockchain get operator where name = [bucket][operator])")
    assert out.value == [{**BUCKET, **OP2}]
    out = get(s, "bucket where name = my_bucket join (blockchain get operator where name = [bucket][operator]) "
                 "bring.table [bucket][name] [operator][ip] [operator][port]")
    assert out.columns == ["name", "ip", "port"] and out.value == [["my_bucket", "10.0.0.80", "32158"]]


def test_merge_adds_the_right_attributes_and_keeps_left_values_and_unmatched_records():
    s = MemoryStore(ALL + [BUCKET, LONELY])
    out = get(s, "bucket merge (blockchain get operator where name = [bucket][operator])")
    merged, lonely = out.value
    assert merged["bucket"]["ip"] == "10.0.0.80" and merged["bucket"]["name"] == "my_bucket"
    assert merged["bucket"]["id"] == "b1" and lonely == LONELY
    assert get(s, "bucket merge (blockchain get operator where name = [bucket][operator]) bring.ip_port").value == \
        "10.0.0.80:32158"


@pytest.mark.parametrize("text, fragment", [
    ("bucket join blockchain get operator", "is followed by '(blockchain get"),
    ("bucket join (operator where name = x)", "holds a 'blockchain get' query"),
    ("bucket join (blockchain get operator bring [operator][ip])", "takes no 'bring'"),
])
def test_bad_joins(text, fragment):
    with pytest.raises(QueryError) as e:
        get(MemoryStore(ALL + [BUCKET]), text)
    assert fragment in e.value.message


def test_bring_keys_with_spaces_and_quotes_read_the_same_as_in_mapping_policies():
    """The bring language is base/bring.py's for blockchain get too (issue 18)."""
    gateway = {"gateway": {"name": "g1", "id": "g1", "station id": "s 7", "a]b": 1, "date": "2024-01-01T00:00:00Z",
                           "PM 2.5 (ug/m3)": "81.5"}}
    s = MemoryStore([gateway])
    assert get(s, "gateway bring [gateway][station id]").value == "s 7"
    assert get(s, "gateway bring [gateway]['a]b']").value == "1"
    assert get(s, "gateway bring ['PM 2.5 (ug/m3)'] _ [name]").value == "81.5_g1"
    assert get(s, "gateway bring.json [gateway][station id]").value == [{"station id": "s 7"}]
