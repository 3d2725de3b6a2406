"""The AnyLog command language, as pure functions over text.

Nothing here knows about the node, the reactor or the registry: the tokenizer turns a line into
tokens, the where-clause parser pairs keys with value tokens, and the value helpers read the
typed values AnyLog users write (`30 seconds`, `-3d`, `10KB`, `true`).  Dictionary references
(`!key`, `$VAR`) are resolved late, by `substitute`, so that a command which carries another
command (`schedule ... task <cmd>`, `run client (...) <cmd>`) can keep its text untouched.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Callable, Iterator, NamedTuple

from anylog_tw.base.errors import GrammarError
from anylog_tw.base.values import parse_bool

WORD = "word"
STRING = "string"
EQ = "eq"
GROUP = "group"  # ( ... ): value is the inner text, untouched
JSON = "json"  # { ... }: value is the whole object text


class Token(NamedTuple):
    kind: str
    value: str
    start: int  # offset of the token in the source line (for error messages and remainders)
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == WORD and self.value.lower() in words


_SPACE = " \t\r\n"
_OPERATOR_BEFORE_EQ = "=!<>"


def _scan_quoted(text: str, i: int) -> int:
    """Index just past the closing quote of the string that opens at `i`."""
    quote = text[i]
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\" and j + 1 < n:
            j += 2
            continue
        if c == quote:
            return j + 1
        j += 1
    raise GrammarError(f"unterminated quoted string starting at column {i + 1}: {text[i:i + 30]!r}")


def _scan_balanced(text: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket that closes the one at `i`; quoted text inside is skipped."""
    depth = 0
    j = i
    n = len(text)
    while j < n:
        c = text[j]
        if c == '"' or (c == "'" and open_ == "("):
            j = _scan_quoted(text, j)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise GrammarError(f"unbalanced '{open_}' at column {i + 1}: no matching '{close}'")


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", r"\1", body)


@lru_cache(maxsize=2048)
def tokenize(text: str) -> tuple[Token, ...]:
    """Split one command line into tokens.

    Words end at white space, at a lone `=`, at a quote that opens a word, or at `(`.  `==`,
    `!=`, `<=` and `>=` stay inside words (they belong to conditional expressions).  A `( ... )`
    group and a `{ ... }` JSON object are single tokens, so destinations and inline policies pass
    through intact.  Cached: nodes run the same scheduled and scripted lines again and again.
    """
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
            continue
        if c == '"' or c == "'":
            j = _scan_quoted(text, i)
            tokens.append(Token(STRING, _unescape(text[i + 1 : j - 1]), i, j))
            i = j
            continue
        if c == "(":
            j = _scan_balanced(text, i, "(", ")")
            tokens.append(Token(GROUP, text[i + 1 : j - 1].strip(), i, j))
            i = j
            continue
        if c == ")":
            raise GrammarError(f"unbalanced ')' at column {i + 1}")
        if c == "{":
            j = _scan_balanced(text, i, "{", "}")
            tokens.append(Token(JSON, text[i:j], i, j))
            i = j
            continue
        if c == "=" and (i + 1 >= n or text[i + 1] != "="):
            tokens.append(Token(EQ, "=", i, i + 1))
            i += 1
            continue
        j = i
        while j < n:
            c = text[j]
            if c in _SPACE or c == "(" or c == ")":
                break
            if c == "=":
                nxt = text[j + 1] if j + 1 < n else ""
                prev = text[j - 1] if j > i else ""
                if nxt != "=" and prev not in _OPERATOR_BEFORE_EQ:
                    break
                if nxt == "=":
                    j += 2
                    continue
            j += 1
        tokens.append(Token(WORD, text[i:j], i, j))
        i = j
    return tuple(tokens)


# --- dictionary references -------------------------------------------------------------------

