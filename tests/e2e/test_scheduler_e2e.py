"""A real `twistd -n anylog` node running a scheduled task that writes the dictionary every second."""

from __future__ import annotations

import json

from tests.e2e.harness import wait_for

SCRIPT = """run scheduler
schedule time = 1 second and name = "beat" task beat = get scheduler 1 where format = json
"""


def _beat(node) -> dict | None:
    text = node.command("echo !beat")
    if text.startswith("Error"):
        return None
    return json.loads(text)[0]


def test_a_task_writes_the_dictionary_every_second_seen_through_the_console(nodes):
    node = nodes("sched", SCRIPT)
    first = wait_for(lambda: _beat(node), 10, "the first run of task 'beat'", interval=0.1)
    assert first["name"] == "beat" and first["failures"] == 0
    later = wait_for(lambda: (b := _beat(node)) and b["runs"] >= first["runs"] + 2 and b, 10,
                     "two more runs of task 'beat'", interval=0.1)
    assert later["last_run"] > first["last_run"]
    assert "Schedulers IDs in use: [0 (system)] [1 (user)]" in node.command("get processes")
    table = node.command("get scheduler 1")
    assert "Scheduler 1 (user): running, 1 task" in table and "beat = get scheduler 1" in table

    assert node.command("task stop where name = beat") == "Task 1 'beat' on scheduler 1 stopped"
    stopped = json.loads(node.command("get scheduler 1 where format = json"))[0]
    assert stopped["status"] == "stopped" and stopped["next_run"] == ""
    assert node.command("exit scheduler") == "Scheduler 1 stopped"
    assert "[1 (user)]" not in node.command("get processes")
    node.command("task resume where name = beat")
    node.command("run scheduler")  # stopping the node stops the running schedulers with it
    assert "shutting down" in node.command("exit node")
    assert node.wait_exit() == 0
    assert "Traceback" not in node.log()
