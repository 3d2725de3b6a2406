"""AnyLog's work directories under a node's home, and the dictionary keys that name them.

AnyLog puts them under `<home>/AnyLog-Network/`; a node here uses the home itself as that root,
so `--home /srv/node1` gives `/srv/node1/data/watch`.  Every path is also a dictionary value
(`!watch_dir`), as AnyLog users expect.
"""

from __future__ import annotations

import os

DIRECTORIES = {
    "id_dir": "anylog",
    "blockchain_dir": "blockchain",
    "prep_dir": "data/prep",
    "watch_dir": "data/watch",
    "bkup_dir": "data/bkup",
    "err_dir": "data/error",
    "archive_dir": "data/archive",
    "distr_dir": "data/distr",
    "dbms_dir": "data/dbms",
    "blobs_dir": "data/blobs",
    "bwatch_dir": "data/bwatch",
    "pem_dir": "data/pem",
    "test_dir": "data/test",
    "tmp_dir": "data/tmp",
    "local_scripts": "scripts",
}

FILES = {
    "blockchain_file": "blockchain/blockchain.json",
}


def work_dictionary(home: str) -> dict[str, str]:
    """Dictionary entries for the directories and files of a home (no I/O)."""
    entries = {"anylog_path": home}
    entries.update({key: os.path.join(home, rel) for key, rel in DIRECTORIES.items()})
    entries.update({key: os.path.join(home, rel) for key, rel in FILES.items()})
    return entries


def create_work_directories(home: str) -> list[str]:
    """Create the directories that are missing; return the ones created."""
    created = []
    for rel in DIRECTORIES.values():
        path = os.path.join(home, rel)
        if not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            created.append(path)
    return created
