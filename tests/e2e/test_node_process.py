"""A real `twistd -n anylog` process: start-up scripts, the console, a clean exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import NodeProcess


def test_script_lines_run_in_order_and_a_bad_line_does_not_stop_the_node(nodes):
    node = nodes("alpha", "a = 1\nno such command here\nb = !a.int\n")
    assert node.command("get node name") == "alpha"
    assert node.command("echo !a !b") == "1 1"
    assert "start.al:3" in node.log() and "unknown command 'no such command here'" in node.log()
    assert "Console" in node.command("get processes")


def test_exit_node_ends_the_process_with_code_0(nodes):
    node = nodes("beta")
    assert "shutting down" in node.command("exit node")
    assert node.wait_exit() == 0
    assert "Traceback" not in node.log()


def test_console_errors_do_not_stop_the_node(nodes):
    node = nodes("gamma")
    reply = node.command("get statsu")
    assert reply.startswith("Error: unknown command") and "get status" in reply
    assert node.command("get status") == "gamma@127.0.0.1 running"


def test_anylog_home_environment_variable_works_like_home(tmp_path):
    home = tmp_path / "from-env"
    env = dict(os.environ, ANYLOG_HOME=str(home))
    out = subprocess.run([sys.executable, "-c", "from anylog_tw.tap import Options; o = Options(); "
                          "o.parseOptions([]); print(o['home'])"], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == str(home)


def test_plugin_is_found_by_twistd_in_a_fresh_install(tmp_path):
    """Build and install the project (not editable) into a new venv; twistd there lists and runs `anylog`."""
    root = Path(__file__).resolve().parents[2]
    site = subprocess.run([sys.executable, "-c", "import twisted, os; print(os.path.dirname(os.path.dirname("
                           "twisted.__file__)))"], capture_output=True, text=True, check=True).stdout.strip()
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The dependencies come from the test venv's site-packages through a .pth line (which does not
    # bring in the editable checkout); the project itself is built and installed as a regular wheel.
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (venv / "lib" / pyver / "site-packages" / "deps.pth").write_text(site + "\n")
    python = str(venv / "bin" / "python")
    # The test venv's pip and setuptools build the wheel and install it (no pip in the new venv, no
    # isolated build environment to fill): the same wheel, in seconds instead of half a minute.
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(root)], check=True, cwd=str(tmp_path), capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                    *map(str, wheels.glob("anylog_tw-*.whl"))], check=True, cwd=str(tmp_path), capture_output=True)
    installed = subprocess.run([python, "-c", "import anylog_tw; print(anylog_tw.__file__)"], capture_output=True,
                               text=True, cwd=str(tmp_path)).stdout
    assert str(venv) in installed and str(root) not in installed
    twistd = [python, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
    listing = subprocess.run(twistd + ["--help"], capture_output=True, text=True, cwd=str(tmp_path))
    assert "anylog" in listing.stdout
    node = NodeProcess(tmp_path, "fresh-node")
    node.proc = subprocess.Popen(twistd + node.argv()[1:], cwd=str(tmp_path), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.STDOUT)
    try:
        node.wait_ready()
        assert node.command("get node name") == "fresh-node"
        assert "exit node" in node.command("help exit")
    finally:
        node.stop()
