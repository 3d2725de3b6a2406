"""`help`, generated from the registry: the same entries that dispatch commands describe them."""

from __future__ import annotations

from collections import Counter

from anylog_tw.base.errors import NotFound
from anylog_tw.base.registry import Command, command, command_grant
from anylog_tw.base.reply import Reply


def _summary(cmd: Command) -> str:
    first = cmd.text.split(". ")[0].rstrip(".")
    return first if len(first) <= 100 else first[:97] + "..."


# What each grant lets a caller do, as the help page of a command says it.
GRANT_TEXT = {
    "read": "read: looks only (status, get, queries); every caller that may reach the node",
    "write": "write: puts data in (files into the watch dir, policies, buffers); REST writers and peers",
    "admin": "admin: processes, paths, keys and the dictionary's directories; the console or a REST admin",
    "owner": "owner: the node's own prompt (stdin) or its startup scripts only",
}


def _rows(commands) -> list[tuple[str, str, str]]:
    return [(c.name, command_grant(c), _summary(c)) for c in commands]


def _indent(lines) -> str:
    return "\n".join("        " + line for line in lines)


def describe(cmd: Command, section: str | None = None) -> str:
    """The help page of one command: Usage, Explanation, Examples, Index (and Options)."""
    sections = {
        "usage": ("Usage", [cmd.usage]),
        "text": ("Explanation", [cmd.text]),
        "options": ("Options", [f"{o.name} ({o.kind}{', default ' + str(o.default) if o.default not in (None, '') else ''}"
                                f"{', required' if o.required else ''}{', repeatable' if o.repeat else ''})"
                                f"{': ' + o.help if o.help else ''}" for o in cmd.options]),
        "grant": ("Grant", [GRANT_TEXT[command_grant(cmd)]]),
        "example": ("Examples", list(cmd.examples)),
        "index": ("Index", [", ".join(cmd.keywords)]),
    }
    if section:
        return "\n".join(sections[section][1])
    parts = []
    for key in ("usage", "text", "grant", "options", "example", "index"):
        title, lines = sections[key]
        if lines:
            parts.append(f"{title}:\n{_indent(lines)}")
    if cmd.link:
        parts.append(f"Link:\n{_indent([cmd.link])}")
    return "\n".join(parts)


@command("help", grant="read", usage="help [command | prefix | index [keyword] | example <command> | text <command> | grant <command>]",
         text="Show the commands. 'help' lists them all, 'help <prefix>' those that start with it (e.g. 'help get'), "
              "'help <command>' its usage, explanation, the grant a caller needs, examples and index keywords, "
              "'help grant <command>' only the grant, 'help index' the keywords "
              "and 'help index <keyword>' the commands filed under it.",
         examples=("help", "help get", "help get status", "help index", "help index monitor",
                   "help example get processes"),
         keywords=("cli", "help"), nargs=(0, None), readonly=True)
def help_(call):
    registry = call.node.registry
    words = [w.lower() for w in call.args]
    if not words:
        return Reply.of_table(("Command", "Grant", "Summary"), _rows(registry),
                              title="Commands (help <command> for details; Grant: what a caller must hold):")
    if words[0] == "index":
        return _index(registry, " ".join(words[1:]))
    if words[0] in ("example", "text", "usage", "grant") and len(words) > 1:
        cmd = registry.get(" ".join(words[1:]))
        if cmd is None:
            raise registry.unknown(list(call.tokens[1:]))
        return describe(cmd, "example" if words[0] == "example" else words[0])
    cmd = registry.get(" ".join(words))
    if cmd is not None:
        return describe(cmd)
    matches = registry.with_prefix(words)
    if matches:
        return Reply.of_table(("Command", "Grant", "Summary"), _rows(matches))
    raise registry.unknown(list(call.tokens))


def _index(registry, keyword: str) -> Reply:
    if not keyword:
        counts = Counter(k for c in registry for k in c.keywords)
        return Reply.of_table(("Keyword", "Commands"), sorted(counts.items()),
                              title="Index keywords (help index <keyword>):")
    rows = _rows(c for c in registry if any(k.startswith(keyword) for k in c.keywords))
    if not rows:
        known = sorted({k for c in registry for k in c.keywords})
        raise NotFound(f"no command is filed under '{keyword}' (keywords: {', '.join(known)})")
    return Reply.of_table(("Command", "Grant", "Summary"), rows, title=f"Commands filed under '{keyword}':")
