"""The query path's errors: a statement that cannot run, or cannot be merged correctly."""

from anylog_tw.base.errors import CommandError


class QueryError(CommandError):
    """A network query cannot run as written; the message names the part and the reason."""

    code = "sql"


class Unmergeable(QueryError):
    """The statement is valid SQL, but the query node cannot merge the operators' answers to it
    correctly; refused rather than answered wrong."""

    code = "sql_unmergeable"
