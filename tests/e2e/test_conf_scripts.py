"""The node scripts in conf/ bring up a working, authenticated network: master, operator and publisher
processes with a network key file and a REST users file, and the loopback demo node. Each script runs
without a failing line, also when run again on the same home."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from anylog_tw.front.rest_users import add_user
from tests.e2e.harness import free_port, wait_for

CONF = Path(__file__).resolve().parents[2] / "conf"


def ports(**names) -> str:
    return "".join(f"{key} = {value}\n" for key, value in names.items())


def failed_lines(node) -> list[str]:
    return [line for line in node.log().splitlines() if "#error" in line]


def curl(*args) -> str:
    return subprocess.run(["curl", "-s", "-H", "User-Agent: AnyLog/1.23", *args], capture_output=True, text=True,
                          timeout=30).stdout


def test_master_operator_and_publisher_scripts(nodes, tmp_path):
    key_file = tmp_path / "network.key"
    key_file.write_text("a-network-key-for-the-conf-test\n")
    users = tmp_path / "rest-users.txt"
    add_user(str(users), "dev", "writer", "dev-password")
    secured = {"extra_args": ("--network-key-file", str(key_file)), "env": {"ANYLOG_REST_USERS": str(users)}}
    master_tcp, master_rest = free_port(), free_port()
    master = nodes("master", ports(tcp_port=master_tcp, rest_port=master_rest) + f"process {CONF}/master.al\n",
                   **secured)
    master_node = f"127.0.0.1:{master_tcp}"
    op = nodes("op1", ports(tcp_port=free_port(), rest_port=free_port(), master_node=master_node,
                            cluster_name="c1") + f"process {CONF}/operator.al\n", **secured)
    pub_rest = free_port()
    pub = nodes("pub", ports(tcp_port=free_port(), rest_port=pub_rest, master_node=master_node)
                + f"process {CONF}/publisher.al\n", **secured)
    for node in (master, op, pub):
        assert failed_lines(node) == [], node.name
    for line in ("Operator", "HA", "Blockchain Sync"):
        assert f"{line}" in op.command("get processes")
    wait_for(lambda: pub.command("blockchain get operator bring.count") == "1", 30, "the publisher to see op1",
             interval=0.2)

    rows = "".join(json.dumps({"ts": f"2026-11-28 05:00:{i:02d}", "value": i}) + "\n" for i in range(10))
    refused = curl("-X", "PUT", "-H", "dbms: lsl", "-H", "table: readings", "--data-binary", rows,
                   f"http://127.0.0.1:{pub_rest}/")
    assert json.loads(refused)["error"]["code"] == "unauthorized"  # REST beyond loopback asks who you are
    reply = curl("-u", "dev:dev-password", "-X", "PUT", "-H", "dbms: lsl", "-H", "table: readings", "-H", "mode: file", "--data-binary", rows,
                 f"http://127.0.0.1:{pub_rest}/")
    assert json.loads(reply)["AnyLog.status"] == "Success"

    def counted():
        text = op.command('sql lsl "select count(*) as n from readings"')
        return text.startswith("{") and json.loads(text)["Query"][0]["n"] == 10

    wait_for(counted, 30, "the rows on the operator", interval=0.2)
    # The operator published the table it created, and the cluster now hosts it.
    wait_for(lambda: "readings" in master.command("blockchain get table bring [table][name]"), 30,
             "the table policy on the master", interval=0.2)


def test_demo_script_runs_twice_on_one_home(nodes, tmp_path):
    script = (CONF / "demo.al").read_text()
    script = script.replace("32051", str(free_port())).replace("32048", str(free_port())).replace(
        "32049", str(free_port()))
    patched = tmp_path / "demo.al"
    patched.write_text("\n".join(line for line in script.splitlines() if not line.startswith("run console")))
    demo = nodes("demo", f"process {patched}\n")
    assert failed_lines(demo) == []
    assert demo.command("blockchain get * bring.count") == "2"
    demo.stop()
    demo.log_path.unlink()
    demo.start()
    assert failed_lines(demo) == []
    assert demo.command("blockchain get * bring.count") == "2"
