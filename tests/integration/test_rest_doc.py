"""The curl examples of docs/rest.md, run with the real curl against a real node, outputs compared.

Every ```console block of the doc is a session: `$ ` lines are shell commands (run in one scratch
directory, in order), the lines after them are the expected output; `...` in an expected line
stands for any text.  `http://127.0.0.1:32049` becomes the test server's address and
`ANYLOG_HOME` is the node's home.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from twisted.internet import threads

from tests.integration.rest_support import start_node, url

DOC = Path(__file__).resolve().parents[2] / "docs" / "rest.md"
DOC_URL = "http://127.0.0.1:32049"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def sessions(text: str) -> list[list[tuple[str, list[str]]]]:
    """Each console block as [(command, expected lines)]."""
    blocks = re.findall(r"```console\n(.*?)```", text, re.S)
    out = []
    for block in blocks:
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        out.append(steps)
    return out


def matches(expected: str, got: str) -> bool:
    if "..." not in expected:
        return expected.rstrip() == got.rstrip()
    pattern = ".*".join(re.escape(part) for part in expected.rstrip().split("..."))
    return re.fullmatch(pattern, got.rstrip(), re.S) is not None


def test_the_doc_has_examples():
    steps = [s for session in sessions(DOC.read_text()) for s in session]
    assert len(steps) >= 15 and all(DOC_URL in cmd or "curl" not in cmd for cmd, _ in steps)


async def test_doc_curl_examples(tmp_path):
    node = await start_node(tmp_path, name="demo")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, ANYLOG_HOME=node.home)
    base = url(node).rstrip("/")
    failures = []
    try:
        for session in sessions(DOC.read_text()):
            for command, expected in session:
                shell = command.replace(DOC_URL, base)
                out = await threads.deferToThread(subprocess.run, ["bash", "-c", shell], capture_output=True,
                                                  text=True, cwd=work, env=env, timeout=30)
                got = out.stdout.rstrip("\n").split("\n") if out.stdout else []
                if len(got) != len(expected) or not all(matches(e, g) for e, g in zip(expected, got)):
                    failures.append(f"$ {command}\nexpected:\n" + "\n".join(expected) + "\ngot:\n" + out.stdout
                                    + out.stderr)
    finally:
        await node.stopService()
    assert not failures, "\n\n".join(failures)
