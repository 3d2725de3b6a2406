"""One command being run (`Call`): the matched command, its caller, and its arguments read for it.

Handlers take a `Call`.  It reads the arguments with the caller's substitution: `!key` from the
dictionary, and `$VAR` from the node's environment only for admin and owner callers, as the
environment holds secrets (`$ANYLOG_NETWORK_KEY`) that a reader must not echo back.
"""

from __future__ import annotations

from typing import Any

from anylog_tw.base import grammar
from anylog_tw.base.errors import GrammarError, OptionError
from anylog_tw.base.grammar import Token
from anylog_tw.base.origin import Origin
from anylog_tw.base.registry import Command, read_options, token_text


class Call:
    """One command being run: the node, the matched command, and its arguments read for it."""

    __slots__ = ("node", "command", "tokens", "text", "origin", "grant", "args", "opts", "given", "substitute", "env")

    def __init__(self, node, command: Command, tokens: tuple[Token, ...], text: str, origin: Origin):
        self.node = node
        self.command = command
        self.tokens = tokens  # what follows the command words, unresolved
        self.text = text
        self.origin = origin
        self.grant = origin.grant  # what the caller holds (one of registry.GRANTS)
        self.args: list[str] = []
        self.opts: dict[str, Any] = {}
        self.given: set[str] = set()
        self.substitute = node.substituter(origin)  # `!key` and, for admin and owner only, `$VAR`
        self.env = node.environ.get if origin.expands_env else no_environment
        if command.raw or not tokens:
            if not command.raw:
                self._check_nargs()
                self.opts, _ = read_options(command, None, self.substitute)
            return
        positional, clause = grammar.split_where(tokens)
        self.args = [token_text(t, self.substitute) for t in positional]
        self._check_nargs()
        self.opts, self.given = read_options(command, clause, self.substitute)

    def _check_nargs(self) -> None:
        low, high = self.command.nargs
        n = len(self.args)
        if n < low or (high is not None and n > high):
            if high == 0:
                extra = " ".join(self.args)
                raise OptionError(f"'{self.command.name}' takes no argument '{extra}' (usage: {self.command.usage})")
            raise OptionError(f"'{self.command.name}': wrong number of arguments (usage: {self.command.usage})")

    @property
    def remainder(self) -> str:
        """The text after the command words, as typed (for commands that carry a command)."""
        return self.text[self.tokens[0].start:] if self.tokens else ""

    @property
    def wants_json(self) -> bool:
        return self.opts.get("format") == "json"



def no_environment(name: str) -> str:
    raise GrammarError(f"'${name}': environment variables are expanded only for admin and owner callers")
