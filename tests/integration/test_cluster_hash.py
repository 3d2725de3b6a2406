"""A content hash is unique across the cluster (issue 16): the operator looks for it in tsd_info and
every tsd_<member> table, in the transaction that registers the file.  Real reactor, real SQLite."""

from __future__ import annotations

import json
import os

import pytest_twisted
from twisted.internet import reactor

from anylog_tw.base.filename import FileName, file_hash
from anylog_tw.ingest import tsd
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import poll


def data(first: int, n: int = 3) -> bytes:
    return b"".join(json.dumps({"seq": i}).encode() + b"\n" for i in range(first, first + n))


def put(node, name: str, content: bytes) -> None:
    watch = node.dictionary["watch_dir"]
    tmp = os.path.join(watch, "." + name + ".part")
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, os.path.join(watch, name))


def peer_name(content: bytes, member: int, file_id: int) -> str:
    """The name a member's HA push or pull gives a file it registered."""
    h = file_hash("lsl", "ping", [content])
    return FileName("lsl", "ping", "s", h, "0").registered_as(member, file_id, "260101000000").format()


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="op", reactor=reactor)
    node.startService()
    dbs = node.component(Databases)
    await dbs.connect("almgm", "sqlite")
    await dbs.connect("lsl", "sqlite")
    reply = await node.execute("run operator where rescan = 1 second")
    assert reply.ok, reply.render()
    yield node
    await node.stopService()


async def q(node, sql: str, dbms: str = "lsl"):
    _, rows = await node.component(Databases).get(dbms).query(sql)
    return rows


async def settled(node, files: int, errors: int = 0) -> None:
    op = node.process("Operator")
    err = node.dictionary["err_dir"]
    await poll(lambda: op.stats.total_files == files and len(os.listdir(err)) == errors and not op.in_hand
               and not op.queue, 20,
               what=f"{files} files done, {errors} refused (now {op.stats.total_files}, {os.listdir(err)}, "
                    f"{op.stats.error_rows()}, {os.listdir(node.dictionary['watch_dir'])})")


async def test_a_peer_copy_of_data_held_in_tsd_info_is_recorded_as_a_duplicate_not_inserted(node):
    content = data(0)
    put(node, "lsl.ping.s.0.0.json", content)  # our own copy
    await settled(node, 1)
    put(node, peer_name(content, 2, 7), content)  # member 2's copy of the same data, by HA
    await settled(node, 2)
    assert await q(node, "select count(*) from ping") == [(3,)]
    rows = await q(node, 'select file_id, status1, status2, "rows" from tsd_2', "almgm")
    assert rows == [(7, tsd.DUPLICATE_STATUS, "done", 0)]  # so the HA pull never asks for it again
    assert os.listdir(node.dictionary["err_dir"]) == []


async def test_our_own_copy_of_data_a_peer_registered_is_refused(node):
    content = data(10)
    put(node, peer_name(content, 2, 4), content)
    await settled(node, 1)
    put(node, "lsl.ping.s.0.0.json", content)  # the publisher re-routed it here as well
    await settled(node, 1, errors=1)
    [refused] = os.listdir(node.dictionary["err_dir"])
    assert ".err_duplicate." in refused
    assert await q(node, "select count(*) from ping") == [(3,)]
    assert await q(node, "select count(*) from tsd_info", "almgm") == [(0,)]


async def test_check_and_insert_are_one_transaction_and_pending_rows_count(node):
    """A row in progress elsewhere is returned as it is (the caller refuses), a failed one is not."""
    almgm = node.component(Databases).get("almgm")
    await almgm.create_tsd_table("tsd_3")
    args = ("lsl", "ping", "s", "h1", "0", "2026-01-01 00:00:00")
    row, new = await almgm.transaction(tsd.register, "tsd_info", *args, None, True)
    assert new and row.table == "tsd_info"
    other, new = await almgm.transaction(tsd.register, "tsd_3", *args, 9, True)
    assert not new and other.table == "tsd_info" and other.status == tsd.PENDING
    assert await q(node, "select count(*) from tsd_3", "almgm") == [(0,)]
    await almgm.transaction(tsd.mark_failed, "tsd_info", row.file_id, "bad row")
    again, new = await almgm.transaction(tsd.register, "tsd_3", *args, 9, True)
    assert new and again.table == "tsd_3"  # the failed copy does not hide the data
