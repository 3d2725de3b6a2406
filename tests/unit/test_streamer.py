"""Streaming buffers on a Clock: volume and time thresholds, scopes, flush buffers, get streaming."""

from __future__ import annotations

import os

import orjson

from anylog_tw.base.filename import file_hash
from anylog_tw.ingest.streamer import Streamer
from tests.helpers import fired, run, unit_node


def rows(n, start=0):
    return [orjson.dumps({"seq": i, "value": i * 1.5}) for i in range(start, start + n)]


def watch_files(node):
    return sorted(os.listdir(node.dictionary["watch_dir"]))


def make(tmp_path):
    node = unit_node(tmp_path)
    os.makedirs(node.dictionary["watch_dir"])
    return node, node.component(Streamer)


def test_volume_threshold_writes_one_file_with_all_rows(tmp_path):
    """Rows reaching the volume are written at once as one file, named with the md5 of dbms.table + bytes."""
    node, streamer = make(tmp_path)
    run(node, "set buffer threshold where volume = 150 bytes")
    streamer.add("lsl", "ping", rows(3))
    assert watch_files(node) == []
    streamer.add("lsl", "ping", rows(5, 3))
    [name] = watch_files(node)
    data = open(os.path.join(node.dictionary["watch_dir"], name), "rb").read()
    assert [orjson.loads(line)["seq"] for line in data.splitlines()] == list(range(8))
    assert name == f"lsl.ping.0.{file_hash('lsl', 'ping', [data])}.0.json"
    assert streamer.buffered_rows == 0 and streamer.flushed_rows == 8


def test_time_threshold_flushes_when_the_oldest_row_is_due(tmp_path):
    """A buffer is written exactly when its first row is `time` old, and no timer is left after."""
    node, streamer = make(tmp_path)
    clock = node.reactor
    run(node, "set buffer threshold where time = 10 seconds")
    streamer.add("d", "t", rows(1))
    clock.advance(6)
    streamer.add("d", "t", rows(1, 1))
    clock.advance(3.9)
    assert watch_files(node) == []
    clock.advance(0.2)
    assert len(watch_files(node)) == 1
    assert clock.getDelayedCalls() == []


def test_table_scope_overrides_database_and_defaults(tmp_path):
    node, streamer = make(tmp_path)
    clock = node.reactor
    run(node, "set buffer threshold where dbms_name = d and time = 20 seconds")
    run(node, "set buffer threshold where dbms_name = d and table_name = fast and time = 2 seconds")
    assert streamer.thresholds("d", "fast").time == 2
    assert streamer.thresholds("d", "other").time == 20
    assert streamer.thresholds("x", "y").time == 60
    streamer.add("d", "fast", rows(1))
    streamer.add("d", "slow", rows(1))
    clock.advance(2)
    assert len(watch_files(node)) == 1 and streamer.cached("d", "slow")[0] == 1
    reply = run(node, "set buffer threshold where dbms_name = d and table_name = fast and time = 0 and volume = 0")
    assert reply.ok and streamer.thresholds("d", "fast").time == 20
    clock.advance(18)
    assert len(watch_files(node)) == 2


def test_flush_buffers_writes_everything_now(tmp_path):
    node, streamer = make(tmp_path)
    streamer.add("d", "a", rows(2))
    streamer.add("d", "b", rows(2))
    streamer.add("d", "b", rows(1, 5), source="dev7")
    reply = run(node, "flush buffers")
    assert reply.render() == "Flushed 3 buffers"
    assert len(watch_files(node)) == 3
    assert any(".dev7." in n for n in watch_files(node))
    assert node.reactor.getDelayedCalls() == []


def test_duplicate_flush_keeps_rows_in_the_error_dir(tmp_path):
    """The same rows flushed twice make the same file name: the second copy goes to the error dir."""
    node, streamer = make(tmp_path)
    streamer.add("d", "t", rows(2))
    run(node, "flush buffers")
    streamer.add("d", "t", rows(2))
    run(node, "flush buffers")
    assert len(watch_files(node)) == 1
    [kept] = os.listdir(node.dictionary["err_dir"])
    assert ".err_duplicate." in kept
    assert streamer.table_stats("d", "t").errors == 1
    assert "already in the watch dir" in run(node, "get error log").render()


def test_get_streaming_shows_tables_and_json(tmp_path):
    node, streamer = make(tmp_path)
    streamer.add("d", "t", rows(3))
    streamer.count_put("d", "t", 7)
    text = run(node, "get streaming").render()
    assert "d.t" in text and "default thresholds 60 seconds and 10,000 bytes" in text
    data = orjson.loads(run(node, "get streaming where format = json").render())
    assert data["summary"]["Buffered rows"] == 3
    assert data["tables"]["d.t"]["Put rows"] == 7 and data["tables"]["d.t"]["Cached rows"] == 3
    assert "Time (sec)" in run(node, "get streaming config").render()
    assert not run(node, "get streaming nonsense").ok


def test_bad_threshold_commands_are_refused(tmp_path):
    node, _ = make(tmp_path)
    assert "needs time, volume" in run(node, "set buffer threshold").render() or \
        not run(node, "set buffer threshold where dbms_name = d").ok
    assert not run(node, "set buffer threshold where table_name = t and time = 3").ok
    assert not run(node, "set buffer threshold where volume = lots").ok


def test_close_writes_what_is_left(tmp_path):
    node, streamer = make(tmp_path)
    streamer.add("d", "t", rows(4))
    fired(streamer.close())
    assert len(watch_files(node)) == 1
    assert node.reactor.getDelayedCalls() == []


