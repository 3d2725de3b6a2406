"""The plain-data side of the diagnostics commands (`test node`, `test network`, `get ip list`,
`get ... pool`, `get system threads`, `test cluster databases`, `get metadata info`).

Everything here takes and returns plain data, so it is tested without a node or a reactor;
the few functions that touch the machine (`interface_addresses`, `check_directories`) block
briefly and are run in the reactor's thread pool by the commands.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
from typing import Any, Iterable, Sequence

from anylog_tw.base.errors import OptionError
from anylog_tw.base.timefmt import format_utc
from anylog_tw.metadata import policies
from anylog_tw.metadata.values import policy_type

NODE_TYPES = ("master", "operator", "query", "publisher")

OK, WARNING, FAILED = "ok", "warning", "failed"

# --- addresses of this machine ------------------------------------------------------------------

_SIOCGIFADDR = 0x8915


def parse_if_inet6(text: str) -> list[tuple[str, str, str]]:
    """(interface, "IPv6", address) from the text of /proc/net/if_inet6."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            address = str(ipaddress.IPv6Address(int(fields[0], 16)))
        except ValueError:
            continue
        out.append((fields[5], "IPv6", address))
    return out


def parse_fib_trie(text: str) -> list[str]:
    """The local IPv4 addresses (`/32 host LOCAL`) of /proc/net/fib_trie, each once, in order."""
    found: list[str] = []
    last = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|-- "):
            last = s[4:].strip()
        elif s.startswith("/32 host LOCAL") and last and last not in found:
            found.append(last)
    return found


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _ipv4_of(name: str) -> str | None:
    """The primary IPv4 address of an interface (Linux ioctl), or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None
    finally:
        s.close()


def interface_addresses() -> list[tuple[str, str, str]]:
    """(interface, family, address) of every address of this machine. (Blocking: call in a thread.)

    The interfaces' primary IPv4 addresses come from the kernel, the other local IPv4 addresses
    from /proc/net/fib_trie (interface unknown: "-"), IPv6 from /proc/net/if_inet6; a system
    without those falls back to what the host name resolves to.
    """
    out: list[tuple[str, str, str]] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    for name in names:
        address = _ipv4_of(name)
        if address:
            out.append((name, "IPv4", address))
    seen = {a for _, _, a in out}
    out += [("-", "IPv4", a) for a in parse_fib_trie(_read("/proc/net/fib_trie")) if a not in seen]
    out += parse_if_inet6(_read("/proc/net/if_inet6"))
    if not out:
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None)
        except OSError:
            infos = []
        for family, _, _, _, sockaddr in infos:
            entry = ("-", "IPv6" if family == socket.AF_INET6 else "IPv4", sockaddr[0])
            if entry not in out:
                out.append(entry)
    return out


def ip_rows(addresses: Sequence[tuple[str, str, str]], dictionary: dict[str, str]) -> list[list[str]]:
    """Rows of `get ip list`: each address, and which dictionary keys (ip, external_ip) name it.

    A dictionary address that no interface has (a public address behind NAT, a typo) gets a row
    of its own, so the user sees that it is not local.
    """
    keys = ("ip", "external_ip")
    rows = []
    for iface, family, address in addresses:
        named = [k for k in keys if dictionary.get(k) == address]
        rows.append([iface, family, address, ", ".join(named)])
    local = {a for _, _, a in addresses}
    for k in keys:
        value = dictionary.get(k)
        if value and value not in local:
            row = next((r for r in rows if r[0] == "(not local)" and r[2] == value), None)
            if row is not None:
                row[3] += f", {k}"
            else:
                rows.append(["(not local)", _family(value), value, k])
    return rows


def _family(text: str) -> str:
    try:
        return f"IPv{ipaddress.ip_address(text).version}"
    except ValueError:
        return "name"


# --- work directories ---------------------------------------------------------------------------


def check_directories(dirs: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(key, path, problem) for each directory that is missing or not writable. (Blocking.)"""
    problems = []
    for key, path in dirs:
        if not path:
            problems.append((key, "", "not set in the dictionary"))
        elif not os.path.isdir(path):
            problems.append((key, path, "missing (run 'create work directories')"))
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append((key, path, "not writable by this process"))
    return problems


# --- the nodes of the metadata ------------------------------------------------------------------


def node_targets(store: Any, types: Sequence[str] = NODE_TYPES, only: str | None = None) -> list[dict]:
    """The node policies to test: [{"address", "type", "name"}], in type order then ledger order.

    `only` keeps one node type (`master` ...) or one `ip:port`.  A policy without an address is
    kept (its row says so); the same address named by two policies is asked once by the caller.
    """
    out = []
    for ptype in types:
        for p in store.of_type(ptype):
            address = policies.ip_port(p) or ""
            if only and only not in (ptype, address):
                continue
            out.append({"address": address, "type": policy_type(p), "name": str(policies.attr(p, "name", ""))})
    return out


