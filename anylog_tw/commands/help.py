"""`help`, generated from the registry: the same entries that dispatch commands describe them."""

from __future__ import annotations

from collections import Counter

from anylog_tw.base.errors import NotFound
from anylog_tw.base.registry import Command, command
from anylog_tw.base.reply import Reply


def _summary(cmd: Command) -> str:
    first = cmd.text.split(". ")[0].rstrip(".")
    return first if len(first) <= 100 else first[:97] + "..."


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
        "example": ("Examples", list(cmd.examples)),
        "index": ("Index", [", ".join(cmd.keywords)]),
    }
    if section:
        return "\n".join(sections[section][1])
    parts = []
    for key in ("usage", "text", "options", "example", "index"):
        title, lines = sections[key]
        if lines:
            parts.append(f"{title}:\n{_indent(lines)}")
    if cmd.link:
        parts.append(f"Link:\n{_indent([cmd.link])}")
    return "\n".join(parts)


@command("help", usage="help [command | prefix | index [keyword] | example <command> | text <command>]",
         text="Show the commands. 'help' lists them all, 'help <prefix>' those that start with it (e.g. 'help get'), "
              "'help <command>' its usage, explanation, examples and index keywords, 'help index' the keywords "
              "and 'help index <keyword>' the commands filed under it.",
         examples=("help", "help get", "help get status", "help index", "help index monitor",
                   "help example get processes"),
         keywords=("cli", "help"), nargs=(0, None), readonly=True)
def help_(call):
    registry = call.node.registry
    words = [w.lower() for w in call.args]
    if not words:
        return Reply.of_table(("Command", "Summary"), [(c.name, _summary(c)) for c in registry],
                              title="Commands (help <command> for details):")
    if words[0] == "index":
        return _index(registry, " ".join(words[1:]))
    if words[0] in ("example", "text", "usage") and len(words) > 1:
        cmd = registry.get(" ".join(words[1:]))
        if cmd is None:
            raise registry.unknown(list(call.tokens[1:]))
        return describe(cmd, "example" if words[0] == "example" else words[0])
    cmd = registry.get(" ".join(words))
    if cmd is not None:
        return describe(cmd)
    matches = registry.with_prefix(words)
    if matches:
        return Reply.of_table(("Command", "Summary"), [(c.name, _summary(c)) for c in matches])
    raise registry.unknown(list(call.tokens))


def _index(registry, keyword: str) -> Reply:
    if not keyword:
        counts = Counter(k for c in registry for k in c.keywords)
        return Reply.of_table(("Keyword", "Commands"), sorted(counts.items()),
                              title="Index keywords (help index <keyword>):")
    rows = [(c.name, _summary(c)) for c in registry if any(k.startswith(keyword) for k in c.keywords)]
    if not rows:
        known = sorted({k for c in registry for k in c.keywords})
        raise NotFound(f"no command is filed under '{keyword}' (keywords: {', '.join(known)})")
    return Reply.of_table(("Command", "Summary"), rows, title=f"Commands filed under '{keyword}':")