def test_run_streamer_shows_in_processes(tmp_path):
    node, _ = make(tmp_path)
    assert run(node, "run streamer").ok
    assert not run(node, "run streamer").ok
    assert "Default streaming thresholds are 60 seconds" in run(node, "get processes").render()
    assert run(node, "exit streamer").ok


def _failing(monkeypatch, errors):
    """write_file fails with each error of `errors` in turn, then works."""
    from anylog_tw.ingest import streamer as module

    real = module.write_file

    def write_file(*args):
        if errors:
            raise errors.pop(0)
        return real(*args)

    monkeypatch.setattr(module, "write_file", write_file)


def test_a_buffer_that_cannot_be_written_is_kept_and_written_later(tmp_path, monkeypatch):
    """No space left: the rows stay buffered (older first), the write is tried again after the wait."""
    from anylog_tw.ingest.dropfile import WriteError

    node, streamer = make(tmp_path)
    _failing(monkeypatch, [WriteError("cannot write: No space left on device", full=True)] * 2)
    run(node, "set buffer threshold where volume = 100 bytes")
    streamer.add("lsl", "ping", rows(5))
    assert watch_files(node) == [] and streamer.buffered_rows == 5 and streamer.retry_at == 1.0
    streamer.add("lsl", "ping", rows(2, 5))  # over the volume, but writes wait for the retry
    assert watch_files(node) == [] and streamer.buffered_rows == 7
    node.reactor.advance(1.0)  # the retry fails again: the next wait is 2 s
    assert watch_files(node) == [] and streamer.buffered_rows == 7 and streamer.retry_at == 3.0
    node.reactor.advance(2.0)
    [name] = watch_files(node)
    data = open(os.path.join(node.dictionary["watch_dir"], name), "rb").read()
    assert [orjson.loads(line)["seq"] for line in data.splitlines()] == list(range(7))
    assert streamer.buffered_rows == 0 and streamer.retry_at is None
    assert any("kept and tried again" in str(e) for e in node.errors.entries())


def test_while_writes_fail_too_many_kept_bytes_refuse_new_rows(tmp_path, monkeypatch):
    from anylog_tw.ingest import streamer as module
    from anylog_tw.ingest.dropfile import WriteError

    node, streamer = make(tmp_path)
    monkeypatch.setattr(module, "MAX_KEPT", 100)
    _failing(monkeypatch, [WriteError("No space left on device", full=True)] * 100)
    run(node, "set buffer threshold where volume = 100 bytes")
    streamer.add("lsl", "ping", rows(20))
    try:
        streamer.add("lsl", "ping", rows(1, 20))
    except WriteError as e:
        assert e.full and "try again later" in e.message
    else:
        raise AssertionError("the 21st row was taken although nothing can be written")
    assert streamer.buffered_rows == 20


def test_the_node_stopping_puts_unwritable_rows_in_the_error_dir(tmp_path, monkeypatch):
    from anylog_tw.ingest.dropfile import WriteError

    node, streamer = make(tmp_path)
    _failing(monkeypatch, [WriteError("No space left on device", full=True)] * 2)
    streamer.add("lsl", "ping", rows(3))
    fired(streamer.close())
    [kept] = os.listdir(node.dictionary["err_dir"])
    data = open(os.path.join(node.dictionary["err_dir"], kept), "rb").read()
    assert [orjson.loads(line)["seq"] for line in data.splitlines()] == [0, 1, 2]
    assert streamer.buffers == {}


class Sink:
    """A caller waiting for its rows to be durable (as msg/acks.py does)."""

    def __init__(self, watch):
        self.watch = watch
        self.events = []

    def staged(self, stage, final, waiters):
        # the stage is complete and hidden, the final name not there yet
        assert open(stage, "rb").read().count(b"\n") == 3 and not os.path.exists(final)
        self.events.append(("staged", os.path.basename(final), [w.n for w in waiters]))

    def durable(self, waiters):
        self.events.append(("durable", [w.n for w in waiters]))


class Waiter:
    def __init__(self, sink, n):
        self.sink, self.n = sink, n


def test_waiters_hear_of_the_stage_then_of_durable_rows_and_a_buffer_without_none(tmp_path):
    node, streamer = make(tmp_path)
    sink = Sink(node.dictionary["watch_dir"])
    streamer.add("d", "t", rows(2), waiter=Waiter(sink, 1))
    streamer.add("d", "t", rows(1, 2), waiter=Waiter(sink, 2))
    assert sink.events == []  # buffered: nobody is told anything before the file is written
    assert [fired(d) for d in streamer.flush_waiting()] == [1]
    [name] = watch_files(node)  # the stage was renamed: no hidden file is left
    assert sink.events == [("staged", name, [1, 2]), ("durable", [1, 2])]
    streamer.add("d", "u", rows(1))
    assert streamer.flush_waiting() == []  # rows nobody waits for keep their thresholds
    assert streamer.buffered_rows == 1


def test_a_failed_stage_record_leaves_no_stage_and_keeps_the_rows(tmp_path):
    node, streamer = make(tmp_path)

    class Failing(Sink):
        def staged(self, stage, final, waiters):
            from anylog_tw.ingest.dropfile import WriteError

            raise WriteError("cannot journal: No space left on device", True)

    sink = Failing(node.dictionary["watch_dir"])
    streamer.add("d", "t", rows(3), waiter=Waiter(sink, 1))
    [fired(d) for d in streamer.flush_waiting()]
    assert os.listdir(node.dictionary["watch_dir"]) == [] and sink.events == []
    assert streamer.buffered_rows == 3 and streamer.buffers[("d", "t", "0", "0")].waiters[0].n == 1
