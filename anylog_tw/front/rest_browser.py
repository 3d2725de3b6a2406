"""What keeps a web page in the operator's browser from driving the node: Host, CORS, POST bodies.

A page on any site can make the browser send "simple" requests (GET, or a POST with a text/plain,
form or empty body) to a node on loopback, without asking first; and a DNS name that the
attacker re-points to 127.0.0.1 makes the browser treat the node as the attacker's own site.
So:

- the Host header must name one of the node's addresses or names (`hosts = ...`), else 421: a
  rebound name never matches;
- no CORS header goes out unless the server lists origins (`cors = https://grafana.example,...`),
  and a preflight is answered only for those;
- commands in a POST need `Content-Type: application/json` or one of AnyLog's own headers
  (`command`, `destination`, ...): both make a cross-origin browser ask first (a preflight),
  which the node refuses unless the origin is listed.

Pure functions and small classes over plain data; the REST resource calls them.
"""

from __future__ import annotations

import ipaddress
import socket

from anylog_tw.base.errors import AnyLogError

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "localhost.localdomain"})
# Headers of AnyLog's contract that no browser sends cross-origin without a preflight.
ANYLOG_HEADERS = ("command", "destination", "anylog-agent", "dbms", "table", "mode", "type", "timeout", "subset")


class MisdirectedError(AnyLogError):
    code = "misdirected"
    status = 421


class MediaTypeError(AnyLogError):
    code = "unsupported_media_type"
    status = 415


class CorsError(AnyLogError):
    code = "cors"
    status = 403


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def split_list(text: str) -> tuple[str, ...]:
    """`a.example, b.example` (commas or spaces) -> ('a.example', 'b.example'), lower case."""
    return tuple(part.strip().lower() for part in text.replace(",", " ").split() if part.strip())


def host_of(header: str) -> str:
    """The name in a Host header, without the port: `[::1]:80` -> `::1`, `Node.Example:32049` -> `node.example`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header  # a bare name, or an IPv6 address without brackets


class HostCheck:
    """The names a Host header may carry for one server."""

    def __init__(self, interface: str, names: tuple[str, ...], node_addresses):
        self.interface = interface
        self.configured = frozenset(names)
        self._node_addresses = node_addresses  # () -> the node's ip, external_ip, hostname now
        self.allowed = self._compute()

    def _compute(self) -> frozenset[str]:
        allowed = set(self.configured)
        if self.interface:
            allowed.add(self.interface.lower())
        if not self.interface or is_loopback(self.interface):
            allowed |= LOOPBACK_NAMES
        allowed |= {a.lower() for a in self._node_addresses() if a}
        return frozenset(allowed)

    def check(self, header: bytes | None) -> None:
        """Raise 421 unless the Host header names this node (a request without Host, HTTP/1.0, passes)."""
        if header is None:
            return
        name = host_of(header.decode("latin-1"))
        if name in self.allowed:
            return
        self.allowed = self._compute()  # the dictionary's ip or external_ip may have changed
        if name in self.allowed:
            return
        raise MisdirectedError(f"Host {name[:100]!r} is not a name of this node: send the request to one of its "
                               f"addresses ({', '.join(sorted(self.allowed)[:6])}), or list the name in "
                               f"'run rest server ... and hosts = {name[:60]}'")


def node_addresses(node, announced: str) -> tuple[str, ...]:
    """The node's own addresses and names, as the dictionary and the system know them now."""
    d = node.dictionary
    names = [str(d.get("ip", "")), str(d.get("external_ip", "")), str(d.get("hostname", "")),
             host_of(announced) if announced else ""]
    try:
        names.append(socket.gethostname())
    except OSError:
        pass
    return tuple(names)


class Cors:
    """The browser origins a server answers (none by default: no CORS header at all)."""

    def __init__(self, origins: tuple[str, ...] = ()):
        self.origins = frozenset(o.rstrip("/") for o in origins)

    def allow(self, origin: bytes | None) -> bytes | None:
        """The Access-Control-Allow-Origin value for this request's Origin, or None (send no header)."""
        if origin is None or not self.origins:
            return None
        text = origin.decode("latin-1").lower()
        return origin if text in self.origins else None

    def preflight(self, origin: bytes | None) -> bytes | None:
        """The origin a preflight is answered for; raise for an origin not listed."""
        if origin is None:
            return None  # not a browser's preflight: an OPTIONS from a tool, answered with Allow only
        allowed = self.allow(origin)
        if allowed is None:
            raise CorsError(f"browser pages from {origin.decode('latin-1')[:100]} may not call this node: list the "
                            f"origin in 'run rest server ... and cors = {origin.decode('latin-1')[:100]}'")
        return allowed


def check_post_commands(headers: dict[str, str], has_body: bool) -> None:
    """A POST runs commands only with JSON or an AnyLog header, which a cross-origin page cannot send unasked."""
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        return
    for name in ANYLOG_HEADERS:
        if name in headers:
            return
    where = "its body" if has_body else "the URL"
    raise MediaTypeError(f"a POST with commands in {where} needs the 'command' header (curl -X POST -H "
                         f"'command: ...'), or a JSON body with 'Content-Type: application/json' "
                         f"({ctype or 'no content type'} is what any web page can send)")
