"""Real Mosquitto brokers for the message tests: the machine's (127.0.0.1:1883) or one of our own.

Our own broker runs from a temporary config on a free port, so a test can stop and restart it,
require a password, or speak TLS without touching the shared one.  Publishing goes through
`mosquitto_pub` in a thread, so the reactor under test keeps running while messages go out.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

from twisted.internet import reactor, threads

SYSTEM_PORT = 1883


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def system_broker() -> bool:
    return shutil.which("mosquitto") is not None and port_open(SYSTEM_PORT)


class Mosquitto:
    """A mosquitto process of our own: `start()`, `stop()`, `restart()`; persistence survives restarts."""

    def __init__(self, directory, port: int | None = None, passwords: dict[str, str] | None = None,
                 tls: dict[str, str] | None = None, extra: str = ""):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.dir}/",
                 "autosave_interval 1", f"log_dest file {self.dir}/mosquitto.log", "max_queued_messages 0"]
        if os.geteuid() == 0:
            lines.append("user root")  # as root mosquitto would become 'mosquitto' and lose the temp dir
        if passwords:
            pwfile = os.path.join(self.dir, "passwd")
            open(pwfile, "w").close()
            for user, password in passwords.items():
                subprocess.run(["mosquitto_passwd", "-b", pwfile, user, password], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
            if tls.get("require_certificate"):
                lines.append("require_certificate true")
        if extra:
            lines.append(extra)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start on port {self.port}: {self.log()[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "mosquitto.log")) as f:
                return f.read()
        except OSError:
            return ""


def publish_blocking(port: int, topic: str, messages: list[str], qos: int = 0, user: str = "", password: str = "",
                     extra: tuple[str, ...] = ()) -> None:
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos), "-l", *extra]
    if user:
        cmd += ["-u", user, "-P", password]
    data = "".join(m.replace("\n", " ") + "\n" for m in messages).encode()
    subprocess.run(cmd, input=data, check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def publish(port: int, topic: str, messages: list[str], qos: int = 0, **kw):
    """Publish messages (one per line) with mosquitto_pub, off the reactor thread; a Deferred."""
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), publish_blocking, port, topic, messages, qos,
                                     **kw)
