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
