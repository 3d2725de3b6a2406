"""The command registry: every command declared once, with the help that describes it.

`@command("get status", usage=..., text=..., examples=..., keywords=..., options=...)` adds an
entry; dispatch, `help`, the REST method table and option checking all read the same entry, so
a command cannot exist without its documentation or drift away from it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import GrammarError, OptionError, UnknownCommand
from anylog_tw.base.grammar import EQ, GROUP, JSON, STRING, WORD, Token

# Option kinds and how their text becomes a value.
_CONVERT: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": values.parse_bool,
    "seconds": values.parse_seconds,
    "size": values.parse_size,
    "list": values.split_list,
    "json": str,
    "date": str,  # kept as text: only the caller knows "now"
}


@dataclass(frozen=True)
class Option:
    """One `where` option of a command."""

    name: str
    kind: str = "str"
    default: Any = None
    required: bool = False
    repeat: bool = False  # may be given several times; the value is then a list
    choices: tuple[str, ...] = ()
    help: str = ""

    def convert(self, text: str) -> Any:
        if self.choices and text.lower() not in self.choices:
            raise OptionError(f"option '{self.name}' is {text!r}; it must be one of: {', '.join(self.choices)}")
        try:
            value = _CONVERT[self.kind](text)
        except GrammarError as e:
            raise OptionError(f"option '{self.name}': {e}") from None
        except ValueError:
            raise OptionError(f"option '{self.name}' must be {_KIND_NAMES[self.kind]}, not {text!r}") from None
        return value.lower() if self.choices else value


_KIND_NAMES = {"int": "a whole number", "float": "a number", "str": "text", "json": "JSON", "date": "a date"}

# What a command needs from its caller, weakest first: `read` (status, get, queries), `write` (data
# in), `admin` (process control, paths, keys) and `owner` (the Python manhole).
GRANTS = ("read", "write", "admin", "owner")



GRANT_RANK = {grant: rank for rank, grant in enumerate(GRANTS)}


def grant_allows(held: str, needed: str) -> bool:
    """Whether a caller holding `held` may run what needs `needed` (each grant includes the weaker)."""
    return GRANT_RANK[held] >= GRANT_RANK[needed]


def weaker(a: str, b: str) -> str:
    """The weaker of two grants: what a caller holds when two limits apply (a carried grant, a cap)."""
    return a if GRANT_RANK[a] <= GRANT_RANK[b] else b


def command_grant(cmd: "Command") -> str:
    """The grant a command needs (every registered command declares one: `Registry.add` refuses the rest)."""
    return cmd.grant or "owner"  # unreachable for a registered command; closed rather than open


FORMAT = Option("format", choices=("json", "table"), default="table", help="json or table")


@dataclass(frozen=True)
class Command:
    name: str
    handler: Callable
    usage: str
    text: str
    examples: tuple[str, ...]
    keywords: tuple[str, ...]
    options: tuple[Option, ...] = ()
    nargs: tuple[int, int | None] = (0, 0)
    raw: bool = False  # the handler reads the tokens itself (a language of its own)
    readonly: bool = False  # does not change the node: REST GET, and allowed in read-only mode
    grant: str | None = None  # what the caller must hold: read, write, admin or owner (see GRANTS)
    link: str = ""
    words: tuple[str, ...] = field(default=(), compare=False)

    def option(self, name: str) -> Option | None:
        for opt in self.options:
            if opt.name == name:
                return opt
        return None


class Registry:
    def __init__(self) -> None:
        self._by_words: dict[tuple[str, ...], Command] = {}
        self._max_words = 1

    def command(self, name: str, *, usage: str, text: str, examples: Iterable[str], keywords: Iterable[str],
                options: Iterable[Option] = (), nargs: tuple[int, int | None] = (0, 0), raw: bool = False,
                readonly: bool = False, grant: str | None = None, link: str = "") -> Callable:
        """Decorator: register the function as the handler of `name`."""

        def register(handler: Callable) -> Callable:
            self.add(Command(name=name, handler=handler, usage=usage, text=text, examples=tuple(examples),
                             keywords=tuple(keywords), options=tuple(options), nargs=nargs, raw=raw,
                             readonly=readonly, grant=grant, link=link, words=tuple(name.split())))
            return handler

        return register

    def add(self, cmd: Command) -> None:
        """Register `cmd`; a command without a grant is refused when its module loads, so no command
        can be forgotten and left open (or silently closed)."""
        if cmd.grant not in GRANTS:
            what = "declares no grant" if cmd.grant is None else f"has grant {cmd.grant!r}"
            raise ValueError(f"command {cmd.name!r} {what}: give it grant= one of {', '.join(GRANTS)} "
                             f"(read: looks; write: data in; admin: processes, paths, keys; owner: the Python prompt)")
        if cmd.words in self._by_words:
            raise ValueError(f"command {cmd.name!r} is registered twice")
        self._by_words[cmd.words] = cmd
        self._max_words = max(self._max_words, len(cmd.words))

    def __iter__(self):
        return iter(sorted(self._by_words.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._by_words)

    def get(self, name: str) -> Command | None:
        return self._by_words.get(tuple(name.lower().split()))

    def match(self, tokens: tuple[Token, ...] | list[Token]) -> tuple[Command, int] | None:
        """The longest registered command that the tokens start with, and how many words it took."""
        words = []
        for tok in tokens[: self._max_words]:
            if tok.kind != WORD:
                break
            words.append(tok.value.lower())
        for k in range(len(words), 0, -1):
            cmd = self._by_words.get(tuple(words[:k]))
            if cmd is not None:
                return cmd, k
        return None

    def starts_command(self, tokens: tuple[Token, ...] | list[Token]) -> bool:
        return self.match(tokens) is not None

    def with_prefix(self, words: Iterable[str]) -> list[Command]:
        prefix = tuple(w.lower() for w in words)
        return [c for c in self if c.words[: len(prefix)] == prefix]

    def unknown(self, tokens: list[Token]) -> UnknownCommand:
        """The error for a line that names no command, with the nearest commands as hints."""
        words = []
        for t in tokens[:8]:
            if t.kind != WORD or t.value.lower() == "where":
                break
            words.append(t.value.lower())
        first = words[0] if words else (tokens[0].value if tokens else "")
        names = [c.name for c in self]
        typed = " ".join(words)
        near = difflib.get_close_matches(typed, names, n=3, cutoff=0.6)
        for c in self.with_prefix(words[:2] if len(words) > 1 else words[:1]):
            if c.name not in near and len(near) < 5:
                near.append(c.name)
        if not near:
            near = difflib.get_close_matches(first, sorted({c.words[0] for c in self}), n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(near)}?" if near else ""
        return UnknownCommand(f"unknown command '{typed or first}'{hint} (try 'help')")


REGISTRY = Registry()
command = REGISTRY.command


# --- reading a call's arguments ---------------------------------------------------------------


def token_text(tok: Token, sub: Callable[[str], str]) -> str:
    """One token's value with dictionary references resolved (quoted strings are taken as written)."""
    if tok.kind == WORD:
        return sub(tok.value)
    if tok.kind == STRING or tok.kind == JSON:
        return tok.value
    if tok.kind == GROUP:
        return "(" + sub(tok.value) + ")"
    return tok.value  # EQ


