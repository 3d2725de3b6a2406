"""The process's file descriptors: how many it may open (RLIMIT_NOFILE), raising that, and how many are open.

Every connection and every open file takes one; `net/limits.py` keeps some free for the node.
"""

from __future__ import annotations

import os

try:
    import resource
except ImportError:  # not on Windows: no descriptor limit to read or raise
    resource = None


def fd_limits() -> tuple[int, int] | None:
    """(soft, hard) RLIMIT_NOFILE, or None where the platform has none."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def raise_fd_limit(target: int = 65536) -> tuple[int, int] | None:
    """Raise the soft descriptor limit toward `target` (never past the hard limit): (before, after)."""
    limits = fd_limits()
    if limits is None:
        return None
    soft, hard = limits
    want = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, want
    return soft, soft


def count_open_fds() -> int | None:
    """Descriptors open in this process right now (Linux /proc; None elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # listdir's own descriptor
    except OSError:
        return None
