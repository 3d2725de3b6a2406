"""The inside of `run client (...)`: the nodes a command goes to, and how long it may wait.

A pure parser over text with references already resolved; the metadata forms (`blockchain get
...`, `dbms = d and table = t`) are resolved by the metadata layer before this is asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import GrammarError, OptionError
from anylog_tw.base.grammar import EQ, STRING, WORD
from anylog_tw.net.peers import canonical

DEFAULT_TIMEOUT = 20.0


@dataclass
class Destination:
    addresses: list[str]
    subset: bool = False
    timeout: float = DEFAULT_TIMEOUT


def parse_destination(text: str) -> Destination:
    """The inside of `run client (...)`, with references already resolved.

    `ip:port, ip:port`, `ip port, ip port`, `ip:port ip:port`, plus options `subset = true` and
    `timeout = N` anywhere, separated by commas or `and`.
    """
    tokens = grammar.tokenize(text.replace(",", " "))
    addresses: list[str] = []
    dest = Destination(addresses)
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok.is_word("and"):
            i += 1
            continue
        if i + 1 < n and tokens[i + 1].kind == EQ:
            key = tok.value.lower()
            if i + 2 >= n:
                raise GrammarError(f"'{key} =' has no value in the destination")
            value = tokens[i + 2].value
            if key == "subset":
                dest.subset = values.parse_bool(value)
            elif key == "timeout":
                dest.timeout = values.parse_seconds(value)
                if dest.timeout <= 0:
                    raise OptionError("timeout must be more than 0 seconds")
            else:
                raise OptionError(f"'{key}' in the destination: only ip:port lists with subset and timeout are "
                                  f"supported here (destinations from metadata come with the metadata commands)")
            i += 3
            continue
        if tok.kind not in (WORD, STRING):
            raise OptionError(f"{tok.value!r} is not a destination (write ip:port or ip port)")
        word = tok.value
        if ":" not in word:
            nxt = tokens[i + 1] if i + 1 < n else None
            if nxt is not None and nxt.kind == WORD and nxt.value.isdigit():
                word = f"{word}:{nxt.value}"
                i += 1
            elif word.lower() in ("blockchain", "operator", "query", "master", "publisher", "dbms", "table"):
                raise OptionError(f"destination '{text}': destinations from metadata ('{word} ...') are not "
                                  f"supported yet; give ip:port addresses")
        address = canonical(word)
        if address not in addresses:
            addresses.append(address)
        i += 1
    if not addresses:
        raise OptionError("run client: the destination lists no node (write e.g. (10.0.0.1:32048) or "
                          "(!ip !port)); an empty () is for 'sql' only")
    return dest