_REFERENCE = re.compile(
    r"(!!?)([A-Za-z_][A-Za-z0-9_]*)(\.(?:int|float|str|bool|name|len))?(?![A-Za-z0-9_])"
    r"|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def _typed(key: str, value: str, suffix: str | None) -> str:
    if not suffix:
        return value
    kind = suffix[1:]
    try:
        if kind == "int":
            return str(int(float(value)))
        if kind == "float":
            return repr(float(value))
        if kind == "bool":
            return "true" if parse_bool(value) else "false"
        if kind == "name":
            return value.strip().lower().replace(" ", "_")
        if kind == "len":
            return str(len(value))
    except (ValueError, GrammarError):
        raise GrammarError(f"'!{key}{suffix}': the value {value!r} is not a {kind}") from None
    return value


def substitute(text: str, lookup: Callable[[str], str | None], env: Callable[[str], str | None]) -> str:
    """Replace `!key`, `!key.int` ... with dictionary values and `$VAR` with the environment.

    `!!key` is left as `!key`: it belongs to the node that will run the command.  An unknown key
    is an error rather than a silent literal, because a typo in `!master_node` would otherwise
    send a command to a node called "!master_node".
    """
    if "!" not in text and "$" not in text:
        return text

    def replace(m: re.Match) -> str:
        if m.group(4):
            name = m.group(4)
            value = env(name)
            if value is None:
                raise GrammarError(f"'${name}': no such environment variable")
            return value
        bangs, key, suffix = m.group(1), m.group(2), m.group(3)
        if bangs == "!!":
            return "!" + key + (suffix or "")
        value = lookup(key)
        if value is None:
            raise GrammarError(f"'!{key}' is not in the dictionary (set it with '{key} = <value>')")
        return _typed(key, value, suffix)

    return _REFERENCE.sub(replace, text)


def substitute_json(text: str, lookup: Callable[[str], str | None], env: Callable[[str], str | None]) -> str:
    """Resolve references inside a JSON object written in a script, as AnyLog users write policies.

    Outside string literals a reference becomes a JSON value: `"name": !node_name` gives a string,
    `"port": !port.int` a number, `.float` and `.bool` likewise.  Inside a string literal it is
    replaced in place (`"!ip:!port"`), escaped for JSON.
    """
    if "!" not in text and "$" not in text:
        return text
    def escaped(key: str) -> str | None:
        value = lookup(key)
        return None if value is None else json.dumps(value, ensure_ascii=False)[1:-1]

    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = _scan_quoted(text, i)
            out.append('"' + substitute(text[i + 1 : j - 1], escaped, env) + '"')
            i = j
            continue
        m = _REFERENCE.match(text, i)
        if m and not (m.group(1) == "!!"):
            value = substitute(m.group(0), lookup, env)
            suffix = (m.group(3) or "")[1:]
            out.append(value if suffix in ("int", "float", "len", "bool") else json.dumps(value, ensure_ascii=False))
            i = m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --- where clauses ---------------------------------------------------------------------------


def split_where(tokens: tuple[Token, ...] | list[Token]) -> tuple[list[Token], list[Token] | None]:
    """Split tokens at the first `where`: (positional tokens, clause tokens or None)."""
    for i, tok in enumerate(tokens):
        if tok.kind == WORD and tok.value.lower() == "where":
            return list(tokens[:i]), list(tokens[i + 1 :])
    return list(tokens), None


def _next_is_key(tokens: list[Token], i: int) -> bool:
    """True when tokens[i:] start with `<word>... =`: the `and` before them ends a value."""
    j = i
    while j < len(tokens) and tokens[j].kind == WORD and not tokens[j].is_word("and"):
        j += 1
    return j > i and j < len(tokens) and tokens[j].kind == EQ


def parse_where(tokens: list[Token]) -> list[tuple[str, list[Token]]]:
    """Pair keys with their value tokens: `k = v and k2 = 30 seconds` -> [(k, [v]), (k2, [30, seconds])].

    A value runs to the next `and` that is followed by `key =`, so `name = salt and pepper` keeps
    its `and`.  Keys are lower-cased and may be several words (`read only = true`).
    """
    pairs: list[tuple[str, list[Token]]] = []
    i = 0
    n = len(tokens)
    if n == 0:
        raise GrammarError("'where' must be followed by 'key = value'")
    while i < n:
        key_words = []
        while i < n and tokens[i].kind == WORD and not tokens[i].is_word("and"):
            key_words.append(tokens[i].value)
            i += 1
        if not key_words:
            got = tokens[i].value if i < n else "the end of the command"
            raise GrammarError(f"expected an option name in the where clause, got {got!r}")
        if i >= n or tokens[i].kind != EQ:
            raise GrammarError(f"option '{' '.join(key_words)}' has no '= value'")
        i += 1
        start = i
        while i < n:
            if tokens[i].is_word("and"):
                if _next_is_key(tokens, i + 1):
                    break
                if i + 1 == n:
                    raise GrammarError("the where clause ends with 'and'")
                if tokens[i + 1].kind == EQ:
                    raise GrammarError("an option name is missing before '=' after 'and'")
            i += 1
        value = tokens[start:i]
        if not value:
            raise GrammarError(f"option '{' '.join(key_words)}' has no value after '='")
        pairs.append((" ".join(key_words).lower(), value))
        if i < n:
            i += 1  # the 'and'
            if i >= n:
                raise GrammarError("the where clause ends with 'and'")
    return pairs


# --- scripts and multi-line commands ---------------------------------------------------------


class CommandAccumulator:
    """Collects lines into commands: one line each, or a `<` ... `>` block spanning several."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    @property
    def pending(self) -> bool:
        return bool(self._lines)

    def feed(self, line: str) -> str | None:
        stripped = line.strip()
        if not self._lines:
            if stripped.startswith("<"):
                if stripped.endswith(">") and len(stripped) > 1:
                    return stripped[1:-1].strip()
                self._lines.append(stripped[1:])
                return None
            return stripped
        if not stripped or stripped.startswith("#"):
            return None
        if stripped.endswith(">"):
            self._lines.append(stripped[:-1])
            text = "\n".join(self._lines).strip()
            self._lines = []
            return text
        self._lines.append(stripped)
        return None


def split_script(text: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, command) for each command of a script; `#` lines are comments."""
    acc = CommandAccumulator()
    first = 0
    lineno = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not acc.pending:
            if not stripped or stripped.startswith("#"):
                continue
            first = lineno
        command = acc.feed(line)
        if command:
            yield first, command
    if acc.pending:
        raise GrammarError(f"line {first}: '<' block never closed with '>'")


def quote(value: str) -> str:
    """Render a value back into command text, quoting it when the tokenizer would split it."""
    if value and not any(c in value for c in ' \t\r\n"\'()={}'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_OUTPUT_TARGET = re.compile(r"^\[([^\[\]]*)\]\s*=\s*(\S.*)$", re.S)


def split_output_target(text: str) -> tuple[list[tuple[str, str]], str] | None:
    """AnyLog's `[file = path, key = k, show = true] = <command>`: (the bracket's pairs, the command).

    None when the line does not start that way.  The pairs become options of the command
    (`with_options`), so the command itself decides which it takes.
    """
    m = _OUTPUT_TARGET.match(text)
    if m is None:
        return None
    pairs = []
    for part in m.group(1).split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise GrammarError(f"'{part.strip()}' in '[...] = <command>' is not key = value (e.g. [file = !prep_dir/"
                               f"out.json, key = results] = rest get where url = ...)")
        pairs.append((key.strip().lower(), value.strip().strip("\"'")))
    return pairs, m.group(2).strip()


def with_options(command: str, pairs: list[tuple[str, str]]) -> str:
    """`command` with `key = value` options added to its where clause (or a new one)."""
    if not pairs:
        return command
    _, clause = split_where(tokenize(command))
    added = " and ".join(f"{key} = {quote(value)}" for key, value in pairs)
    return f"{command} {'and' if clause is not None else 'where'} {added}"
