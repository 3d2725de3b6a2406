"""The registry: every command documented, every example parses, help generated from it."""

from __future__ import annotations

import pytest

from anylog_tw.base import grammar
from anylog_tw.base.errors import OptionError
from anylog_tw.base.registry import Option, Registry
from anylog_tw.commands import load_commands
from tests.helpers import run, unit_node

REGISTRY = load_commands()
ALL = list(REGISTRY)


def test_registry_is_not_empty():
    assert len(ALL) >= 20


@pytest.mark.parametrize("cmd", ALL, ids=lambda c: c.name)
def test_every_command_is_documented(cmd):
    assert cmd.usage.strip() and cmd.usage.split()[0] == cmd.words[0], cmd.name
    assert cmd.text.strip(), cmd.name
    assert cmd.examples, f"{cmd.name} has no example"
    assert cmd.keywords, f"{cmd.name} has no index keyword"


@pytest.mark.parametrize("cmd", ALL, ids=lambda c: c.name)
def test_every_example_parses_to_its_command(cmd):
    """Each example tokenizes, dispatches to the command it documents, and names only real options."""
    for example in cmd.examples:
        tokens = grammar.tokenize(example)
        if tokens[1:2] and tokens[1].kind == grammar.EQ:  # `x = <command>`
            tokens = tokens[2:]
        matched, used = REGISTRY.match(tokens)
        assert matched is cmd, f"{example!r} dispatches to {matched.name!r}"
        if cmd.raw:
            continue
        positional, clause = grammar.split_where(tokens[used:])
        low, high = cmd.nargs
        assert low <= len(positional) and (high is None or len(positional) <= high), example
        if clause is not None:
            for key, _ in grammar.parse_where(clause):
                assert cmd.option(key) is not None, f"{example!r} uses unknown option {key!r}"


def test_registering_a_name_twice_is_refused():
    reg = Registry()
    reg.command("get x", grant="read", usage="get x", text="x", examples=("get x",), keywords=("k",))(lambda call: "")
    with pytest.raises(ValueError, match="twice"):
        reg.command("get x", grant="read", usage="get x", text="x", examples=("get x",), keywords=("k",))(lambda call: "")


def test_longest_prefix_wins():
    reg = Registry()
    for name in ("get", "get status", "get status all"):
        reg.command(name, grant="read", usage=name, text=name, examples=(name,), keywords=("k",))(lambda call: name)
    assert reg.match(grammar.tokenize("get status where a = b"))[0].name == "get status"
    assert reg.match(grammar.tokenize("GET Status all"))[0].name == "get status all"
    assert reg.match(grammar.tokenize("get other"))[0].name == "get"
    assert reg.match(grammar.tokenize("put x")) is None


def test_option_conversion_names_the_option():
    opt = Option("time", kind="seconds")
    assert opt.convert("1 minute") == 60
    with pytest.raises(OptionError, match="option 'time'"):
        opt.convert("soon")
    with pytest.raises(OptionError, match="whole number"):
        Option("threads", kind="int").convert("many")


def test_help_lists_describes_and_indexes(tmp_path):
    node = unit_node(tmp_path)
    listing = run(node, "help").render()
    assert "get status" in listing and "help" in listing
    page = run(node, "help get status").render()
    for section in ("Usage:", "Explanation:", "Examples:", "Index:"):
        assert section in page
    assert "get status where format = json" in page
    prefix = run(node, "help get").render()
    assert "get processes" in prefix and "echo" not in prefix
    index = run(node, "help index").render()
    assert "monitor" in index
    assert "get status" in run(node, "help index monitor").render()
    assert run(node, "help example get status").render().splitlines()[0] == "get status"


def test_help_for_unknown_things_is_an_error(tmp_path):
    node = unit_node(tmp_path)
    reply = run(node, "help get statsu")
    assert not reply.ok and "get status" in reply.text
    reply = run(node, "help index nothing-like-this")
    assert not reply.ok and "monitor" in reply.text


def test_a_command_without_a_grant_is_refused_when_it_registers():
    """No command can be forgotten: a missing or unknown grant fails the module's import."""
    reg = Registry()
    with pytest.raises(ValueError, match="declares no grant.*read, write, admin, owner"):
        reg.command("get y", usage="get y", text="y", examples=("get y",), keywords=("k",))(lambda call: "")
    with pytest.raises(ValueError, match="grant 'root'"):
        reg.command("get y", grant="root", usage="get y", text="y", examples=("get y",), keywords=("k",))(
            lambda call: "")
    assert len(reg) == 0
