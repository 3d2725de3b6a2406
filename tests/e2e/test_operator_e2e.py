"""A real node process ingesting 1,000 files, killed with SIGKILL twice mid-way: every row exactly once.

After the kills and restarts every file is archived (none in the error dir), `tsd_info` has one
done row per file, and the table holds each generated row exactly once, checked by count and by
the distinct sequence numbers, read straight from the SQLite files after the node has stopped.
"""

from __future__ import annotations

import json
import os
import sqlite3

from tests.e2e.harness import wait_for

FILES = 1000
SCRIPT = """connect dbms almgm where type = sqlite
connect dbms lsl where type = sqlite
run operator where threads = 3 and rescan = 2 seconds
"""


def archived(home) -> int:
    n = 0
    for _, _, files in os.walk(home / "data" / "archive"):
        n += sum(1 for f in files if not f.endswith(".part"))
    return n


def make_files(directory, files: int) -> int:
    directory.mkdir(parents=True)
    seq = 0
    for i in range(files):
        rows = 5 + (i * 37) % 120  # 5 to 124 rows: small and larger inserts mixed
        with open(directory / f"lsl.readings.dev{i}.0.0.json", "w") as f:
            for _ in range(rows):
                f.write(json.dumps({"seq": seq, "device": f"dev{i % 17}", "value": seq * 0.25,
                                    "timestamp": "2026-11-28T04:00:00Z"}) + "\n")
                seq += 1
    return seq


def test_sigkill_twice_while_ingesting_loses_and_duplicates_nothing(nodes, tmp_path):
    staging = tmp_path / "staging"
    total = make_files(staging, FILES)
    node = nodes("op", SCRIPT)
    watch = node.home / "data" / "watch"
    wait_for(lambda: watch.is_dir(), 10, "the watch dir")
    for name in sorted(os.listdir(staging)):
        os.rename(staging / name, watch / name)

    kills = 0
    caught = []  # files registered (8-segment names) but not archived when the node died
    for threshold in (FILES // 4, FILES * 3 // 5):
        wait_for(lambda: archived(node.home) >= threshold, 120, f"{threshold} files archived")
        node.kill()
        kills += 1
        caught.append(sum(1 for n in os.listdir(watch) if len(n.split(".")) == 9))
        assert archived(node.home) < FILES, "the node finished before it could be killed"
        node.start()

    wait_for(lambda: archived(node.home) == FILES and not os.listdir(watch), 180, "all files archived")
    node.stop()
    assert kills == 2
    print(f"registered files in flight at the kills: {caught}")

    errors = os.listdir(node.home / "data" / "error")
    assert errors == [], errors
    with sqlite3.connect(node.home / "data" / "dbms" / "lsl.dbms") as db:
        count, distinct, low, high = db.execute(
            "select count(*), count(distinct seq), min(seq), max(seq) from readings").fetchone()
        files_with_rows = db.execute("select count(distinct tsd_id) from readings").fetchone()[0]
    assert (count, distinct, low, high) == (total, total, 0, total - 1)
    assert files_with_rows == FILES
    with sqlite3.connect(node.home / "data" / "dbms" / "almgm.dbms") as db:
        done, rows, ids = db.execute(
            "select count(*), sum(rows), count(distinct file_id) from tsd_info where status2 = 'done'").fetchone()
        all_rows = db.execute("select count(*) from tsd_info").fetchone()[0]
    assert (done, rows, ids, all_rows) == (FILES, total, FILES, FILES)
