"""AnyLog's work directories under a node's home, and the dictionary keys that name them.

AnyLog puts them under `<home>/AnyLog-Network/`; a node here uses the home itself as that root,
so `--home /srv/node1` gives `/srv/node1/data/watch`.  Every path is also a dictionary value
(`!watch_dir`), as AnyLog users expect.
"""

from __future__ import annotations

import os
import re
from types import MappingProxyType
from typing import Mapping

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


# The keys of the node's work-directory snapshot (`Node.dirs`): where the node reads and writes.
WORK_KEYS = frozenset({"anylog_path", *DIRECTORIES, *FILES})

# The node's own name and addresses: what `run tcp server` binds and the node's policies declare.
IDENTITY_KEYS = frozenset({"node_name", "hostname", "ip", "external_ip"})

# Dictionary keys whose value is a secret: hidden by `get dictionary` and the logs, readable with
# `!key` only by admin and owner callers, settable only by admin.
_SECRET = re.compile(r"(?:^|_)(?:password|passwd|pwd|secret|token|key|credentials?)(?:$|_)", re.IGNORECASE)
# Dictionary keys whose value names a place on disk: only admin may set them (a path key that
# some command reads later must not be pointed at / by a reader or a peer).
_PATH = re.compile(r"(?:_dir|_dirs|_path|_file|_files|_scripts)$|^home$|^pem", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET.search(key))


def is_path_key(key: str) -> bool:
    return key in WORK_KEYS or bool(_PATH.search(key))


def key_grant(key: str) -> str:
    """The grant that setting or deleting dictionary `key` needs.

    A work directory (`WORK_KEYS`) is part of the node's fixed layout: only the owner moves one
    (see `Node.move_work_directory`); other keys that name paths or secrets need admin; the rest
    are plain values any writer may set.
    """
    if key in WORK_KEYS:
        return "owner"
    if is_path_key(key) or is_secret_key(key) or key in IDENTITY_KEYS:
        return "admin"
    return "write"


def snapshot(entries: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy of the work-directory entries: what the node's processes read."""
    return MappingProxyType({k: entries[k] for k in WORK_KEYS if k in entries})


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
