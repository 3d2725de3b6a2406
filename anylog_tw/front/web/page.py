"""The node's page and its login page, rendered on the server with twisted.web.template.

The first answer already holds everything (processes, tables, peers, the network picture), so the
page is useful before any script runs and its first render costs one round trip; `app.js` then
keeps it current.  Templates are XML files shipped in the package (no build step).
"""

from __future__ import annotations

from html import escape
from importlib import resources

from twisted.python.filepath import FilePath
from twisted.web.template import Comment, Element, XMLFile, flattenString, renderer, tags

DOCTYPE = b"<!DOCTYPE html>\n"
MARK = "anylog-fragment:"
SPARK = '<svg class="spark" width="120" height="20" viewBox="0 0 120 20" xmlns="http://www.w3.org/2000/svg"></svg>'


def _td(value, cls: str = "") -> str:
    return f'<td class="{cls}">{escape(str(value))}</td>' if cls else f"<td>{escape(str(value))}</td>"


def table_row(t: dict) -> str:
    """One row of the tables section, as escaped HTML (the script updates the same cells)."""
    key = escape(f"{t['dbms']}.{t['table']}")
    errors = t["errors"]
    cells = [_td(t["dbms"]), _td(t["table"]), _td(f"{t['rows']:,}", "num"), _td(f"{t['files']:,}", "num"),
             _td(f"{errors:,}", "num error" if errors else "num"), _td(f"{t['rate_minute']:g}", "num"),
             f"<td>{SPARK}</td>", _td(t.get("last", ""))]
    return f'<tr data-table="{key}">{"".join(cells)}</tr>'


def peer_row(p: dict) -> str:
    state = str(p.get("Status", ""))
    cells = [_td(p.get("Peer", "")), _td(p.get("Name", "")), _td(p.get("Direction", "")),
             _td(state, "running" if state == "active" else "off"), _td(p.get("Requests Out", ""), "num"),
             _td(p.get("Requests In", ""), "num"), _td(p.get("Failures", ""), "num"), _td(p.get("Last Error", ""))]
    return f"<tr>{''.join(cells)}</tr>"


def package_dir(name: str) -> FilePath:
    """A folder shipped with this package (static assets, templates)."""
    return FilePath(str(resources.files("anylog_tw.front.web") / name))


TEMPLATES = package_dir("templates")
STYLE = package_dir("static").child("app.css").getContent().decode("utf-8")


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"up {s // 86400}d {s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PageElement(Element):
    """The node's page, filled with the data of its first render."""

    loader = XMLFile(TEMPLATES.child("page.xml"))

    def __init__(self, data: dict):
        Element.__init__(self)
        self.data = data
        self.fragments: dict[str, str] = {}

    @renderer
    def page(self, request, tag):
        status = self.data.get("status") or {}
        tables = self.data.get("tables_rows") or []
        example = tables[0]["table"] if tables else "<table>"
        return tag.fillSlots(node=self.data.get("node", ""), csrf=self.data.get("csrf", ""),
                             status=str(status.get("status", status.get("error", ""))),
                             uptime=_hms(status["uptime"]) if isinstance(status.get("uptime"), (int, float)) else "",
                             version=f"v{status['version']}" if status.get("version") else "",
                             example_table=example)

    @renderer
    def style(self, request, tag):
        """The page's style inlined: nothing to fetch before the first paint (the charts' style comes with them)."""
        return tag(self._splice("style", STYLE))

    @renderer
    def logout(self, request, tag):
        user = self.data.get("user")
        if not user:
            return ""
        return tags.form(tags.span(user, class_="muted"), " ",
                         tags.input(type="hidden", name="csrf", value=self.data.get("csrf", "")),
                         tags.button("Log out", type="submit"), id="logout-form", method="post", action="/web/logout")

    @renderer
    def processes(self, request, tag):
        processes = self.data.get("processes")
        if not isinstance(processes, dict) or "error" in processes and len(processes) == 1:
            return tag(tags.tr(tags.td(str((processes or {}).get("error", "")), colspan="3", class_="error")))
        for name, info in processes.items():
            state = info.get("Status", "")
            tag(tags.tr(tags.td(name), tags.td(state, class_="running" if state == "Running" else "off"),
                        tags.td(info.get("Details", "")), **{"data-process": name}))
        return tag

    @renderer
    def tables(self, request, tag):
        rows = self.data.get("tables_rows") or []
        if not rows:
            return tag(tags.tr(tags.td("No tables yet: data sent to this node (PUT, a watch dir, a message client) "
                                       "shows here.", colspan="8", class_="muted"), class_="empty"))
        return tag(self._splice("tables", "".join(table_row(t) for t in rows)))

    @renderer
    def peers(self, request, tag):
        peers = self.data.get("peers")
        if isinstance(peers, dict):
            return tag(tags.tr(tags.td(str(peers.get("error", "")), colspan="8", class_="error")))
        if not peers:
            return tag(tags.tr(tags.td("No peer connections yet.", colspan="8", class_="muted"), class_="empty"))
        return tag(self._splice("peers", "".join(peer_row(p) for p in peers)))

    @renderer
    def network(self, request, tag):
        net = self.data.get("network") or {}
        if net.get("error"):
            tag(tags.p(net["error"], class_="error"))
        return tag(self._splice("network", net.get("svg") or ""))

    def _splice(self, name: str, markup: str) -> Comment:
        """A marker that `render` replaces with markup built (and escaped) by a pure function.

        The rows of 100 tables and the network picture are most of the page; built as text they
        cost a millisecond, through the template flattener twenty (bench/web.py).
        """
        self.fragments[name] = markup
        return Comment(f"{MARK}{name}")

    @renderer
    def dbms_options(self, request, tag):
        tables = self.data.get("tables_rows") or []
        chosen = tables[0]["dbms"] if tables else None
        names = sorted(self.data.get("databases") or [], key=lambda n: (n in ("almgm", "system_query"), n))
        for name in names:
            option = tags.option(name, value=name)
            if name == chosen:
                option(selected="selected")
            tag(option)
        if not self.data.get("databases"):
            tag(tags.option("(no dbms connected)", value=""))
        return tag


class LoginElement(Element):
    """The login form, shown instead of the page when the REST server has credentials."""

    loader = XMLFile(TEMPLATES.child("login.xml"))

    def __init__(self, node: str, message: str = "", token_only: bool = False):
        Element.__init__(self)
        self.node = node
        self.message = message
        self.token_only = token_only

    @renderer
    def login(self, request, tag):
        return tag.fillSlots(node=self.node, message=self.message,
                             user_label="user (any, with a token)" if self.token_only else "user",
                             password_label="token" if self.token_only else "password or token")


async def render(element: Element) -> bytes:
    body = await flattenString(None, element)
    for name, markup in getattr(element, "fragments", {}).items():
        body = body.replace(f"<!--{MARK}{name}-->".encode(), markup.encode("utf-8"), 1)
    return DOCTYPE + body
