"""The node's page and its login page, rendered on the server with twisted.web.template.

The first answer already holds everything (processes, tables, peers, the network picture), so the
page is useful before any script runs and its first render costs one round trip; `app.js` then
keeps it current.  Templates are XML files shipped in the package (no build step).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from twisted.python.filepath import FilePath
from twisted.web.template import Comment, Element, Tag, XMLFile, flattenString, renderer, tags

DOCTYPE = b"<!DOCTYPE html>\n"
NETMAP_MARK = "anylog-netmap"


def package_dir(name: str) -> FilePath:
    """A folder shipped with this package (static assets, templates)."""
    return FilePath(str(resources.files("anylog_tw.front.web") / name))


TEMPLATES = package_dir("templates")


def _sparkline() -> Any:
    """A placeholder the script fills with the table's last hour (kept empty on the server)."""
    return Tag("svg", attributes={"class": "spark", "width": "120", "height": "20", "viewBox": "0 0 120 20",
                                  "xmlns": "http://www.w3.org/2000/svg"})


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"up {s // 86400}d {s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PageElement(Element):
    """The node's page, filled with the data of its first render."""

    loader = XMLFile(TEMPLATES.child("page.xml"))

    def __init__(self, data: dict):
        Element.__init__(self)
        self.data = data

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
        for t in self.data.get("tables_rows") or []:
            key = f"{t['dbms']}.{t['table']}"
            tag(tags.tr(tags.td(t["dbms"]), tags.td(t["table"]), tags.td(f"{t['rows']:,}", class_="num"),
                        tags.td(f"{t['files']:,}", class_="num"),
                        tags.td(f"{t['errors']:,}", class_="num error" if t["errors"] else "num"),
                        tags.td(f"{t['rate_minute']:g}", class_="num"), tags.td(_sparkline()),
                        tags.td(t.get("last", "")), **{"data-table": key}))
        if not self.data.get("tables_rows"):
            tag(tags.tr(tags.td("No tables yet: data sent to this node (PUT, a watch dir, a message client) "
                                "shows here.", colspan="8", class_="muted"), class_="empty"))
        return tag

    @renderer
    def peers(self, request, tag):
        peers = self.data.get("peers")
        if isinstance(peers, dict):
            return tag(tags.tr(tags.td(str(peers.get("error", "")), colspan="8", class_="error")))
        for p in peers or []:
            state = str(p.get("Status", ""))
            tag(tags.tr(tags.td(str(p.get("Peer", ""))), tags.td(str(p.get("Name", ""))),
                        tags.td(str(p.get("Direction", ""))),
                        tags.td(state, class_="running" if state == "active" else "off"),
                        tags.td(str(p.get("Requests Out", "")), class_="num"),
                        tags.td(str(p.get("Requests In", "")), class_="num"),
                        tags.td(str(p.get("Failures", "")), class_="num"), tags.td(str(p.get("Last Error", "")))))
        if not peers:
            tag(tags.tr(tags.td("No peer connections yet.", colspan="8", class_="muted"), class_="empty"))
        return tag

    @renderer
    def network(self, request, tag):
        """A marker `render` replaces with the picture: the SVG is built escaped by `netmap`, and
        parsing it back into template tags only to flatten them again cost half the page's time."""
        net = self.data.get("network") or {}
        if net.get("error"):
            tag(tags.p(net["error"], class_="error"))
        return tag(Comment(NETMAP_MARK))

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
    if isinstance(element, PageElement):
        svg = (element.data.get("network") or {}).get("svg") or ""
        body = body.replace(b"<!--" + NETMAP_MARK.encode() + b"-->", svg.encode("utf-8"), 1)
    return DOCTYPE + body
