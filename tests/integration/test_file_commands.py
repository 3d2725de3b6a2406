"""The file commands through `node.run`, as the console, a script, REST or a peer runs them (real thread pool)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.ingest.watcher import DirectoryWatcher
from anylog_tw.node import Node
from tests.helpers import ok, poll, refused

DATA = b'{"ts": "2026-11-28 05:00:00", "v": 1}\n{"ts": "2026-11-28 05:00:01", "v": 2}\n'
PEER = "peer 10.0.0.7:32048"
ADMIN = "console 127.0.0.1:40000"  # admin, but not the owner: confined to the home like every non-owner


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="fc", reactor=reactor)
    node.startService()
    yield node
    await node.stopService()


def prep_file(node, name="lsl_demo.ping_sensor.json", data=DATA) -> str:
    path = os.path.join(node.dictionary["prep_dir"], name)
    with open(path, "wb") as f:
        f.write(data)
    return path


async def test_copy_move_test_delete_with_dictionary_paths(node):
    prep_file(node)
    reply = await ok(node, "file copy !prep_dir/lsl_demo.ping_sensor.json !tmp_dir/")
    copied = os.path.join(node.dictionary["tmp_dir"], "lsl_demo.ping_sensor.json")
    assert reply.render() == f"Copied {node.dictionary['prep_dir']}/lsl_demo.ping_sensor.json to {copied}"
    assert open(copied, "rb").read() == DATA
    assert (await ok(node, "file test !tmp_dir/lsl_demo.ping_sensor.json")).render() == "True"
    await ok(node, "file move !tmp_dir/lsl_demo.ping_sensor.json !bkup_dir")
    assert (await ok(node, "file test !tmp_dir/lsl_demo.ping_sensor.json")).render() == "False"
    await ok(node, "file delete !bkup_dir/lsl_demo.ping_sensor.json")
    assert os.listdir(node.dictionary["bkup_dir"]) == []
    assert "does not exist" in await refused(node, "file delete !bkup_dir/lsl_demo.ping_sensor.json")


async def test_files_moved_or_copied_into_the_watch_dir_are_seen_at_once(node):
    """The watcher takes a file on IN_MOVED_TO; the commands rename complete files in, so no rescan is needed."""
    seen = []
    watcher = DirectoryWatcher(reactor, node.dictionary["watch_dir"], seen.append, rescan=3600)
    watcher.start()
    try:
        if watcher.mode != "inotify":
            pytest.skip("INotify is not available here")
        prep_file(node, "a.t.json")
        prep_file(node, "b.t.json")
        await ok(node, "file move !prep_dir/a.t.json !watch_dir")
        await ok(node, "file copy !prep_dir/b.t.json !watch_dir/")
        await poll(lambda: len(seen) >= 2, timeout=5, what="the watcher to report both files")
        assert sorted(seen) == ["a.t.json", "b.t.json"]
    finally:
        watcher.stop()


async def test_an_existing_destination_needs_overwrite(node):
    src = prep_file(node)
    dest = prep_file(node, "other.json", b"keep me")
    message = await refused(node, f"file copy {src} {dest}")
    assert "exists" in message and "overwrite = true" in message
    assert open(dest, "rb").read() == b"keep me"
    await ok(node, f"file copy {src} {dest} where overwrite = true")
    assert open(dest, "rb").read() == DATA


async def test_file_hash_prints_the_operators_hash(node):
    prep_file(node)
    expected = hashlib.md5(b"lsl_demo.ping_sensor" + DATA).hexdigest()
    assert (await ok(node, "file hash !prep_dir/lsl_demo.ping_sensor.json")).render() == expected
    prep_file(node, "readings.txt")
    assert "where dbms = <dbms> and table = <table>" in await refused(node, "file hash !prep_dir/readings.txt")
    reply = await ok(node, "file hash !prep_dir/readings.txt where dbms = lsl_demo and table = ping_sensor")
    assert reply.render() == expected
    assert "both" in await refused(node, "file hash !prep_dir/readings.txt where dbms = lsl_demo")


async def test_compress_and_decompress_round_trip(node):
    src = prep_file(node)
    reply = await ok(node, "file compress !prep_dir/lsl_demo.ping_sensor.json !bkup_dir/")
    gz = os.path.join(node.dictionary["bkup_dir"], "lsl_demo.ping_sensor.json.gz")
    assert reply.render().endswith(gz) and gzip.decompress(open(gz, "rb").read()) == DATA
    await ok(node, f"file decompress {gz} !tmp_dir")
    assert open(os.path.join(node.dictionary["tmp_dir"], "lsl_demo.ping_sensor.json"), "rb").read() == DATA
    assert os.path.exists(src) and os.path.exists(gz)
    bad = prep_file(node, "broken.json.gz", b"no gzip here")
    assert "not a complete gzip file" in await refused(node, f"file decompress {bad}")
    assert not os.path.exists(bad[:-3])


async def test_listings_as_tables_and_json(node):
    prep_file(node, "b.json", b"12")
    prep_file(node, "a.json", b"")
    os.mkdir(os.path.join(node.dictionary["prep_dir"], "sub"))
    table = (await ok(node, "get files !prep_dir")).render().splitlines()
    assert table[0] == f"Files in {node.dictionary['prep_dir']}"
    assert table[1].split() == ["File", "Size", "Modified", "UTC"]
    assert [line.split("|")[0].strip() for line in table[3:]] == ["a.json", "b.json"]
    rows = json.loads((await ok(node, "get files !prep_dir where format = json")).render())
    assert [(r["File"], r["Size"]) for r in rows] == [("a.json", 0), ("b.json", 2)]
    dirs = json.loads((await ok(node, "get directories !prep_dir where format = json")).render())
    assert [d["Directory"] for d in dirs] == ["sub"]
    assert "does not exist" in await refused(node, "get files !prep_dir/nope")


async def test_get_archived_files_reads_the_day_folder(node):
    day = os.path.join(node.dictionary["archive_dir"], "26", "11", "28")
    os.makedirs(day)
    name = "lsl_demo.ping_sensor.0.0.0.1.7.261128050000.json.gz"
    with open(os.path.join(day, name), "wb") as f:
        f.write(gzip.compress(DATA))
    rows = json.loads((await ok(node, "get archived files 2026-11-28 where format = json")).render())
    assert [r["File"] for r in rows] == [name]
    assert json.loads((await ok(node, "get archived files 2026-11-27 where format = json")).render()) == []
    assert "YYYY-MM-DD" in await refused(node, "get archived files 28/11/2026")


async def test_json_file_struct_under_both_names(node):
    struct = (await ok(node, "get json file struct")).render()
    assert struct.startswith("[dbms name].[table name].[data source].[hash value]")
    assert (await ok(node, "get json file structure")).render() == struct
    assert (await ok(node, "show json file structure")).render() == struct


async def test_a_non_owner_is_kept_inside_the_home(node, tmp_path):
    """From any caller but the owner (here an admin console), paths outside the home and work
    directories are refused and nothing is touched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.json"
    secret.write_bytes(b"secret")
    src = prep_file(node)
    for text in (f"file copy {secret} !tmp_dir/", f"file copy {src} {outside}/", f"file delete {secret}",
                 f"file move {secret} !tmp_dir", f"file hash {secret}", f"file test {secret}",
                 f"get files {outside}", f"get directories {outside}", f"file compress {src} {outside}/",
                 "file copy !prep_dir/../../../outside/secret.json !tmp_dir/"):
        message = await refused(node, text, ADMIN)
        assert "outside this node's home" in message and ADMIN in message, text
    for text in (f"file hash {secret}", f"get files {outside}"):  # a reader is confined the same way
        assert "outside this node's home" in await refused(node, text, "REST 127.0.0.1:5555"), text
    assert secret.read_bytes() == b"secret" and os.listdir(outside) == ["secret.json"]
    assert os.listdir(node.dictionary["tmp_dir"]) == []
    await ok(node, f"file copy {src} !tmp_dir/", ADMIN)  # inside: allowed
    await ok(node, f"get files {outside}")  # the owner (prompt, startup scripts) goes anywhere
    await ok(node, f"file copy {secret} !tmp_dir/secret.json")