def parse_with(args: list[str], allow_version: bool) -> str | None:
    """The `with <type>|<ip:port>` words of `test network` (and `version` of the metadata form)."""
    words = list(args)
    if allow_version and words and words[0].lower() == "version":
        words = words[1:]
    if not words:
        return None
    if len(words) == 2 and words[0].lower() == "with":
        target = words[1].lower() if words[1].lower() in NODE_TYPES else words[1]
        if ":" not in target and target not in NODE_TYPES:
            raise OptionError(f"'with {words[1]}': name a node type ({', '.join(NODE_TYPES)}) or an ip:port")
        return target
    raise OptionError(f"unexpected '{' '.join(words)}': write 'with <node type>' or 'with <ip:port>'")


def network_rows(targets: Sequence[dict], answers: dict[str, tuple], ours: str,
                 metadata: bool) -> tuple[list[str], list[list]]:
    """The table of `test network [metadata]`.

    `answers` maps each address asked to (reply text or None, why not, ms, their metadata version
    or "(why not)" or "").  Status is AnyLog's "+" for a node that answered.
    """
    rows = []
    for t in targets:
        row = [t["address"], t["type"], t["name"]]
        if not t["address"]:
            row += ["", "no ip and port in its policy", "", "", ""]
        else:
            text, why, ms, theirs = answers[t["address"]]
            same = "" if not theirs or theirs.startswith("(") else "yes" if theirs == ours else "NO"
            row += ["+" if text is not None else "", text if text is not None else why, ms, theirs, same]
        rows.append(row if metadata else row[:6])
    columns = ["Address", "Node Type", "Node Name", "Status", "Reply", "ms"]
    return (columns + ["Metadata Version", "Same"] if metadata else columns), rows


# --- the metadata ---------------------------------------------------------------------------------


def file_facts(path: str) -> tuple[int, float] | None:
    """(size, modified) of a file, or None when it is missing. (Blocking.)"""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime




def metadata_info(ledger: Any, facts: tuple[int, float] | None, sync: Any) -> dict[str, Any]:
    """`get metadata info` as data: the ledger's version and counts, its file, and its source."""
    info: dict[str, Any] = {"Version": ledger.version, "Policies": len(ledger)}
    info["Policies by type"] = {t: len(ledger.of_type(t)) for t in sorted(ledger.types())}
    info["Local policies"] = len(ledger.local_policies())
    info["Skipped lines"] = len(ledger.load_errors)
    info["Ledger file"] = ledger.path
    info["File size"] = facts[0] if facts else "missing (an empty ledger)"
    info["File modified"] = format_utc(facts[1]) if facts else ""
    if sync is None:
        info["Source"] = "file (no synchronizer: local inserts only)"
    else:
        info["Source"] = f"{sync.source} {sync.connection}".strip()
        info["Sync status"] = sync.state
        info["Master version"] = sync.version
        info["Last load"] = format_utc(sync.last_load_at)
        info["Last failure"] = sync.last_failure
    return info


# --- thread pools and threads -------------------------------------------------------------------


def pool_stats(pool: Any) -> dict[str, int]:
    """What a twisted ThreadPool is doing: its bounds, threads alive, busy, idle, work waiting."""
    if pool is None:
        return {"Min": 0, "Max": 0, "Threads": 0, "Busy": 0, "Idle": 0, "Waiting": 0}
    return {"Min": pool.min, "Max": pool.max, "Threads": pool.workers, "Busy": len(pool.working),
            "Idle": len(pool.waiters), "Waiting": pool.q.qsize()}


def thread_role(name: str, is_reactor: bool) -> str:
    if is_reactor:
        return "reactor (all network I/O, every command)"
    if name.startswith("PoolThread-"):
        pool = name[len("PoolThread-"):].rsplit("-", 1)[0]
        if pool.startswith("twisted.internet.reactor"):
            return "reactor thread pool (blocking work)"
        if pool.startswith(("sqlite-", "psql-")):
            dbms = pool.split("-", 1)[1]
            if dbms.endswith("-read"):
                return f"dbms {dbms[:-5]} (reads)"
            return f"dbms {dbms} (writes, in order)"
        return f"pool {pool}"
    return ""


def thread_rows(threads: Iterable[Any], reactor_ident: int | None) -> list[list]:
    """Rows of `get system threads`: name, id, daemon, role."""
    rows = []
    for t in threads:
        rows.append([t.name, t.native_id, t.daemon, thread_role(t.name, t.ident == reactor_ident)])
    rows.sort(key=lambda r: (not r[3].startswith("reactor ("), r[0]))
    return rows


# --- comparing members ----------------------------------------------------------------------------


def presence_grid(per_member: Sequence[tuple[str, set[str] | str]]) -> tuple[list[str], list[list[str]]]:
    """`test cluster databases`: one row per name, one column per member, "+" where it has it.

    `per_member` is [(column label, names it has, or the text of why it did not answer)].
    A member that did not answer shows "?" in every row and its reason in a last row.
    """
    names = sorted({n for _, have in per_member if not isinstance(have, str) for n in have})
    rows = []
    for name in names:
        row = [name]
        for _, have in per_member:
            row.append("?" if isinstance(have, str) else "+" if name in have else "")
        rows.append(row)
    if any(isinstance(have, str) for _, have in per_member):
        rows.append(["(no answer)"] + [have if isinstance(have, str) else "" for _, have in per_member])
    return ["DBMS"] + [label for label, _ in per_member], rows
