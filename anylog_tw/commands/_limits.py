"""The connection-limit options every `run ... server` command shares, read into `ConnectionLimits`."""

from __future__ import annotations

from anylog_tw.base.errors import OptionError
from anylog_tw.base.registry import Option
from anylog_tw.net.limits import ConnectionLimits


def limit_options(defaults: ConnectionLimits) -> tuple[Option, ...]:
    """`max connections`, `max per address` and `idle timeout`, with this listener's defaults."""
    return (
        Option("max connections", kind="int", default=defaults.max_connections,
               help="open connections at most (the longest-waiting unfinished one is dropped to make room)"),
        Option("max per address", kind="int", default=defaults.max_per_address,
               help="open connections from one IP address at most"),
        Option("idle timeout", kind="seconds", default=defaults.idle_timeout,
               help="seconds a connection may take to finish a request or handshake (0: no deadline)"),
    )


def read_limits(opts: dict) -> ConnectionLimits:
    limits = ConnectionLimits(opts["max connections"], opts["max per address"], opts["idle timeout"])
    problems = limits.problems()
    if problems:
        raise OptionError("; ".join(problems))
    return limits


USAGE = "max connections = N and max per address = N and idle timeout = S"
