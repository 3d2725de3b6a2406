"""The pure parts of users' sql: what each grant may do on SQLite, the PostgreSQL token check,
the deadline, and the reply's shape (no database here; the engines are tested in integration)."""

from __future__ import annotations

import json
import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.commands._sql_reply import shaper
from anylog_tw.storage.confine import Authorizer, needed_grant, pg_owner_only, pg_powers
from anylog_tw.storage.deadline import Deadline, Running

WRITES = [sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_CREATE_TABLE,
          sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_ALTER_TABLE, sqlite3.SQLITE_CREATE_INDEX,
          sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_ANALYZE,
          sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VIEW]


def test_each_grant_allows_what_it_should_on_sqlite():
    cases = [((sqlite3.SQLITE_SELECT, None, None), "read"), ((sqlite3.SQLITE_READ, "t", "x"), "read"),
             ((sqlite3.SQLITE_FUNCTION, None, "count"), "read"), ((sqlite3.SQLITE_PRAGMA, "table_info", "t"), "read"),
             ((sqlite3.SQLITE_PRAGMA, "user_version", None), "read"),
             ((sqlite3.SQLITE_PRAGMA, "user_version", "7"), "owner"),
             ((sqlite3.SQLITE_PRAGMA, "query_only", "0"), "owner"),
             ((sqlite3.SQLITE_PRAGMA, "journal_mode", "delete"), "owner"),
             ((sqlite3.SQLITE_FUNCTION, None, "load_extension"), "owner"),
             ((sqlite3.SQLITE_ATTACH, "/tmp/x.db", None), "owner"), ((sqlite3.SQLITE_DETACH, "x", None), "owner"),
             ((sqlite3.SQLITE_TRANSACTION, "BEGIN", None), "owner")]
    cases += [((action, "t", None), "write") for action in WRITES]
    for action, needed in cases:
        assert needed_grant(*action) == needed, action


@given(st.sampled_from(WRITES + [sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH]), st.text(max_size=20))
def test_the_read_authorizer_denies_every_write_and_records_it(action, name):
    auth = Authorizer("read")
    assert auth(action, name, None, "main", None) == sqlite3.SQLITE_DENY
    assert auth.denied == [(action, name, None)] and auth.needs() in ("write", "owner")


def test_the_owner_authorizer_allows_all_and_a_lone_transaction_is_its_own_refusal():
    owner = Authorizer("owner")
    assert all(owner(a, "x", None, "main", None) == sqlite3.SQLITE_OK for a in WRITES + [sqlite3.SQLITE_ATTACH])
    reader = Authorizer("read")
    reader(sqlite3.SQLITE_TRANSACTION, "BEGIN", None, None, None)
    assert reader.needs() == "transaction"
    assert "transaction statements are not allowed" in str(reader.refusal("d", "read"))
    writer = Authorizer("write")
    writer(sqlite3.SQLITE_ATTACH, "/tmp/v.db", None, None, None)  # VACUUM INTO: attach, then a transaction
    writer(sqlite3.SQLITE_TRANSACTION, "BEGIN", None, None, None)
    assert writer.needs() == "owner"
    msg = str(writer.refusal("d", "write"))
    assert "ATTACH of '/tmp/v.db'" in msg and "only the node's owner" in msg and "holds 'write'" in msg


def test_postgres_token_check_names_file_and_program_access_but_not_strings_or_comments():
    assert pg_owner_only("COPY (select 1) TO PROGRAM 'id'") == "COPY"
    assert pg_owner_only("select pg_read_file('/etc/passwd')") == "the function pg_read_file()"
    assert pg_owner_only('select "lo_import"(\'/etc/hostname\')') == "the function lo_import()"
    assert pg_owner_only("select pg_catalog.pg_ls_dir('/')") == "the function pg_ls_dir()"
    assert pg_owner_only("set role postgres") == "SET ROLE"
    assert pg_owner_only("select 'pg_read_file', $$lo_import$$ -- copy\n from t") is None
    assert pg_owner_only("select count(*) from readings where v > 1") is None


def test_postgres_powers_come_from_the_role_row():
    assert pg_powers((False, False, False, False)) == []
    assert pg_powers((True, True, True, True))[0] == "superuser"
    assert pg_powers((False, False, False, True)) == ["pg_execute_server_program"]


def test_deadline_expires_on_its_clock_and_cancel_calls_the_stoppers_once():
    now = [100.0]
    deadline = Deadline(5, "demo", clock=lambda: now[0])
    assert not deadline.stopped() and deadline.progress() == 0 and deadline.remaining() == 5
    now[0] = 105.0
    assert deadline.stopped() and deadline.progress() == 1
    assert "deadline of 5 s" in str(deadline.error()) and "set query timeout" in str(deadline.error())
    stops = []
    other = Deadline(None, "demo")
    forget = other.on_cancel(lambda: stops.append(1))
    running = Running()
    running.add(other)
    running.cancel_all("the node is stopping")
    running.cancel_all("again")
    forget()
    assert stops == [1] and other.stopped() and "because the node is stopping" in str(other.error())
    late = []
    other.on_cancel(lambda: late.append(1))  # cancelled already: stopped at once
    assert late == [1]


def test_the_reply_is_rendered_where_it_is_shaped_and_says_when_rows_were_cut():
    reply = shaper("json", "demo", 2, started=0.0, clock=lambda: 3.0)(["x"], [(1,), (2,)], -1, True)
    data = json.loads(reply.json_text)
    assert reply.render() == reply.json_text and data == reply.data
    assert data["Query"] == [{"x": 1}, {"x": 2}]
    assert data["Statistics"][0]["Limit"] == 2 and "limit = <rows>" in data["Statistics"][0]["Note"]
    assert data["Statistics"][0]["Time"] == "00:00:03"
    done = shaper("table", "demo", 10, 0.0)(None, [], 4, False)
    assert done.render() == "4 rows affected"
