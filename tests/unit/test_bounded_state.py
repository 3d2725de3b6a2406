"""State a caller can grow stays bounded: logs, caches, `get rest calls`, metric label sets."""

from __future__ import annotations

import json

from anylog_tw.base import grammar
from anylog_tw.base.eventlog import MAX_TEXT, EventLog
from anylog_tw.base.metrics import MAX_TABLES, Metrics
from anylog_tw.front import rest_request
from anylog_tw.front.rest_calls import MAX_ROWS, RestCalls, caller_label, method_label
from anylog_tw.node import MAX_ERROR
from tests.helpers import run, unit_node


def test_a_long_command_is_cut_in_the_logs_and_in_its_error(tmp_path):
    """A 900 KB command (as a REST body can hold): its error quotes only its start, the logs keep 2 KB."""
    node = unit_node(tmp_path)
    text = "get version " + "A" * 900_000
    reply = run(node, text)
    assert not reply.ok and "takes no argument" in reply.text and len(reply.text) < MAX_ERROR + 100
    [entry] = node.errors.entries()
    assert all(len(field) < MAX_TEXT + 100 for field in entry[2:])
    assert "900,012 characters, cut" in entry[3]
    assert len(node.events.entries()[-1][3]) < MAX_TEXT + 100


def test_a_command_over_the_limit_is_refused_unread(tmp_path):
    """40 MB in one command: refused before tokenizing (which would hold the reactor for ~20 s)."""
    node = unit_node(tmp_path)
    reply = run(node, "get version " + "A" * 40_000_000)
    assert not reply.ok and "over the 1,048,576 character limit" in reply.text and len(reply.text) < 200
    assert len(node.errors.entries()[-1][3]) < MAX_TEXT + 100


def test_event_log_hides_a_password_before_cutting(tmp_path):
    node = unit_node(tmp_path)
    run(node, "set x = 1 " + "y" * 5000 + " password = hunter2")
    assert "hunter2" not in repr(node.events.entries())


def test_long_texts_are_not_cached():
    """The tokenizer and REST's command judge cache short lines only: 2048 cached 40 MB bodies would
    pin gigabytes."""
    grammar._cached_tokenize.cache_clear()
    grammar.tokenize("get status")
    grammar.tokenize("echo " + "z" * (grammar.CACHED_TEXT + 1))
    assert grammar._cached_tokenize.cache_info().currsize == 1
    from anylog_tw.commands import load_commands

    registry = load_commands()
    rest_request._cached_kind.cache_clear()
    assert rest_request.command_kind(registry, "echo " + "z" * 5000) == ("echo", True)
    assert rest_request._cached_kind.cache_info().currsize == 0


def test_eventlog_keeps_short_entries_as_they_are():
    log = EventLog(3)
    log.add("o", "c", "r")
    assert log.entries()[0][2:] == ("o", "c", "r")


class _Clock:
    def __init__(self):
        self.now = 0.0

    def seconds(self):
        self.now += 1
        return self.now


class _Node:
    reactor = _Clock()


def test_rest_calls_stay_bounded_with_distinct_user_agents_and_keep_the_totals():
    """3000 distinct 8 KB User-Agents (the audit's L1): at most MAX_ROWS rows, every call still counted."""
    calls = RestCalls(_Node())
    for i in range(3000):
        calls.record(f"agent{i}" + "q" * (8000 if i % 2 else 0), "GET", "127.0.0.1:5", None)
    calls.record("curl", "BREW", "127.0.0.1:6", "teapot")
    assert len(calls.rows) <= MAX_ROWS
    assert sum(r["processed"] for r in calls.rows.values()) == 3001
    assert ("curl", "other") in calls.rows and ("other", "GET") in calls.rows
    assert max(len(k[0]) for k in calls.rows) <= 32
    assert len(json.dumps({str(k): v for k, v in calls.rows.items()})) < 40_000


def test_the_callers_calling_now_keep_their_rows():
    calls = RestCalls(_Node(), max_rows=4)
    for i in range(10):
        calls.record("anylog", "GET", "p", None)  # used all along: never folded
        calls.record(f"tool{i}", "GET", "p", None)
    assert ("anylog", "GET") in calls.rows and calls.rows[("anylog", "GET")]["processed"] == 10
    assert calls.folded > 0


def test_labels_fold_what_a_client_chooses():
    assert caller_label("anylog") == "anylog" and caller_label("x" * 33) == "other"
    assert caller_label("evil\nline") == "other" and caller_label("python-requests") == "python-requests"
    assert method_label("GET") == "GET" and method_label("X" * 100) == "other"


def test_metric_table_labels_are_bounded():
    metrics = Metrics()
    for i in range(MAX_TABLES + 50):
        metrics.rows_ingested.labels(**metrics.table_labels("db", f"t{i}")).inc()
    text = metrics.render().decode()
    assert text.count("anylog_rows_ingested_total{") == MAX_TABLES + 1
    assert 'anylog_rows_ingested_total{dbms="other",table="other"} 50.0' in text
