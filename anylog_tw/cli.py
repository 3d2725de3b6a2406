"""The `anylog` command: `twistd -n anylog` with the same options, and a tidy terminal.

When the node runs with a prompt on the terminal, the log goes to `<home>/node.log` so it does
not write over what the user types; otherwise it goes to stdout, as under `twistd -n`.
"""

from __future__ import annotations

import os
import sys

from anylog_tw.tap import DEFAULT_HOME


def _home(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg in ("--home", "-d") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--home="):
            return arg.split("=", 1)[1]
    return os.environ.get("ANYLOG_HOME") or DEFAULT_HOME


def twistd_argv(argv: list[str], interactive: bool) -> list[str]:
    args = ["twistd", "--nodaemon", "--pidfile="]
    if interactive and "--no-stdin" not in argv:
        home = os.path.abspath(_home(argv))
        os.makedirs(home, exist_ok=True)
        args.append(f"--logfile={os.path.join(home, 'node.log')}")
    return args + ["anylog"] + argv


def main(argv: list[str] | None = None) -> None:
    from twisted.scripts.twistd import run

    argv = sys.argv[1:] if argv is None else argv
    sys.argv = twistd_argv(argv, sys.stdin is not None and sys.stdin.isatty())
    run()


if __name__ == "__main__":
    main()
