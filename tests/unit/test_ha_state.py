"""The pure parts of HA: id ranges, gap finding, the push high-water mark, lag, archive paths."""

from __future__ import annotations

import datetime
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.services import ha_state as S
from tests.helpers import run, unit_node

ids = st.sets(st.integers(min_value=1, max_value=5000), max_size=300)


def row(i: int, done: bool = True, t: float = 1000.0) -> S.FileRow:
    return S.FileRow(i, "lsl", "ping", "src", f"h{i}", "0", t, "done" if done else "pending")


@given(ids)
def test_ranges_round_trip(values):
    text = S.format_ranges(values)
    assert S.parse_ranges(text) == sorted(values)
    assert len(text) <= len(",".join(map(str, sorted(values))))


def test_ranges_are_compact_and_bad_ones_are_named():
    assert S.format_ranges([7, 1, 2, 3, 9, 10, 3]) == "1-3,7,9-10"
    assert S.parse_ranges(" 1-3, 7 ") == [1, 2, 3, 7]
    assert S.parse_ranges("") == []
    for bad, why in (("3-1", "ends before"), ("a", "not an id"), ("1-", "not an id"), ("1-99999999", "more than")):
        with pytest.raises(ValueError, match=why):
            S.parse_ranges(bad)


@given(ids, ids)
def test_missing_ids_are_exactly_the_peers_ids_we_lack(peer, local):
    missing = S.missing_ids(peer, local)
    assert missing == sorted(peer - local)


@given(st.lists(st.tuples(st.integers(1, 60), st.booleans(), st.booleans()), max_size=40, unique_by=lambda t: t[0]),
       st.integers(0, 30))
@settings(max_examples=300)
def test_the_mark_never_passes_a_file_the_member_still_needs(spec, hwm):
    """Every done row at or below the new mark was acked; the mark only moves forward."""
    rows = sorted((row(i, done) for i, done, _ in spec), key=lambda r: r.file_id)
    acked = {i for i, done, ack in spec if ack and done and i > hwm}
    new = S.advance(hwm, rows, acked, now=1001.0, stale=600.0)
    assert new >= hwm
    for r in rows:
        if hwm < r.file_id <= new:
            assert r.file_id in acked  # nothing owed was passed (pending rows are not stale here)
    owed = S.owed(new, rows, acked, set())
    assert all(r.done and r.file_id > new and r.file_id not in acked for r in owed)
    # and it moved as far as it could: the next row above it (if any) is owed or still pending
    above = sorted(r.file_id for r in rows if r.file_id > new)
    if above:
        assert above[0] not in acked


def test_a_stale_pending_row_is_passed_and_a_recent_one_holds_the_mark():
    rows = [row(1), row(2, done=False, t=0.0), row(3)]
    assert S.advance(0, rows, {1, 3}, now=1000.0, stale=600.0) == 3
    rows = [row(1), row(2, done=False, t=900.0), row(3)]
    assert S.advance(0, rows, {1, 3}, now=1000.0, stale=600.0) == 1
    assert [r.file_id for r in S.owed(1, rows, {3}, set())] == []
    assert [r.file_id for r in S.owed(0, rows, set(), {1})] == [3]
    assert [r.file_id for r in S.owed(0, [row(i) for i in range(1, 20)], {2}, {3}, limit=3)] == [1, 4, 5]


def test_lag_is_the_age_of_the_oldest_file_owed():
    assert S.lag_seconds([], 50.0) == 0.0
    assert S.lag_seconds([row(1, t=10.0), row(2, t=30.0)], 50.0) == 40.0


def test_file_time_from_either_engine():
    assert S.epoch("2026-11-28 04:45:17.250000") == pytest.approx(
        datetime.datetime(2026, 11, 28, 4, 45, 17, 250000, tzinfo=datetime.timezone.utc).timestamp())
    assert S.epoch(datetime.datetime(2026, 1, 2, 3, 4, 5)) == \
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc).timestamp()
    assert S.epoch("not a time") == 0.0
    assert S.epoch(S.stamp(1234567.5)) == 1234567.5


def test_the_archived_file_is_found_where_the_operator_put_it(tmp_path):
    t = datetime.datetime(2026, 11, 28, 4, 45, 17, tzinfo=datetime.timezone.utc).timestamp()
    r = S.FileRow(7, "lsl", "ping", "dev", "abc", "0", t + 0.9, "done")
    assert r.stem("3") == "lsl.ping.dev.abc.0.3.7.261128044517"
    first = S.archive_candidates(str(tmp_path), r, "3")[0]
    assert first == os.path.join(str(tmp_path), "26", "11", "28", "lsl.ping.dev.abc.0.3.7.261128044517.json.gz")
    assert S.find_archived(str(tmp_path), r, "3") is None
    # re-registered after a crash: another date in the name and the directory
    other = tmp_path / "26" / "11" / "29"
    other.mkdir(parents=True)
    (other / "lsl.ping.dev.abc.0.3.7.261129000001.json").write_text("{}\n")
    assert S.find_archived(str(tmp_path), r, "3", search=False) is None
    assert S.find_archived(str(tmp_path), r, "3").endswith("261129000001.json")
    os.makedirs(os.path.dirname(first))
    open(first, "wb").close()
    assert S.find_archived(str(tmp_path), r, "3") == first


def test_batches():
    assert S.batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert S.batches([], 3) == []


def test_commands_explain_what_is_missing(tmp_path):
    node = unit_node(tmp_path)
    reply = run(node, "run ha")
    assert not reply.ok and "start it first" in reply.text
    assert "Not running" in run(node, "get ha").render()
    assert not run(node, "set consumer mode = suspend").ok
    assert "usage" in run(node, "set consumer mode = sometimes").text
    reply = run(node, "get tsd summary where table = nope")
    assert not reply.ok and "almgm" in reply.text
    reply = run(node, "ha deliver where ids = 1-3 and to = 127.0.0.1:1")
    assert not reply.ok and "no operator" in reply.text


def test_the_mark_stays_below_rows_not_read_from_the_table():
    """A row the operator reported (id 5) is sent at once, but ids 3-4 may exist unread: the mark
    stops at the last id read from tsd_info."""
    rows = [row(1), row(2), row(5)]
    assert S.advance(0, rows, {1, 2, 5}, now=1000.0, stale=600.0, upto=2) == 2
    assert S.advance(0, rows, {1, 2, 5}, now=1000.0, stale=600.0, upto=5) == 5


def test_the_row_of_a_job_names_the_archived_file():
    from anylog_tw.base.filename import parse_file_name
    from anylog_tw.ingest.operator import Job

    name = "lsl.ping.dev.abc.0.3.7.261128044517.json"
    job = Job(name, fname=parse_file_name(name), dbms="lsl", table="ping", tsd_id=7, date="261128044517",
              hash="abc")
    r = S.row_of_job(job, 5)
    assert r.done and r.rows == 5 and r.stem("3") + ".json" == name