def tokens_text(tokens: list[Token], sub: Callable[[str], str]) -> str:
    return " ".join(token_text(t, sub) for t in tokens)


def read_options(cmd: Command, clause: list[Token] | None, sub: Callable[[str], str]) -> tuple[dict, set]:
    """Check a where clause against the command's options: (values with defaults, names given)."""
    values: dict[str, Any] = {}
    given: set[str] = set()
    if clause is not None:
        for key, value_tokens in grammar.parse_where(clause):
            opt = cmd.option(key)
            if opt is None:
                valid = ", ".join(o.name for o in cmd.options) or "none"
                raise OptionError(f"'{cmd.name}' has no option '{key}' (valid options: {valid})")
            value = opt.convert(tokens_text(value_tokens, sub))
            if opt.repeat:
                values.setdefault(key, []).append(value)
            elif key in given:
                raise OptionError(f"option '{key}' is given twice")
            else:
                values[key] = value
            given.add(key)
    for opt in cmd.options:
        if opt.name not in values:
            if opt.required:
                raise OptionError(f"'{cmd.name}' needs option '{opt.name}' (usage: {cmd.usage})")
            values[opt.name] = [] if opt.repeat and opt.default is None else opt.default
    return values, given


def is_assignment(tokens: tuple[Token, ...]) -> bool:
    return len(tokens) >= 2 and tokens[0].kind == WORD and tokens[1].kind == EQ


__all__ = ["Command", "Option", "Registry", "REGISTRY", "command", "FORMAT", "read_options", "token_text",
           "tokens_text", "is_assignment", "EQ"]
