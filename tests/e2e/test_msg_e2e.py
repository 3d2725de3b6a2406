"""A real node process subscribed at QoS 1 is restarted, or killed, while a device publishes: every message once.

The node (`twistd -n anylog`) subscribes to a Mosquitto of our own with a persistent session
(QoS 1, clean_session false, the stable client id `<node name>.1`).  A device publishes 3,000
numbered messages over about six seconds; the node is stopped in the middle and started again
from the same script.  What it buffered is written on the way down, what the broker queued for it
while it was away arrives when it is back, and the table holds every id exactly once, read
straight from the SQLite file after the node has stopped.  Killed with SIGKILL instead, the node
writes nothing on the way down: what it acknowledged was already in fsynced files, what it did not
the broker sends again, and a resend of a message whose file was written but whose PUBACK never
left is dropped by its journal (msg/acks.py).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import wait_for
from tests.mqtt_support import Mosquitto

pytestmark = pytest.mark.skipif(subprocess.run(["which", "mosquitto"], capture_output=True).returncode != 0,
                                reason="needs mosquitto")

COUNT = 3000


def script(port: int) -> str:
    return f"""connect dbms almgm where type = sqlite
connect dbms lsl where type = sqlite
set buffer threshold where time = 1 second and volume = 64KB
run operator
run msg client where broker = 127.0.0.1 and port = {port} and qos = 1 and topic = (name = plant/line1 and dbms = lsl and table = readings and column.id.int = "bring [id]" and column.value.float = "bring [value]")
"""


def stored(home: Path) -> tuple[int, int]:
    path = home / "data" / "dbms" / "lsl.dbms"
    if not path.exists():
        return 0, 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("select count(*), count(distinct id) from readings").fetchone()
    except sqlite3.OperationalError:  # the table is not there yet
        return 0, 0



def every_message_once(node, when: str) -> None:
    """After the stream: the session was resumed, and ids 0..COUNT-1 are each in the table once."""
    wait_for(lambda: stored(node.home)[1] >= COUNT, 60, f"{COUNT} ids in the table")
    status = node.command("get msg clients")
    node.stop()
    assert "(session resumed)" in status, status
    count, distinct = stored(node.home)
    assert (count, distinct) == (COUNT, COUNT), f"{when}; rows {count}, distinct ids {distinct}"
    with sqlite3.connect(node.home / "data" / "dbms" / "lsl.dbms") as db:
        assert db.execute("select min(id), max(id) from readings").fetchone() == (0, COUNT - 1)

def test_node_restarted_during_a_qos1_stream_loses_and_doubles_nothing(nodes, tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        node = nodes("mq", script(broker.port))
        assert "Connection:      Connected" in node.command("get msg clients")
        device = subprocess.Popen([sys.executable, "-m", "tests.mqtt_publisher", str(broker.port), "plant/line1",
                                   str(COUNT), "500"], cwd=str(Path(__file__).parents[2]))
        wait_for(lambda: stored(node.home)[0] >= 500, 30, "the first rows")
        node.stop()
        at_stop = stored(node.home)[0]
        assert at_stop < COUNT, "the device finished before the node could be restarted"
        node.start()
        assert device.wait(120) == 0
        every_message_once(node, f"at stop {at_stop}")
    finally:
        broker.stop()


def test_node_killed_during_a_qos1_stream_loses_and_doubles_nothing(nodes, tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        node = nodes("mk", script(broker.port))
        assert "Connection:      Connected" in node.command("get msg clients")
        device = subprocess.Popen([sys.executable, "-m", "tests.mqtt_publisher", str(broker.port), "plant/line1",
                                   str(COUNT), "500"], cwd=str(Path(__file__).parents[2]))
        kills = []
        for at in (500, 1500):
            wait_for(lambda: stored(node.home)[0] >= at, 30, f"{at} rows")
            node.kill()  # SIGKILL: no DISCONNECT, no flush, nothing written on the way down
            kills.append(stored(node.home)[0])
            node.start()
        assert kills[-1] < COUNT, "the device finished before the node was killed"
        assert device.wait(120) == 0
        every_message_once(node, f"at the kills {kills}")
        assert not list((node.home / "data" / "watch").glob(".*.stage")), "a staged file was never published"
        assert (node.home / "data" / "prep" / "msg_acks.json").stat().st_size > 0  # the journal was kept
    finally:
        broker.stop()
