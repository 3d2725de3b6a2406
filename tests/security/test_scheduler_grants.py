"""Scheduled tasks run with the grant of whoever scheduled them: a caller cannot schedule what it
could not run (refused at `schedule` time), and a task that holds less than its command needs is
refused when it runs, with nothing done (issue 14 item 2)."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.base.origin import Origin
from anylog_tw.node import Node
from anylog_tw.services.scheduler_service import Schedulers
from tests.helpers import ok, refused

WRITER = Origin("REST writer", "write", "rest")
PEER = Origin("peer 10.0.0.7:32048", "write", "peer")
READER = Origin("REST reader", "read", "rest")
ADMIN = Origin("console 127.0.0.1", "admin", "console")


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="sg", reactor=reactor)
    node.startService()
    await ok(node, "run scheduler 1")
    node.marker = os.path.join(node.dirs["prep_dir"], "marker.json")
    with open(node.marker, "w") as f:
        f.write("{}")
    yield node
    await node.stopService()


def tasks(node) -> list:
    sched = node.component(Schedulers).scheduler(1)
    return list(sched.tasks()) if hasattr(sched, "tasks") else list(sched._tasks.values())


@pytest.mark.parametrize("origin", [WRITER, PEER, READER])
@pytest.mark.parametrize("command", ["file delete !prep_dir/marker.json", "exit node", "set network key = x",
                                     "run manhole", "process !local_scripts/a.al", "watch_dir = /",
                                     "x = file delete !prep_dir/marker.json"])
async def test_scheduling_a_command_the_caller_could_not_run_is_refused_at_schedule_time(node, origin, command):
    text = f"schedule time = 1 hour and name = t and scheduler = 1 task {command}"
    if origin is READER:  # `schedule` itself needs write
        assert "'schedule' needs the 'write' grant" in await refused(node, text, origin)
    else:
        message = await refused(node, text, origin)
        assert "scheduling" in message and "grant" in message and f"holds '{origin.grant}'" in message, message
    assert tasks(node) == []
    assert os.path.exists(node.marker)


async def test_a_writer_may_schedule_what_it_may_run(node):
    await ok(node, "schedule time = 1 hour and name = status and scheduler = 1 task get status", WRITER)
    await ok(node, "schedule time = 1 hour and name = flush and scheduler = 1 task flush buffers", PEER)
    assert sorted(t.name for t in tasks(node)) == ["flush", "status"]


async def test_an_admin_may_schedule_an_admin_command_and_it_runs_as_admin(node):
    await ok(node, "schedule time = 1 hour and name = rm and scheduler = 1 task file delete !prep_dir/marker.json",
             ADMIN)
    await ok(node, "task run where scheduler = 1 and name = rm", ADMIN)
    assert not os.path.exists(node.marker)


async def test_a_task_that_holds_less_than_its_command_needs_is_refused_when_it_runs(node):
    """A task added behind the `schedule` check (as code may) still runs with its owner's grant."""
    sched = node.component(Schedulers).scheduler(1)
    sched.add(3600, command="file delete !prep_dir/marker.json", name="sneak", owner=WRITER)
    await node.execute("task run where scheduler = 1 and name = sneak", ADMIN)
    errors = [e for e in node.errors.entries() if "sneak" in str(e)]
    assert errors and "'file delete' needs the 'admin' grant" in str(errors[-1]), node.errors.entries()
    assert "holds 'write'" in str(errors[-1]) and "whoever scheduled it" in str(errors[-1])
    assert os.path.exists(node.marker)
