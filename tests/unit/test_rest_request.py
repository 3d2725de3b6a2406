"""The REST header contract as pure functions: where the command comes from, verbs, read-only, destinations."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.base.errors import GrammarError
from anylog_tw.base.grammar import tokenize
from anylog_tw.commands import load_commands
from anylog_tw.front.rest_request import (
    ReadOnlyError,
    RequestError,
    agent_product,
    check_method,
    check_read_only,
    client_command,
    command_kind,
    is_query_sql,
    read_request,
    url_fields,
)

REGISTRY = load_commands()
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(lambda t: t.strip())


@given(texts)
def test_a_command_in_the_url_comes_back_as_sent(command):
    """Either URL encoding, and AnyLog's '?'-separated form, carry any command text unchanged."""
    for query in (f"command={quote_plus(command)}", f"User-Agent=AnyLog/1.23?command={quote(command, safe='')}",
                  f"destination=local&command={quote(command, safe='')}"):
        assert read_request("GET", {}, query, b"").local_command == command.strip()


@given(texts, texts)
def test_headers_win_over_the_url(header, in_url):
    asked = read_request("GET", {"command": header}, f"command={quote_plus(in_url)}", b"")
    assert asked.local_command == header.strip()


def test_url_fields_take_both_separators_and_lower_case_keys():
    assert url_fields("User-Agent=AnyLog/1.23?command=get%20status&Into=json&flag") == {
        "user-agent": "AnyLog/1.23", "command": "get status", "into": "json"}


def test_agent_product():
    assert agent_product({"user-agent": "AnyLog/1.23"}) == "anylog"
    assert agent_product({"user-agent": "curl/8.1", "anylog-agent": "AnyLog/2"}) == "anylog"
    assert agent_product({}) == "unknown"


def test_get_without_command_is_a_ping_and_post_without_is_an_error():
    assert read_request("GET", {}, "", b"").command == "get status"
    with pytest.raises(RequestError, match="no command"):
        read_request("POST", {}, "", b"")


def test_json_body_forms():
    assert read_request("POST", {}, "", b'{"command": "get status", "destination": "local"}').command == "get status"
    asked = read_request("POST", {}, "", b'{"dbms": "lsl", "sql": "select count(*) from t"}')
    assert asked.command == 'sql lsl format = json "select count(*) from t"'
    asked = read_request("POST", {}, "", b'{"command": "get status", "destination": "1.2.3.4:5", "subset": true}')
    assert asked.command == "run client (1.2.3.4:5 and subset = true) get status"


def test_text_body_commands_run_before_the_header_command():
    asked = read_request("POST", {"command": "echo !x"}, "", b"<x = 1>\n# note\ny = 2\n")
    assert asked.body_commands == ["x = 1", "y = 2"] and asked.all_commands[-1] == "echo !x"
    asked = read_request("POST", {"command": "body"}, "", b"echo a\necho b")
    assert asked.body_commands == ["echo a"] and asked.local_command == "echo b"
    with pytest.raises(RequestError, match="never closed"):
        read_request("POST", {"command": "get status"}, "", b"<x = 1\n")
    with pytest.raises(RequestError, match="UTF-8"):
        read_request("POST", {"command": "get status"}, "", b"\xff\xfe")


@pytest.mark.parametrize("timeout, subset", [("-1", None), ("soon", None), (None, "maybe")])
def test_bad_timeout_and_subset_headers(timeout, subset):
    headers = {"command": "get status"}
    if timeout:
        headers["timeout"] = timeout
    if subset:
        headers["subset"] = subset
    with pytest.raises(RequestError):
        read_request("GET", headers, "", b"")


def test_client_command():
    assert client_command("get status", None) == "get status"
    assert client_command("get status", "network") == "run client () get status"
    assert client_command("get status", "(1.1.1.1:2)", True, 5) == "run client (1.1.1.1:2 and subset = true and " \
                                                                     "timeout = 5) get status"
    assert client_command("x", "network", True) == "run client (subset = true) x"


@pytest.mark.parametrize("text, readonly", [
    ("get status", True), ("help", True), ("reset error log", False), ("x = 5", False),
    ('sql lsl "select * from t"', True), ("sql lsl format = json select * from t", True),
    ('sql lsl "insert into t values (1)"', False), ('sql lsl "select 1; drop table t"', False),
    ("frobnicate", True), ("<get status>", True), ("", True),
])
def test_command_kind(text, readonly):
    assert command_kind(REGISTRY, text)[1] is readonly


def test_check_method_and_read_only():
    check_method(REGISTRY, "GET", "get status")
    check_method(REGISTRY, "POST", "exit node")
    check_method(REGISTRY, "GET", 'sql d "insert into t values (1)"')  # sql takes both verbs
    with pytest.raises(RequestError, match="POST"):
        check_method(REGISTRY, "GET", "exit node")
    with pytest.raises(GrammarError):
        check_method(REGISTRY, "GET", 'get "unterminated')
    check_read_only(REGISTRY, 'sql d "select 1"')
    with pytest.raises(ReadOnlyError, match="sql that writes"):
        check_read_only(REGISTRY, 'sql d "delete from t"')
    with pytest.raises(ReadOnlyError, match="exit node"):
        check_read_only(REGISTRY, "exit node")


def test_is_query_sql_reads_the_quoted_statement():
    assert is_query_sql(tokenize('sql d format = table "with a as (select 1) select * from a"'))
    assert not is_query_sql(tokenize('sql d "update t set a = 1"'))
