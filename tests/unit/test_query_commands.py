"""The query commands that need no network: options, get datetime, set/get query mode, query status."""

from __future__ import annotations

import pytest

from anylog_tw.base.errors import CommandError, OptionError
from anylog_tw.query.options import parse_extend, parse_include, parse_options
from anylog_tw.query.plan import Extend
from tests.helpers import run, unit_node


def test_extend_titles_prefixes_and_aliases():
    assert parse_extend("(@ip, @port.str, +node_name as node, !city)") == (
        Extend("@", "ip", "ip"), Extend("@", "port", "port"), Extend("+", "node_name", "node"),
        Extend("+", "city", "city"))
    with pytest.raises(OptionError, match="Wrong variable name prefix"):
        parse_extend("(#disk)")
    with pytest.raises(OptionError, match="'@host' is not known"):
        parse_extend("(@host)")


def test_include_and_options():
    assert parse_include("(fic12, other.fic13)", "aiops") == [("aiops", "fic12"), ("other", "fic13")]
    o = parse_options({"format": "table", "stat": "false", "nodes": "all", "max_time": "30 seconds",
                       "timezone": "Europe/London", "test": "x"}, "lsl")
    assert (o.format, o.stat, o.nodes, o.max_time, o.timezone) == ("table", False, "all", 30.0, "Europe/London")
    for given, message in (({"format": "xml"}, "format = xml"), ({"timezone": "Mars/Base"}, "not a time zone"),
                           ({"dest": "file"}, "needs file"), ({"colour": "red"}, "not an option"),
                           ({"committed": "true"}, "not supported"), ({"extend": "(@ip, +ip)"}, "same title")):
        with pytest.raises(CommandError, match=message):
            parse_options(given, "lsl")


def test_get_datetime_resolves_like_a_where_clause(tmp_path):
    node = unit_node(tmp_path)
    node.reactor.advance(86400 * 365)  # 1971-01-01
    assert run(node, "get datetime utc now() + 3 days").text == "1971-01-04T00:00:00.000000Z"
    assert run(node, "get datetime Europe/Paris date() + 1 day").text == "1971-01-02 01:00:00"
    assert not run(node, "get datetime utc value + 1").ok


def test_query_mode_is_set_and_shown(tmp_path):
    node = unit_node(tmp_path)
    assert run(node, "set query mode using timeout = 30 seconds and max_volume = 2MB and reply_mode = any").ok
    rows = dict(run(node, "get query mode").rows)
    assert rows["timeout"] == "30 seconds" and rows["reply_mode"] == "any" and rows["max_volume"].startswith("2")
    bad = run(node, "set query mode using speed = 3")
    assert not bad.ok and "unknown key 'speed'" in bad.text


def test_query_status_without_jobs_and_a_bad_id(tmp_path):
    node = unit_node(tmp_path)
    assert run(node, "query status").rows == []
    reply = run(node, "query explain 7")
    assert not reply.ok and "no query job 7" in reply.text
