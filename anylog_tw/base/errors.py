"""Domain errors: each carries a message a user can act on, and a code the REST layer maps.

Everything below `AnyLogError` is an expected failure (bad input, a peer that is down, a table
that does not exist): it is shown to the user as `Error: <message>` and never as a traceback.
Anything else escaping a command is a bug, logged with its traceback.
"""


class AnyLogError(Exception):
    """An expected failure with a readable message."""

    code = "error"
    status = 400  # the HTTP status the REST server answers with

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class GrammarError(AnyLogError):
    """The command text does not parse."""

    code = "bad_syntax"


class CommandError(AnyLogError):
    """A command was understood but cannot be done as asked."""

    code = "bad_command"


class UnknownCommand(CommandError):
    code = "unknown_command"
    status = 404


class OptionError(CommandError):
    """An option is unknown, missing or has a value of the wrong kind."""

    code = "bad_option"


class ServiceError(CommandError):
    """A background process is missing, or already running."""

    code = "service"
    status = 409


class NotFound(CommandError):
    code = "not_found"
    status = 404


class Timeout(AnyLogError):
    code = "timeout"
    status = 408


class StorageError(AnyLogError):
    """A database refused or failed a statement; the message names the problem."""

    code = "dbms"


class PeerError(AnyLogError):
    """A peer node could not be reached, or refused the request."""

    code = "peer"
    status = 502


class StorageFull(StorageError):
    """The database has no room left (SQLITE_FULL, PostgreSQL 53100): a pause, not a bad file."""

    code = "no_space"
    status = 507


# errno values that mean "no room": the disk, or the user's quota.
_NO_SPACE_ERRNO = (28, 122)  # ENOSPC, EDQUOT (Linux numbers; errno.EDQUOT is missing on some systems)


def no_space(error: BaseException | None) -> bool:
    """Whether a failure only says there is no space left, anywhere in its chain of causes.

    Such a failure is not the file's fault: the caller keeps the work and tries again once space
    returns, instead of failing the input.
    """
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, StorageFull) or getattr(error, "full", False) is True:
            return True
        if isinstance(error, OSError) and error.errno in _NO_SPACE_ERRNO:
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
