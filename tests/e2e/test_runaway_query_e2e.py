"""`exit node` while a runaway query runs over REST: a real `twistd -n anylog` process stops its
users' queries and ends within 5 s (issue 16 item 3; it used to hang until SIGKILL)."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.e2e.harness import wait_for
from tests.pg import PSQL, drop_pg_database, pg_admin

RUNAWAY = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ask_in_background(port: int, command: str) -> dict:
    """Send a GET from a thread (the node is another process); the outcome lands in the dict."""
    outcome: dict = {}

    def ask():
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"command": command, "timeout": "300"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                outcome["status"] = response.status
        except urllib.error.HTTPError as e:
            outcome["status"] = e.code
            outcome["body"] = e.read().decode("utf-8", "replace")
        except Exception as e:  # the node closed the connection as it stopped
            outcome["error"] = e

    outcome["thread"] = thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    return outcome


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("psql", marks=pytest.mark.postgres)])
def test_exit_node_stops_a_runaway_query_and_the_node_within_5_seconds(nodes, engine):
    dbname = "e2e_" + uuid.uuid4().hex[:10]
    how = "type = sqlite" if engine == "sqlite" else f"{PSQL} and database = {dbname}"
    node = nodes("runaway", f"connect dbms demo where {how}\n"
                            "run rest server where internal_ip = 127.0.0.1 and internal_port = 0\n")
    try:
        port = node.listening("REST")
        pid = node.proc.pid
        before = cpu_seconds(pid)
        outcome = ask_in_background(port, f'sql demo timeout = 300 "{RUNAWAY}"')
        if engine == "sqlite":  # the query runs in the node: its CPU time grows (idle, it uses next to none)
            wait_for(lambda: cpu_seconds(pid) - before > 1.0, 30, "the query to run in the node")
        else:
            wait_for(lambda: pg_admin(f"select count(*) from pg_stat_activity where datname = '{dbname}' and "
                                      f"state = 'active' and query like 'with recursive%'")[0][0] == 1,
                     30, "the query to run on the server")
        started = time.monotonic()
        assert "shutting down" in node.command("exit node")
        assert node.wait_exit(15) == 0
        took = time.monotonic() - started
        assert took < 5, f"the node took {took:.1f}s to stop"
        outcome["thread"].join(10)
        answered = outcome.get("status") == 408 and "stopped because the node is stopping" in outcome.get("body", "")
        assert answered or "error" in outcome, outcome  # the error reply, or the connection closed as it stopped
        assert "Traceback" not in node.log()
        if engine == "psql":
            wait_for(lambda: pg_admin(f"select count(*) from pg_stat_activity where datname = '{dbname}'")[0][0] == 0,
                     10, "the node's sessions to end")
    finally:
        node.stop()
        if engine == "psql":
            drop_pg_database(dbname)
