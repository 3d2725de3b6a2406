"""Who is asking: the origin of a command and the grant it holds.

Every command reaches the node with an `Origin`.  The front door that took it (stdin, a startup
script, the console, REST, a peer, a scheduled task) decides the grant from what the caller
proved; the node checks it against the command's declared grant in one place (`Node._dispatch`)
before anything runs.  An origin can only be narrowed (`narrowed`), never widened, so a command
that runs another command (`if`, `schedule`, `run client`, a script a peer asked for) cannot hand
its caller more than the caller had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from anylog_tw.base.errors import AnyLogError
from anylog_tw.base.registry import GRANT_RANK, GRANTS, grant_allows, weaker

# Where commands come from; `kind` tells commands that behave differently per front door (a REST
# caller gets a streamed query answer, a peer's paths stay inside the work directories).
KINDS = ("local", "stdin", "script", "console", "rest", "peer", "scheduler")

# How a refused caller gets the grant, per front door: the second half of every refusal.
_HOW = {
    "rest": "REST users get their role from `run rest server ... and user = .. and password = .. and role = ..` "
            "or the users file (docs/security.md)",
    "peer": "peers hold what the network's protocols need; an authenticated network may give its peers more "
            "with 'run tcp server ... and peer grant = ..' (docs/security.md)",
    "console": "the console grants admin on loopback, or the role of the user who logged in (docs/security.md)",
    "scheduler": "a scheduled task runs with the grant of whoever scheduled it",
}


class GrantError(AnyLogError):
    """The caller does not hold the grant a command needs; nothing of it ran."""

    code = "forbidden"
    status = 403

    def __init__(self, what: str, needed: str, origin: "Origin"):
        how = _HOW.get(origin.kind, "run it at the node's own prompt or in its startup script")
        super().__init__(f"{what} needs the '{needed}' grant; {origin.label} holds '{origin.grant}' ({how})")
        self.needed = needed


@dataclass(frozen=True, slots=True)
class Origin:
    """A command's caller: how the event log names it, the grant it holds, and who it proved to be."""

    label: str
    grant: str = "owner"
    kind: str = "local"
    user: str = ""  # the identity the caller proved (REST user, console login, peer node); "" for none

    def __post_init__(self) -> None:
        if self.grant not in GRANTS:
            raise ValueError(f"origin {self.label!r}: grant {self.grant!r} is not one of {', '.join(GRANTS)}")
        if self.kind not in KINDS:
            raise ValueError(f"origin {self.label!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def __str__(self) -> str:
        return self.label

    def allows(self, needed: str) -> bool:
        return GRANT_RANK[self.grant] >= GRANT_RANK[needed]  # grant_allows, inlined: every command asks

    def require(self, needed: str, what: str) -> None:
        """Raise `GrantError` naming `what` unless this origin holds `needed`."""
        if not grant_allows(self.grant, needed):
            raise GrantError(what, needed, self)

    def narrowed(self, grant: str, label: str | None = None, kind: str | None = None) -> "Origin":
        """This origin holding at most `grant` (the weaker of the two), optionally relabelled."""
        return replace(self, grant=weaker(self.grant, grant), label=label if label is not None else self.label,
                       kind=kind if kind is not None else self.kind)

    @property
    def expands_env(self) -> bool:
        """Whether `$VAR` reads the node's environment for this caller (owner and admin only)."""
        return grant_allows(self.grant, "admin")


# The node's own code and its prompt: everything is allowed.
LOCAL = Origin("local", "owner", "local")
STDIN = Origin("stdin", "owner", "stdin")


def script(path: str, lineno: int | None = None) -> Origin:
    """A startup script the owner gave on the command line: owner."""
    return Origin(f"script {path}" + (f":{lineno}" if lineno is not None else ""), "owner", "script")
