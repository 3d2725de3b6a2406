"""What the page shows of a reply: tables as tables, JSON as data, and time series found in rows."""

from __future__ import annotations

from anylog_tw.base.reply import Reply
from anylog_tw.front.web.replies import query_payload, reply_payload, time_series
from anylog_tw.front.web.session import Sessions, cookie_header


def test_a_table_reply_keeps_its_columns_and_rows():
    payload = reply_payload(Reply.of_table(("Process", "Status"), [("TCP", "Running")], data={"TCP": {}}))
    assert payload == {"ok": True, "kind": "table", "title": "", "columns": ["Process", "Status"],
                       "rows": [["TCP", "Running"]], "truncated": False}


def test_json_text_and_errors_are_told_apart():
    assert reply_payload(Reply.of_json({"a": [1]})) == {"ok": True, "kind": "json", "data": {"a": [1]}}
    asked = Reply.of_table(("Process", "Status"), [("TCP", "Running")], data={"TCP": {"Status": "Running"}})
    asked.fmt = "json"  # `where format = json`
    assert reply_payload(asked) == {"ok": True, "kind": "json", "data": {"TCP": {"Status": "Running"}}}
    assert reply_payload(Reply.of_text("hi")) == {"ok": True, "kind": "text", "text": "hi"}
    assert reply_payload(Reply.of_error("no such dbms", "not_found", 404)) == {
        "ok": False, "error": {"code": "not_found", "message": "no such dbms"}, "status": 404}


def test_rows_with_a_time_column_and_numbers_are_a_series_sorted_by_time():
    chart = time_series(["device", "timestamp", "value", "count"],
                        [["a", "2024-01-01 10:00:10", 2.5, 1], ["b", "2024-01-01 10:00:00", 1.5, None]])
    assert chart == {"x_column": "timestamp", "columns": ["value", "count"], "x": [1704103200.0, 1704103210.0],
                     "y": [[1.5, 2.5], [None, 1]]}


def test_no_series_without_a_time_column_numbers_or_a_second_row():
    assert time_series(["a", "b"], [["x", 1], ["y", 2]]) is None
    assert time_series(["t", "d"], [["2024-01-01 10:00:00", "x"], ["2024-01-01 10:00:01", "y"]]) is None
    assert time_series(["t", "v"], [["2024-01-01 10:00:00", 1]]) is None
    assert time_series(["t", "v"], [["2024-01-01 10:00:00", True], ["2024-01-01 10:00:01", False]]) is None


def test_an_sql_reply_becomes_columns_rows_statistics_and_a_chart():
    data = {"Query": [{"timestamp": "2024-01-01 10:00:00", "value": 1}, {"timestamp": "2024-01-01 10:01:00",
                                                                           "value": 3}],
            "Statistics": [{"Count": 2, "Time": "00:00:00", "Nodes": 0}]}
    payload = query_payload(data)
    assert payload["columns"] == ["timestamp", "value"] and payload["rows"][1] == ["2024-01-01 10:01:00", 3]
    assert payload["statistics"]["Count"] == 2 and payload["chart"]["y"] == [[1, 3]]
    assert query_payload({"Statistics": [{"Count": 0}]})["rows"] == []


def test_sessions_expire_when_idle_are_bounded_and_check_their_token():
    now = [0.0]
    sessions = Sessions(lambda: now[0], idle=100, limit=2)
    a = sessions.new("alice")
    assert sessions.get(a.sid) is a and a.token_ok(a.csrf) and not a.token_ok("x" * 43) and not a.token_ok(None)
    now[0] = 50
    assert sessions.get(a.sid.encode()) is a  # use keeps it alive
    now[0] = 149
    assert sessions.get(a.sid) is a
    now[0] = 250
    assert sessions.get(a.sid) is None
    b, c, d = sessions.new(), sessions.new(), sessions.new()
    assert sessions.get(b.sid) is None and sessions.get(c.sid) is c and len(sessions) == 2
    sessions.drop(d.sid)
    assert sessions.get(d.sid) is None


def test_the_cookie_is_http_only_same_site_strict_and_cleared_on_logout():
    session = Sessions(lambda: 0.0).new()
    header = cookie_header(session, secure=True)
    assert header.startswith(b"anylog_session=" + session.sid.encode())
    assert b"HttpOnly" in header and b"SameSite=Strict" in header and b"Secure" in header
    assert b"Max-Age=0" in cookie_header(None, secure=False)
