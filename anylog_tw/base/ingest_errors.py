"""Why a file failed: one error type with a short code that goes into the error file's name.

A failed file is moved to the error dir as `<name>.err_<code>.<epoch>.<type>` (spec §2.4), so a
user listing the directory sees at once what kind of failure each file had; the full reason is
in `get operator error` and the node's error log.
"""

from __future__ import annotations

from anylog_tw.base.errors import AnyLogError

# code -> what it means; the code is the part after `err_` in the error file's name.
CODES = {
    "name": "the file name does not follow dbms.table.source.hash.instructions[.member.id.date].json",
    "type": "the file type is not json or sql (or .gz of them)",
    "empty": "the file holds no rows",
    "json": "a line is not a JSON object",
    "duplicate": "a file with the same hash was already ingested",
    "dbms": "the file's dbms is not connected",
    "limit": "the table is outside the operator's limit_tables",
    "table": "the table cannot be created or changed",
    "mapping": "a row cannot be mapped to the table's columns",
    "sql": "a .sql file holds a statement other than INSERT INTO / CREATE TABLE IF NOT EXISTS of its table",
    "insert": "the database refused the rows",
    "archive": "the file could not be archived",
    "io": "the file could not be read",
}


class IngestError(AnyLogError):
    """A file cannot be ingested; `reason` is the short code, the message says why and what to do."""

    code = "ingest"

    def __init__(self, reason: str, message: str):
        if reason not in CODES:
            raise ValueError(f"unknown ingest failure code {reason!r}")
        super().__init__(message)
        self.reason = reason
