"""`run rest server` address rules (pure), and the REST commands on a unit node."""

from __future__ import annotations

import pytest

from anylog_tw.base.errors import OptionError
from anylog_tw.commands.rest import listen_address
from tests.helpers import run, unit_node


@pytest.mark.parametrize("opts, args, expected", [
    ({}, [], ("127.0.0.1", 32049, "127.0.0.1:32049")),
    ({}, ["10.0.0.5", "7849"], ("10.0.0.5", 7849, "10.0.0.5:7849")),
    ({"external_ip": "1.2.3.4", "external_port": 32049, "internal_ip": "10.0.0.5", "internal_port": 7849}, [],
     ("10.0.0.5", 7849, "1.2.3.4:32049")),
    ({"external_ip": "1.2.3.4", "external_port": 32049}, [], ("1.2.3.4", 32049, "1.2.3.4:32049")),
    ({"external_ip": "1.2.3.4", "external_port": 32049, "bind": False}, [], ("", 32049, "1.2.3.4:32049")),
    ({"internal_port": 0}, [], ("127.0.0.1", 0, "127.0.0.1:0")),
])
def test_listen_address(opts, args, expected):
    assert listen_address(opts, args) == expected


def test_listen_address_refuses_bad_ports():
    with pytest.raises(OptionError, match="number"):
        listen_address({}, ["1.2.3.4", "http"])
    with pytest.raises(OptionError, match="range"):
        listen_address({"external_port": 70000}, [])


def test_rest_commands_without_a_server(tmp_path):
    node = unit_node(tmp_path)
    assert not run(node, "exit rest").ok
    reply = run(node, "get rest server info")
    assert not reply.ok and "run rest server" in reply.text
    assert run(node, "get rest calls").ok
    assert "basic auth needs both" in run(node, "run rest server where internal_port = 0 and user = u").text
    assert not run(node, "run rest server where internal_port = 0 and max body = 0").ok
    assert not run(node, "run rest server where internal_port = 0 and timeout = 1 fortnight").ok
