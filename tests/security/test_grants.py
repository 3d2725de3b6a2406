"""Grants: every command declares one, the node checks it once before anything runs, and `help`
shows it (issue 14 item 1).  Table-driven over every registered command and every front door."""

from __future__ import annotations

import dataclasses
import os

import pytest
from twisted.internet.testing import MemoryReactorClock

from anylog_tw.base import grammar
from anylog_tw.base.origin import Origin
from anylog_tw.base.registry import GRANTS, Registry, command_grant, grant_allows
from anylog_tw.commands import load_commands
from anylog_tw.net.peer import PEER_GRANT
from anylog_tw.node import Node
from tests.helpers import fired, run

REGISTRY = load_commands()

# The front doors that can hold less than owner, and the part of the refusal that says how to get more.
KINDS = {
    "rest": "REST users get their role",
    "peer": "peers hold what the network's protocols need",
    "console": "the console grants admin",
    "scheduler": "runs with the grant of whoever scheduled it",
}

# What the network's own protocols send to a peer (net/, services/, metadata/sync.py, query/):
# each must run with what a peer holds (net/peer.py PEER_GRANT), and needs no more than listed.
PEER_SENT = {
    "get status": "read",  # housekeeping, test node/network
    "get metadata version": "read",  # blockchain sync, test network metadata
    "get metadata changes since 12": "read",  # blockchain sync (delta)
    "blockchain pull to stdout": "read",  # blockchain sync (whole ledger)
    'blockchain push {"config": {"name": "c1"}}': "write",  # blockchain insert -> master, sync of local policies
    "query part where dbms = d and table = t and job = 1": "read",  # network queries
    "query next where cursor = 5f2a": "read",  # paged query parts
    'get ha files where start_date = "a" and end_date = "b"': "read",  # HA pull
    "ha deliver where ids = 1-3 and to = 10.0.0.1:32048": "write",  # HA pull asks for the files
    "get tsd summary where table = * and format = json": "read",  # test cluster data
}


def spied_node(tmp_path) -> tuple[Node, list]:
    """A unit node whose commands are the real ones with their handlers replaced by a spy."""
    called: list[str] = []
    registry = Registry()
    for cmd in REGISTRY:
        registry.add(dataclasses.replace(cmd, handler=lambda call, name=cmd.name: called.append(name) or "ran"))
    node = Node(str(tmp_path / "home"), reactor=MemoryReactorClock(), registry=registry)
    return node, called


def tree(path: str) -> list[tuple[str, int, float]]:
    """Every file and directory under `path`, with size and modification time."""
    out = []
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            out.append((full, st.st_size, st.st_mtime))
    return sorted(out)


def test_every_registered_command_declares_a_grant():
    assert len(REGISTRY) > 150
    undeclared = [c.name for c in REGISTRY if c.grant not in GRANTS]
    assert undeclared == []


def test_a_registry_refuses_a_command_without_a_grant():
    reg = Registry()
    with pytest.raises(ValueError, match="declares no grant"):
        reg.command("get z", usage="get z", text="z", examples=(), keywords=())(lambda call: "")
    assert reg.get("get z") is None


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("held", ["read", "write", "admin"])
def test_a_caller_without_the_grant_is_refused_and_nothing_runs(tmp_path, kind, held):
    """For every command that needs more than the caller holds: 403, the grant named with how to
    get it, the handler never called, no file in the home touched, the refusal in the error log."""
    node, called = spied_node(tmp_path)
    os.makedirs(node.home, exist_ok=True)
    before = tree(node.home)
    origin = Origin(f"{kind} tester", held, kind)
    needing_more = [c for c in REGISTRY if not grant_allows(held, command_grant(c))]
    assert needing_more, "the table would test nothing"
    for cmd in needing_more:
        reply = fired(node.execute(cmd.name, origin))
        assert reply.status == 403 and reply.error_code == "forbidden", (cmd.name, reply.render())
        assert f"'{cmd.name}' needs the '{command_grant(cmd)}' grant" in reply.text, reply.text
        assert f"holds '{held}'" in reply.text and KINDS[kind] in reply.text, reply.text
    assert called == []
    assert tree(node.home) == before
    assert len(node.errors.entries(None)) == min(len(needing_more), 1000)


@pytest.mark.parametrize("held", GRANTS)
def test_a_caller_with_the_grant_reaches_the_handler(tmp_path, held):
    """The other half of the table (so the refusals above are not refusing everything)."""
    node, called = spied_node(tmp_path)
    origin = Origin("tester", held, "rest" if held != "owner" else "local")
    allowed = [c for c in REGISTRY if grant_allows(held, command_grant(c))]
    for cmd in allowed:
        reply = fired(node.execute(cmd.name, origin))
        assert reply.status != 403, (cmd.name, reply.render())
    assert set(called) <= {c.name for c in allowed}
    assert len(called) > len(allowed) // 2  # most run bare; some need arguments and say so


@pytest.mark.parametrize("text", sorted(PEER_SENT))
def test_what_peers_send_each_other_runs_with_a_peers_grant(text):
    match = REGISTRY.match(grammar.tokenize(text))
    assert match is not None, text
    needed = command_grant(match[0])
    assert needed == PEER_SENT[text], (text, needed)
    assert grant_allows(PEER_GRANT, needed)


def test_peers_cannot_run_admin_commands_through_the_protocols():
    """What a peer may not do even though the protocols are open to it."""
    for name in ("run manhole", "set network key", "file copy", "process", "connect dbms", "exit node",
                 "run tcp server", "rest get", "reset error log"):
        assert not grant_allows(PEER_GRANT, command_grant(REGISTRY.get(name))), name


def test_a_peer_cannot_pass_a_command_it_could_not_run_through_another(tmp_path):
    """`schedule`, `run client` and `x = <command>` are open to a peer, the command they carry is checked."""
    node, called = spied_node(tmp_path)
    node.registry = REGISTRY  # the real `schedule` and `run client`, which check what they carry
    peer = Origin("peer 10.0.0.7:32048", PEER_GRANT, "peer")
    for text in ("schedule time = 1 hour and name = x task file delete /etc/passwd",
                 "run client (10.0.0.1:32048) set network key = x", "x = exit node"):
        reply = fired(node.execute(text, peer))
        assert reply.status == 403 and "needs the 'admin' grant" in reply.text, (text, reply.text)
    assert "x" not in node.dictionary


def test_the_manhole_is_for_the_owner_only():
    assert command_grant(REGISTRY.get("run manhole")) == "owner"
    assert command_grant(REGISTRY.get("exit manhole")) == "owner"


# --- help ---------------------------------------------------------------------------------------


def test_help_lists_each_commands_grant(tmp_path):
    node = Node(str(tmp_path / "home"), reactor=MemoryReactorClock())
    lines = run(node, "help").render().splitlines()
    assert any("Grant" in line for line in lines[:3])
    for cmd in REGISTRY:
        row = next(line for line in lines if line.split("|")[0].strip() == cmd.name)
        assert row.split("|")[1].strip() == command_grant(cmd), row
    prefix = run(node, "help file").render()
    assert "Grant" in prefix and "admin" in prefix


@pytest.mark.parametrize("name", ["get status", "blockchain insert", "file copy", "run manhole"])
def test_help_of_a_command_names_its_grant(tmp_path, name):
    node = Node(str(tmp_path / "home"), reactor=MemoryReactorClock())
    grant = command_grant(REGISTRY.get(name))
    page = run(node, f"help {name}").render()
    assert "Grant:" in page and f"{grant}:" in page
    assert run(node, f"help grant {name}").render().startswith(f"{grant}:")
