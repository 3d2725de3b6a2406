"""The twistd options: home, scripts, network key file."""

from __future__ import annotations

import pytest
from twisted.python import usage

from anylog_tw.net.peers import Peers
from anylog_tw.tap import Options, makeService


def parse(*argv) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults_and_repeated_scripts(tmp_path, monkeypatch):
    monkeypatch.delenv("ANYLOG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "a.al", tmp_path / "b.al"
    a.write_text("")
    b.write_text("")
    options = parse("--script", str(a), "-s", str(b), "--name", "n1")
    assert options["home"] == str(tmp_path / "anylog-data")
    assert options["scripts"] == [str(a), str(b)] and options["name"] == "n1"


def test_missing_script_is_a_usage_error(tmp_path):
    with pytest.raises(usage.UsageError, match="script not found"):
        parse("--script", str(tmp_path / "nope.al"))


def test_network_key_file_sets_the_key(tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    options = parse("--home", str(tmp_path / "h"), "--network-key-file", str(key), "--no-stdin")
    node = makeService(options)
    assert node.component(Peers).network_key == b"s3cret"
    key.write_text("")
    with pytest.raises(usage.UsageError, match="empty"):
        parse("--network-key-file", str(key))
    with pytest.raises(usage.UsageError, match="cannot read"):
        parse("--network-key-file", str(tmp_path / "missing"))
