"""The rule for the names of databases, tables and columns, shared by file names and SQL.

A name from a file, a header or a JSON key ends up quoted in SQL and inside file names, so it is
held to one strict pattern everywhere: 1 to 63 lower-case letters, digits and '_', starting with a
letter or '_' (PostgreSQL's identifier limit).  `fullmatch` keeps a trailing newline out.
"""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def is_name(text: str) -> bool:
    return NAME_PATTERN.fullmatch(text) is not None
