"""Dispatch, assignment, core commands and errors on a node without sockets or real time."""

from __future__ import annotations

import json
import os

import pytest

from anylog_tw.base.process import NodeProcess
from tests.helpers import run, unit_node


@pytest.fixture
def node(tmp_path):
    return unit_node(tmp_path, environ={"HOME": "/home/u", "ZONE": "east"})


def test_get_status_text_and_json(node):
    assert run(node, "get status").render() == "anylog-node@127.0.0.1 running"
    data = json.loads(run(node, "get status where format = json").render())
    assert data["assigned_name"] == "anylog-node@127.0.0.1" and data["status"] == "running"


def test_get_processes_lists_every_row(node):
    reply = run(node, "get processes")
    names = [row[0] for row in reply.rows]
    assert names == ["TCP", "REST", "Operator", "Publisher", "Blockchain Sync", "Scheduler", "HA", "Console"]
    assert all(row[1] == "Not declared" for row in reply.rows)
    data = json.loads(run(node, "get processes where format = json").render())
    assert data["Operator"] == {"Status": "Not declared"}


class Dummy(NodeProcess):
    name = "Operator"
    exit_command = "exit operator"

    def details(self):
        return "Cluster Member: False"


def test_running_process_shows_details_and_cannot_start_twice(node):
    node.add_process(Dummy())
    assert ["Operator", "Running", "Cluster Member: False"] in run(node, "get processes").rows
    with pytest.raises(Exception, match="already running.*exit operator"):
        node.add_process(Dummy())


def test_assignment_reference_and_delete(node):
    assert run(node, "zone = $ZONE").ok
    assert run(node, "set site = north !zone").ok
    assert node.dictionary["site"] == "north east"
    assert run(node, 'site = ""').ok
    assert "site" not in node.dictionary


def test_assignment_of_a_command_stores_its_output(node):
    run(node, "set node name = op7")
    assert run(node, "me = get node name").ok
    assert node.dictionary["me"] == "op7"
    reply = run(node, "bad = get status where format = xml")
    assert not reply.ok and "bad" not in node.dictionary
    assert run(node, "words = get nothing").ok  # not a command: stored as text, as AnyLog does
    assert node.dictionary["words"] == "get nothing"


def test_multi_line_json_assignment_resolves_references(node):
    run(node, "port = 32148")
    run(node, '<policy = {"operator": {"name": !node_name,\n "port": !port.int}}>')
    assert json.loads(node.dictionary["policy"]) == {"operator": {"name": "anylog-node", "port": 32148}}


def test_dictionary_listing_and_substring(node):
    keys = [row[0] for row in run(node, "get dictionary _dir").rows]
    assert "watch_dir" in keys and "node_name" not in keys
    assert json.loads(run(node, "get dictionary prep where format = json").render()) == {
        "prep_dir": os.path.join(node.home, "data/prep")}


def test_echo_resolves_references(node):
    assert run(node, 'echo node !node_name "in $HOME" $HOME').render() == "node anylog-node in $HOME /home/u"


@pytest.mark.parametrize("text,fragment", [
    ("frobnicate the widgets", "unknown command 'frobnicate the widgets'"),
    ("get statuss", "did you mean: get status"),
    ("get status where colour = red", "no option 'colour' (valid options: format)"),
    ("get status where format = xml", "must be one of: json, table"),
    ("get status extra", "takes no argument 'extra'"),
    ('echo "open', "unterminated quoted string"),
    ("echo !nothing", "'!nothing' is not in the dictionary"),
    ("x =", "needs a value"),
])
def test_bad_input_gives_a_clear_error(node, text, fragment):
    reply = run(node, text)
    assert not reply.ok
    assert reply.render().startswith("Error: ")
    assert fragment in reply.text
    assert node.errors.entries()[-1][3] == text


@pytest.mark.allow_logged_errors
def test_a_bug_in_a_handler_is_an_error_reply_with_the_traceback_logged(node):
    from twisted.logger import globalLogPublisher

    from anylog_tw.base.registry import Registry

    reg = Registry()
    reg.command("boom", grant="read", usage="boom", text="t", examples=("boom",), keywords=("k",))(lambda call: 1 / 0)
    node.registry = reg
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        reply = run(node, "boom")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert not reply.ok and "ZeroDivisionError" in reply.text and "Traceback" not in reply.text
    assert any(e.get("log_failure") is not None for e in seen)


def test_event_log_is_bounded_and_newest_last(node):
    for i in range(1100):
        run(node, f"v = {i}")
    entries = node.events.entries()
    assert len(entries) == 1000 and entries[-1][3] == "v = 1099"
    rows = run(node, "get event log where limit = 2").rows
    assert [r[3] for r in rows] == ["v = 1098", "v = 1099"]


def test_script_runs_in_order_and_goes_on_after_a_bad_line(node, tmp_path):
    script = tmp_path / "s.al"
    script.write_text("a = 1\n# comment\nno such command\n<b = {\n\"x\": !a.int}>\nc = !a\n")
    reply = run(node, f"process {script}")
    assert "4 commands, 1 failed" in reply.render()
    assert node.dictionary["b"] == '{\n"x": 1}' and node.dictionary["c"] == "1"
    assert "script" in node.errors.entries()[-1][2] and ":3" in node.errors.entries()[-1][2]


def test_process_missing_script_is_an_error(node):
    reply = run(node, "process /no/such/file.al")
    assert not reply.ok and "not found" in reply.text


def test_version_and_work_directories(node):
    assert "anylog-tw Version" in run(node, "get version").render()
    assert run(node, "create work directories").ok
    assert os.path.isdir(node.dictionary["watch_dir"])
    assert "All work directories exist" in run(node, "create work directories").render()


def test_exit_node_calls_the_exit_hook(tmp_path):
    stopped = []
    node = unit_node(tmp_path, on_exit=lambda: stopped.append(True))
    assert run(node, "exit node").ok and stopped == [True]


def test_if_runs_the_command_only_when_the_condition_holds(node):
    assert run(node, "if not !x then x = 1").ok and node.dictionary["x"] == "1"
    assert run(node, "if not !x then x = 2").ok and node.dictionary["x"] == "1"
    assert run(node, "if !x == 1 then echo one").render() == "one"
    assert run(node, "if !x.int >= 2 then echo big").render() == ""
    assert run(node, "if !x > 0.5 then echo numeric").render() == "numeric"  # 1 > 0.5 as numbers
    assert run(node, 'if "false" then echo no').render() == ""
    reply = run(node, "if !x then")
    assert not reply.ok and "usage: if" in reply.text
    reply = run(node, "if a b then echo x")
    assert not reply.ok and "condition" in reply.text


def test_logs_keep_commands_without_their_secrets(tmp_path):
    node = unit_node(tmp_path)
    run(node, "set network key = abcdefgh12")
    run(node, 'bogus command where password = "s3 cret"')
    logged = " ".join(str(e) for e in node.events.entries() + node.errors.entries())
    assert "abcdefgh12" not in logged and "s3 cret" not in logged
    assert "set network key = ***" in logged and "password = ***" in logged
