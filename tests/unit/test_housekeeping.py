"""System tasks on scheduler 0: the peer ping and the archive clean-up."""

from __future__ import annotations

import calendar
import os

import pytest
from twisted.internet import reactor

from anylog_tw.node import Node
from anylog_tw.services import housekeeping
from tests.helpers import fired, unit_node

NOW = calendar.timegm((2026, 11, 28, 12, 0, 0))


def make_days(archive, *days):
    for d in days:
        path = archive / d
        path.mkdir(parents=True)
        (path / "f.json.gz").write_bytes(b"x")


def test_old_day_folders_go_and_empty_parents_with_them(tmp_path):
    archive = tmp_path / "archive"
    make_days(archive, "26/10/01", "26/11/20", "26/11/27", "26/11/28")
    (archive / "notes").mkdir()
    removed = housekeeping.delete_archive(str(archive), 7, NOW)
    assert sorted(os.path.relpath(p, archive) for p in removed) == ["26/10/01", "26/11/20"]
    assert not (archive / "26" / "10").exists()  # its month emptied
    assert (archive / "26" / "11" / "27").is_dir() and (archive / "notes").is_dir()
    assert [os.path.relpath(p, archive) for p in housekeeping.delete_archive(str(archive), 0, NOW)] == ["26/11/27"]
    with pytest.raises(Exception, match="negative"):
        housekeeping.delete_archive(str(archive), -1, NOW)


def test_system_tasks_are_on_scheduler_0_once_the_node_runs(tmp_path):
    node = unit_node(tmp_path)
    node.startService()
    try:
        listing = fired(node.execute("get scheduler 0")).render()
        assert "peer ping" in listing and "archive clean-up" in listing
    finally:
        node.stopService()


async def test_clean_up_deletes_only_when_archive_days_is_set(tmp_path):
    node = Node(str(tmp_path / "home"), reactor=reactor)
    archive = tmp_path / "home" / "data" / "archive"
    make_days(archive, "20/01/01")
    assert await housekeeping.clean_archive(node) == 0 and (archive / "20" / "01" / "01").is_dir()
    reply = await node.execute("archive_days = 30")
    assert reply.ok
    assert await housekeeping.clean_archive(node) == 1 and not (archive / "20").exists()
    node.dictionary["archive_days"] = "many"
    with pytest.raises(Exception, match="whole number"):
        await housekeeping.clean_archive(node)
    make_days(archive, "21/01/01")
    reply = await node.execute("delete archive where days = 10")
    assert reply.ok and "Deleted 1" in reply.render()


async def test_ping_without_peers_asks_nobody(tmp_path):
    node = Node(str(tmp_path / "home"), reactor=reactor)
    assert await housekeeping.ping_peers(node) == 0
