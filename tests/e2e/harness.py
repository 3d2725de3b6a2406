"""Real node processes for end-to-end tests: start `twistd -n anylog`, talk to its console, stop it.

The tests drive nodes the way a user does, through the telnet console, with a small blocking
telnet client (the node is another process, so blocking the test's own reactor costs nothing).
Every wait polls with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
TWISTD = str(VENV_BIN / "twistd")

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[78=>cDEMH]")
PROMPT = re.compile(r"AL \S+ > $")


def free_port() -> int:
    """A port that was free a moment ago (the node binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class TelnetClient:
    """A blocking telnet client that refuses every option and reads up to the node's prompt."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.text = ""
        self._read_until_prompt()

    def _feed(self, data: bytes) -> None:
        out = bytearray()
        i = 0
        while i < len(data):
            b = data[i]
            if b == IAC and i + 1 < len(data):
                verb = data[i + 1]
                if verb in (DO, DONT, WILL, WONT) and i + 2 < len(data):
                    opt = data[i + 2]
                    if verb == DO:
                        self.sock.sendall(bytes([IAC, WONT, opt]))
                    elif verb == WILL:
                        self.sock.sendall(bytes([IAC, DONT, opt]))
                    i += 3
                    continue
                if verb == SB:
                    end = data.find(bytes([IAC, SE]), i)
                    i = len(data) if end < 0 else end + 2
                    continue
                i += 2
                continue
            out.append(b)
            i += 1
        self.text += _ESCAPES.sub("", out.decode("utf-8", "replace")).replace("\r", "")

    def _read_until_prompt(self) -> str:
        deadline = time.monotonic() + self.timeout
        while not PROMPT.search(self.text):
            if time.monotonic() > deadline:
                raise AssertionError(f"no prompt from the console; got {self.text[-300:]!r}")
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"console closed; got {self.text[-300:]!r}")
            self._feed(data)
        text, self.text = self.text, ""
        return text

    def command(self, line: str) -> str:
        """Send one command and return the reply text (without the echo and the next prompt)."""
        self.sock.sendall(line.encode() + b"\r\n")
        text = self._read_until_prompt()
        text = PROMPT.sub("", text)
        lines = text.split("\n")
        # The first line is the echo of what we typed.
        return "\n".join(lines[1:]).strip("\n")

    def close(self) -> None:
        self.sock.close()


class NodeProcess:
    """One `twistd -n anylog` process with a console on a free port."""

    def __init__(self, base: Path, name: str, script: str = "", console_port: int | None = None,
                 extra_args: tuple[str, ...] = (), env: dict | None = None):
        self.name = name
        self.home = base / name
        self.home.mkdir(parents=True, exist_ok=True)
        # Port 0 unless the test needs a fixed one: the node logs the port the kernel chose, so two
        # tests on two workers never race for a port that "was free a moment ago".
        self.console_port = console_port or 0
        self.script_path = self.home / "start.al"
        self.script_path.write_text(f"run console where ip = 127.0.0.1 and port = {self.console_port}\n" + script)
        self.log_path = self.home / "twistd.log"
        self.extra_args = extra_args
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen | None = None
        self._log_from = 0
        self._console: TelnetClient | None = None

    def argv(self) -> list[str]:
        return [TWISTD, "-n", "--pidfile=", "--logfile", str(self.log_path), "anylog", "--home", str(self.home),
                "--name", self.name, "--script", str(self.script_path), "--no-stdin", *self.extra_args]

    def start(self, timeout: float = 15.0) -> "NodeProcess":
        # twistd appends to its log: this start's lines are the ones after what is there now.
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(self.argv(), cwd=str(self.home), env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_from)
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, timeout: float = 15.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            return f"node {self.name} ready" in self.log_since_start()

        wait_for(ready, timeout, f"node {self.name} to be ready")
        self.console_port = self.listening("Console")

    def listening(self, process: str) -> int:
        """The port a process of the node is listening on, as the node logged it (the latest start)."""
        found = re.findall(rf"{re.escape(process)} listening on [^:\s]+:(\d+)", self.log_since_start())
        if not found:
            raise AssertionError(f"node {self.name} logged no '{process} listening on' line")
        return int(found[-1])

    @property
    def console(self) -> TelnetClient:
        if self._console is None:
            self._console = TelnetClient(self.console_port)
        return self._console

    def command(self, line: str) -> str:
        return self.console.command(line)

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self._console is not None:
            self._console.close()
            self._console = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def kill(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