async def test_a_non_owner_may_use_a_work_directory_the_owner_moved_out_of_the_home(node, tmp_path):
    elsewhere = tmp_path / "big-disk" / "archive"
    elsewhere.mkdir(parents=True)
    await ok(node, f"archive_dir = {elsewhere}")
    src = prep_file(node)
    await ok(node, f"file copy {src} !archive_dir/", ADMIN)
    assert os.listdir(elsewhere) == ["lsl_demo.ping_sensor.json"]


async def test_wrong_arguments_are_errors(node):
    assert "usage" in await refused(node, "file copy !prep_dir/a.json")
    assert "usage" in await refused(node, "file test")
    assert "overwrite" in await refused(node, "file copy a b where overwrite = maybe")


async def test_a_non_owner_is_kept_inside_the_home_by_every_command_that_touches_files(node, tmp_path):
    """time file rename/add, backup table, file send and process take the same limit; a task an admin
    schedules, and the lines of a script an admin runs, keep the admin's limit."""
    outside = tmp_path / "outside"
    outside.mkdir()
    data_file = outside / "lsl.ping.json"
    data_file.write_bytes(DATA)
    script = outside / "grab.al"
    script.write_text(f"file copy {data_file} !tmp_dir/\n")
    await ok(node, "connect dbms almgm where type = sqlite")
    await ok(node, "connect dbms lsl where type = sqlite")
    await ok(node, 'sql lsl "create table t (v int)"')
    await ok(node, 'sql lsl "insert into t (v) values (1)"')
    for text in (f"time file rename {data_file} to table = other", f"time file add {data_file}",
                 f"backup table where dbms = lsl and table = t and dest = {outside}",
                 f"file send {data_file} 127.0.0.1:1", f"process {script}"):
        assert "outside this node's home" in await refused(node, text, ADMIN), text
    for text in (f"time file rename {data_file} to table = other", f"time file add {data_file}"):
        assert "outside this node's home" in await refused(node, text, PEER), text  # write, confined
    assert sorted(os.listdir(outside)) == ["grab.al", "lsl.ping.json"]

    home_script = os.path.join(node.dictionary["prep_dir"], "grab.al")
    with open(home_script, "w") as f:
        f.write(f"file copy {data_file} !tmp_dir/\n")
    await ok(node, f"process {home_script}", ADMIN)  # the script may run; its line keeps the admin's limit
    await ok(node, "run scheduler 1", ADMIN)
    await ok(node, f"schedule time = 1 hour and name = grab and scheduler = 1 task file copy {data_file} !tmp_dir/",
             ADMIN)
    assert "outside this node's home" in await refused(node, "task run where scheduler = 1 and name = grab", ADMIN)
    assert os.listdir(node.dictionary["tmp_dir"]) == []
