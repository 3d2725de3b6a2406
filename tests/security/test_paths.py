"""Paths: no path a non-owner names resolves outside the node's home (issue 14 item 5).

One rule (`fileops.path_checker`) for every command that takes a path; `..`, absolute paths and
symbolic links planted in the home are resolved before the check.
"""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor

from anylog_tw.base.errors import CommandError
from anylog_tw.base.origin import LOCAL, Origin
from anylog_tw.commands.files import work_roots
from anylog_tw.ingest import fileops
from anylog_tw.node import Node
from tests.helpers import ok, refused

NON_OWNERS = [Origin("REST reader", "read", "rest"), Origin("REST writer", "write", "rest"),
              Origin("peer 10.0.0.7:32048", "write", "peer"), Origin("console", "admin", "console"),
              Origin("task", "admin", "scheduler")]


def inside(path: str, roots) -> bool:
    real = os.path.realpath(path)
    return any(real == os.path.realpath(r) or real.startswith(os.path.realpath(r).rstrip(os.sep) + os.sep)
               for r in roots)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A home with work directories and symbolic links in it that point outside."""
    base = tmp_path_factory.mktemp("paths")
    home = base / "home"
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    node = Node(str(home), reactor=reactor)
    from anylog_tw.base import layout
    layout.create_work_directories(node.home)
    os.symlink(outside, home / "data" / "watch" / "out")  # a directory link leading out
    os.symlink(outside / "secret", home / "data" / "tmp" / "secret")  # a file link leading out
    os.symlink("../../..", home / "data" / "prep" / "up")  # a relative link climbing out
    os.symlink(home / "data" / "bkup", home / "data" / "prep" / "bk")  # a link that stays inside
    return node


SEGMENTS = st.sampled_from(["..", ".", "data", "watch", "tmp", "prep", "out", "secret", "up", "bk", "etc",
                            "passwd", "", "~", "x..y", "\x00", "//"])
PATHS = st.one_of(
    st.text(max_size=40),
    st.lists(SEGMENTS, max_size=8).map("/".join),
    st.lists(SEGMENTS, max_size=8).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from(["/", "/etc/passwd", "~/.ssh/id_rsa", "..", "../..", "/proc/self/environ"]),
)


@settings(max_examples=400)
@given(path=PATHS, which=st.integers(0, len(NON_OWNERS) - 1), under_home=st.booleans())
def test_no_path_a_non_owner_gives_resolves_outside_the_home(home, path, which, under_home):
    roots = work_roots(home)
    check = fileops.path_checker(NON_OWNERS[which], roots)
    if under_home:
        path = os.path.join(home.home, path)
    try:
        resolved = check(path)
    except CommandError as e:
        assert "outside this node's home" in e.message or "empty" in e.message or "NUL" in e.message
        return
    assert inside(resolved, [home.home] + roots), (path, resolved)
    assert os.path.realpath(resolved) == resolved.rstrip(os.sep) or resolved.endswith(os.sep)


@pytest.mark.parametrize("path", ["data/watch/out/secret", "data/tmp/secret", "data/prep/up/etc",
                                  "data/watch/out", "data/../../outside/secret"])
def test_links_and_dotdot_from_the_home_to_outside_are_refused(home, path):
    for origin in NON_OWNERS:
        with pytest.raises(CommandError, match=r"outside this node's home.*only the node's owner|outside"):
            fileops.path_checker(origin, work_roots(home))(os.path.join(home.home, path))


def test_a_link_that_stays_inside_is_allowed_and_resolved(home):
    got = fileops.path_checker(NON_OWNERS[0], work_roots(home))(os.path.join(home.home, "data/prep/bk"))
    assert got == os.path.realpath(os.path.join(home.home, "data/bkup"))


def test_a_relative_path_of_a_non_owner_is_read_from_the_home(home):
    got = fileops.path_checker(NON_OWNERS[3], work_roots(home))("data/watch")
    assert got == os.path.realpath(os.path.join(home.home, "data/watch"))


def test_the_owner_is_not_confined(home):
    assert fileops.path_checker(LOCAL, work_roots(home))("/etc/passwd") == "/etc/passwd"


# --- through the commands: refused, and nothing on disk changed -----------------------------------


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="paths", reactor=reactor)
    node.startService()
    node.outside = tmp_path / "outside"
    node.outside.mkdir()
    yield node
    await node.stopService()


async def test_blockchain_pull_to_json_is_confined(node):
    writer = Origin("peer 10.0.0.7:32048", "write", "peer")
    target = node.outside / "ledger.json"
    assert "outside this node's home" in await refused(node, f"blockchain pull to json {target}", writer)
    link = os.path.join(node.dirs["tmp_dir"], "link.json")
    os.symlink(target, link)
    assert "outside this node's home" in await refused(node, f"blockchain pull to json {link}", writer)
    assert os.listdir(node.outside) == []
    await ok(node, "blockchain pull to json !tmp_dir/ledger.json", writer)
    assert os.path.exists(os.path.join(node.dirs["tmp_dir"], "ledger.json"))
    reader = Origin("REST reader", "read", "rest")
    assert "needs the 'write' grant" in await refused(node, "blockchain pull to json !tmp_dir/l2.json", reader)
    assert (await ok(node, "blockchain pull to stdout", reader)).ok


async def test_file_commands_through_a_planted_link_are_refused(node):
    (node.outside / "secret").write_text("s")
    os.symlink(node.outside, os.path.join(node.dirs["prep_dir"], "out"))
    admin = Origin("console 127.0.0.1", "admin", "console")
    for text in ("file copy !prep_dir/out/secret !tmp_dir/", "file delete !prep_dir/out/secret",
                 "file move !prep_dir/out/secret !tmp_dir/", "get files !prep_dir/out",
                 "file copy !tmp_dir/nothing !prep_dir/out/new"):
        assert "outside this node's home" in await refused(node, text, admin), text
    assert os.listdir(node.outside) == ["secret"] and os.listdir(node.dirs["tmp_dir"]) == []


async def test_sql_dest_file_is_confined(node):
    admin = Origin("console 127.0.0.1", "admin", "console")
    await ok(node, "connect dbms lsl where type = sqlite")
    target = node.outside / "out.txt"
    msg = await refused(node, f'run client () sql lsl dest = file and file = {target} "select v from t"', admin)
    assert "outside this node's home" in msg
    assert os.listdir(node.outside) == []
