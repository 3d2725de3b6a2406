"""schemathesis against /openapi.json: no 500, and no status, content type, header or body off the document."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import threads

from tests.integration.rest_support import start_node

ST = shutil.which("st", path=str(Path(sys.executable).parent))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")

pytestmark = pytest.mark.skipif(ST is None, reason="schemathesis is not installed (pip install -e '.[test]')")


# A fuzzed `destination: g 8` names a peer (host g, port 8) that cannot be reached: the node answers
# 502, as the document says for that header, which is the gateway's answer, not a server fault.
CONFIG = """[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "502"]
"""


async def schemathesis(node, examples: int, *extra: str) -> subprocess.CompletedProcess:
    host, port = node.process("REST").address
    config = Path(node.home) / "schemathesis.toml"
    config.write_text(CONFIG)
    args = [ST, "--config-file", str(config), "run", f"http://{host}:{port}/openapi.json", "--checks", CHECKS,
            "-n", str(examples), "--no-color", "--generation-database", "none", "-w", "1", "--request-timeout", "10",
            *extra]
    return await threads.deferToThread(subprocess.run, args, capture_output=True, text=True, timeout=120)


async def test_schemathesis_finds_nothing_off_the_spec(tmp_path):
    """Fuzzing every route (commands, PUT data, auth-free) gives only documented answers, never a 500."""
    node = await start_node(tmp_path, "timeout = 2")
    try:
        out = await schemathesis(node, 150)
    finally:
        await node.stopService()
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "passed" in out.stdout


async def test_schemathesis_with_auth_and_read_only(tmp_path):
    """With basic auth and read only, the document announces the security scheme and the server keeps to it."""
    node = await start_node(tmp_path, "timeout = 2 and user = u and password = p and read only = true")
    try:
        out = await schemathesis(node, 40, "-a", "u:p")
    finally:
        await node.stopService()
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
