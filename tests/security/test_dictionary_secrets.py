"""The dictionary: keys that name paths or secrets need admin, work directories are a snapshot
fixed at start, and secrets never appear in replies, `get dictionary` or the logs (issue 14 item 5)."""

from __future__ import annotations

import os

import pytest
from twisted.internet.testing import MemoryReactorClock

from anylog_tw.base import layout
from anylog_tw.base.origin import LOCAL, Origin
from anylog_tw.base.eventlog import masked
from anylog_tw.node import Node
from tests.helpers import fired

READER = Origin("REST reader", "read", "rest")
WRITER = Origin("REST writer", "write", "rest")
PEER = Origin("peer 10.0.0.7:32048", "write", "peer")
ADMIN = Origin("console 127.0.0.1", "admin", "console")
SECRET = "s3cr3t-Value-42"


@pytest.fixture
def node(tmp_path):
    return Node(str(tmp_path / "home"), reactor=MemoryReactorClock(),
                environ={"ANYLOG_NETWORK_KEY": SECRET, "HOME": "/root"})


def run(node, text, origin=LOCAL):
    return fired(node.execute(text, origin))


def logs(node) -> str:
    return repr(node.events.entries()) + repr(node.errors.entries())


@pytest.mark.parametrize("key", ["watch_dir", "tmp_dir", "err_dir", "bkup_dir", "blobs_dir", "archive_dir",
                                 "anylog_path", "blockchain_file", "local_scripts", "my_dir", "cert_path", "home",
                                 "rest_password", "network_key", "api_token", "ip", "node_name"])
@pytest.mark.parametrize("origin", [READER, WRITER, PEER])
def test_keys_that_name_paths_or_secrets_are_refused_to_readers_writers_and_peers(node, key, origin):
    before = dict(node.dictionary)
    dirs = dict(node.dirs)
    for text in (f"{key} = /", f"set {key} = /", f'{key} = ""', f"{key} = get node name"):
        reply = run(node, text, origin)
        assert reply.status == 403 and f"'{layout.key_grant(key)}' grant" in reply.text, (text, reply.text)
        assert f"holds '{origin.grant}'" in reply.text
    assert node.dictionary == before and dict(node.dirs) == dirs


def test_plain_keys_need_write(node):
    assert run(node, "my_value = 7", READER).status == 403
    assert "my_value" not in node.dictionary
    assert run(node, "my_value = 7", WRITER).ok and node.dictionary["my_value"] == "7"
    assert run(node, "set other = 8", PEER).ok and node.dictionary["other"] == "8"


def test_admin_may_set_path_and_secret_keys_but_not_move_a_work_directory(node):
    assert run(node, "cert_path = /etc/ssl/x.pem", ADMIN).ok
    assert run(node, "rest_password = abc", ADMIN).ok
    reply = run(node, "watch_dir = /", ADMIN)
    assert reply.status == 403 and "'owner' grant" in reply.text and "work directory" in reply.text
    assert node.dirs["watch_dir"] == os.path.join(node.home, "data/watch")


def test_work_directories_are_a_snapshot_a_dictionary_change_cannot_move(node):
    """Processes read `node.dirs`; it is read-only, and only the owner's assignment replaces it."""
    with pytest.raises(TypeError):
        node.dirs["watch_dir"] = "/"  # type: ignore[index]
    node.dictionary["tmp_dir"] = "/"  # even code that writes the dictionary directly moves nothing
    assert node.dirs["tmp_dir"] == os.path.join(node.home, "data/tmp")
    assert run(node, "tmp_dir = /srv/tmp").ok  # the owner, at the prompt or in the startup script
    assert node.dirs["tmp_dir"] == "/srv/tmp" and node.dictionary["tmp_dir"] == "/srv/tmp"
    assert not run(node, 'watch_dir = ""').ok and "watch_dir" in node.dirs


def test_get_dictionary_still_shows_the_work_directories(node):
    rows = run(node, "get dictionary _dir where format = json", READER).json_data()
    assert rows["watch_dir"] == node.dirs["watch_dir"]


def test_get_dictionary_hides_secrets(node):
    run(node, f"rest_password = {SECRET}")
    run(node, f"network_key = {SECRET}")
    run(node, f"my_token = {SECRET}")
    for origin in (READER, ADMIN, LOCAL):
        for text in ("get dictionary", "get dictionary where format = json", "get dictionary password"):
            reply = run(node, text, origin)
            assert SECRET not in reply.render(), (text, origin)
    assert run(node, "get dictionary where format = json", READER).json_data()["rest_password"] == "***"


@pytest.mark.parametrize("origin", [READER, WRITER, PEER])
def test_a_reader_cannot_echo_the_environment_or_a_secret_key(node, origin):
    run(node, f"rest_password = {SECRET}")
    for text in ("echo $ANYLOG_NETWORK_KEY", "echo !rest_password", "print $ANYLOG_NETWORK_KEY",
                 "x = $ANYLOG_NETWORK_KEY", 'sql nothing "select \'$ANYLOG_NETWORK_KEY\'"'):
        reply = run(node, text, origin)
        assert not reply.ok and SECRET not in reply.render(), (text, reply.render())
    reply = run(node, "echo $ANYLOG_NETWORK_KEY", origin)
    assert "environment variables are expanded only for admin and owner" in reply.text
    assert "resolved only for admin and owner" in run(node, "echo !rest_password", origin).text
    assert "x" not in node.dictionary
    assert SECRET not in logs(node)


def test_admin_and_owner_may_expand_them(node):
    assert run(node, "echo $ANYLOG_NETWORK_KEY", ADMIN).render() == SECRET
    assert run(node, "echo $ANYLOG_NETWORK_KEY").render() == SECRET


@pytest.mark.parametrize("text", [
    f"run rest server where internal_ip = 127.0.0.1 and internal_port = 0 and user = u and password = {SECRET}",
    f'run rest server where user = u and password = "{SECRET}"',
    f"set network key = {SECRET}",
    f"run msg client where broker = 127.0.0.1 and port = 1 and user = u and password = {SECRET} and topic = (name = t)",
    f"connect dbms lsl where type = psql and user = u and password = {SECRET} and ip = 127.0.0.1 and port = 1",
    f"rest_password = {SECRET}",
    f"api_token = {SECRET}",
    f"network_key = '{SECRET}'",
    f'blockchain insert where policy = {{"config": {{"password": "{SECRET}"}}}}',
])
def test_secrets_given_in_commands_never_reach_the_logs(node, text):
    run(node, text, READER)  # refused: the command is in the event and error logs
    if not text.startswith(("run ", "connect ")):  # these wait on sockets a memory reactor never opens
        run(node, text, LOCAL)
    assert len(node.events.entries()) >= 1
    assert SECRET not in logs(node)
    assert SECRET not in masked(text) and "***" in masked(text)


def test_the_log_mask_keeps_ordinary_commands_readable():
    for text in ("get status", "rest get where url = http://x and key = results", "blockchain get operator"):
        assert masked(text) == text
