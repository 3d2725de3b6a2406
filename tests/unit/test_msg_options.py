"""`run msg client` options and topic filters, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.base.errors import OptionError
from anylog_tw.base.grammar import tokenize
from anylog_tw.msg.options import Rule, read_client, read_rule
from anylog_tw.msg.topics import TopicTable, check_filter

CASE1 = ('where broker = "driver.cloudmqtt.com" and port = 18975 and user = mqwdtklv and password = uRimssLO4dIo '
         'and log = false and topic = (name = test and dbms = "bring [metadata][company]" and table = '
         '"bring [metadata][machine_name] _ [metadata][serial_number]" and column.timestamp.timestamp = "bring [ts]" '
         'and column.value = (type=int and value="bring [value]"))')


def read(text: str, variables: dict | None = None):
    variables = variables or {}
    return read_client(list(tokenize(text)), lambda t: variables.get(t[1:], t) if t.startswith("!") else t)


def test_acceptance_case_1_reads_every_key():
    spec = read(CASE1)
    assert (spec.broker, spec.port, spec.user, spec.password, spec.log) == (
        "driver.cloudmqtt.com", 18975, "mqwdtklv", "uRimssLO4dIo", False)
    assert spec.broker_id == "driver_cloudmqtt_com_18975"
    (topic,) = spec.topics
    assert topic.name == "test" and topic.qos == 0
    assert topic.dbms == Rule("bring", "[metadata][company]")
    assert topic.table == Rule("bring", "[metadata][machine_name] _ [metadata][serial_number]")
    ts, value = topic.columns
    assert (ts.name, ts.type, ts.value) == ("timestamp", Rule("literal", "timestamp"), Rule("bring", "[ts]"))
    assert (value.name, value.type, value.value) == ("value", Rule("literal", "int"), Rule("bring", "[value]"))
    assert dict(topic.rules)["column.value"] == {"type": "int", "value": "bring [value]"}
    assert dict(topic.rules)["table"] == "bring [metadata][machine_name] _ [metadata][serial_number]"


def test_local_broker_case_with_now_and_single_quotes():
    spec = read("where broker=local and log=false and topic=(name=mqtt-test and dbms=my_dbms and table=rand_data and "
                "column.timestamp.timestamp=now and column.value.float='bring [readings][][value]')")
    assert spec.broker == "local"
    ts, value = spec.topics[0].columns
    assert ts.value == Rule("now", "") and ts.value.shown() == "now()"
    assert value.value.shown() == "['[readings][][value]']"


def test_several_topics_qos_default_and_per_topic():
    spec = read("where broker = h and qos = 1 and topic = (name = a and dbms = d and table = t and column.v.int = "
                "\"bring [v]\") and topic = (name = b/# and qos = 0 and policy = p1)")
    assert [(t.name, t.qos) for t in spec.topics] == [("a", 1), ("b/#", 0)]
    assert spec.topics[1].policies == ("p1",)


def test_policy_given_by_value_takes_its_id():
    spec = read("where broker = local and topic = (name = t and policy = !p)",
                {"p": '{"mapping": {"id": "telegraf-mapping", "dbms": "x"}}'})
    assert spec.topics[0].policies == ("telegraf-mapping",)


def test_rest_needs_a_user_agent():
    with pytest.raises(OptionError, match="user-agent"):
        read("where broker = rest and topic = (name = t and dbms = d and table = t and column.v.int = 1)")
    spec = read("where broker = rest and user-agent = anylog and topic = (name = t and dbms = d and table = t and "
                "column.v.int = \"bring [v]\")")
    assert spec.user_agent == "anylog" and spec.address == "rest"


def test_bare_topic_and_persist_need_no_rules():
    spec = read('where broker = h and topic = "#"')
    assert spec.topics[0].name == "#" and not spec.topics[0].columns
    spec = read("where broker = local and port = 32150 and log= false and topic = (name = edgexpert-anylog and "
                "persist = true and dbms = abc and table = 123)")
    assert spec.topics[0].persist


@pytest.mark.parametrize("text, message", [
    ("where port = 1 and topic = (name = t)", "needs broker"),
    ("where broker = h", "at least one topic"),
    ("where broker = h and colour = red and topic = (name = t)", "unknown key 'colour'"),
    ("where broker = h and topic = (dbms = d)", "needs a name"),
    ("where broker = h and topic = (name = t and table = x and column.v.int = 1)", "needs a dbms"),
    ("where broker = h and topic = (name = t and dbms = d and column.v.int = 1)", "needs a table"),
    ("where broker = h and topic = (name = t and dbms = d and table = x)", "needs column rules"),
    ("where broker = h and topic = (name = t and qos = 3 and dbms = d and table = x and column.v.int = 1)", "qos"),
    ("where broker = h and topic = (name = a/#/b and dbms = d and table = x and column.v.int = 1)", "'#'"),
    ("where broker = h and topic = (name = a/b+ and dbms = d and table = x and column.v.int = 1)", "'\\+'"),
    ("where broker = h and topic = (name = t and dbms = d and table = x and column.v.blob = 1)", "column type"),
    ("where broker = h and topic = (name = t and dbms = d and table = x and column.v = (value = 1))", "type and value"),
    ("where broker = h and topic = (name = t and dbms = d and table = x and column.v.int = 1 and column.v.str = 2)",
     "given twice"),
    ("where broker = h and project_id = p and topic = \"#\"", "not supported"),
    ("where broker = h and topic = (name = t and table_name_as_topic = true and dbms = d)", "add dynamic"),
    ("where broker = h and port = 70000 and topic = \"#\"", "port"),
    ("where broker = h and ca = x.pem and topic = \"#\"", "ssl = true"),
    ("where broker = h and topic = a and topic = a", "twice"),
])
def test_bad_options_are_named(text, message):
    with pytest.raises(OptionError, match=message):
        read(text)


def test_rules():
    assert read_rule("bring [a][b]") == Rule("bring", "[a][b]")
    assert read_rule("NOW()") == Rule("now", "")
    assert read_rule("42") == Rule("literal", "42")


def test_topic_table_exact_then_most_specific_wildcard():
    table = TopicTable()
    for name in ("#", "a/#", "a/+/c", "a/b/c"):
        table.add(name, name)
    assert table.find("a/b/c") == "a/b/c"
    assert table.find("a/x/c") == "a/+/c"
    assert table.find("a/x/y") == "a/#"
    assert table.find("b") == "#"
    assert table.find("$SYS/x") is None  # '#' does not take broker topics
    table.remove("#")
    assert table.find("b") is None
    with pytest.raises(OptionError):
        table.add("a/#", "again")


def test_topic_matching_is_case_sensitive():
    table = TopicTable()
    table.add("C/#", 1)
    assert table.find("c/data") is None and table.find("C/data") == 1


level = st.text(alphabet="abc", min_size=1, max_size=2)


@given(st.lists(level, min_size=1, max_size=4), st.lists(st.booleans(), min_size=4, max_size=4))
def test_plus_matches_exactly_one_level(levels, plus_at):
    """A filter with '+' in some levels matches a topic iff all other levels are equal."""
    topic = "/".join(levels)
    filt = "/".join("+" if plus_at[i] else lv for i, lv in enumerate(levels))
    table = TopicTable()
    table.add(check_filter(filt), "hit")
    assert table.find(topic) == "hit"
    assert table.find(topic + "/extra") is None
