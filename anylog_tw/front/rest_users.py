"""The REST users file: one user a line, `name:role:hash`, passwords kept only as scrypt hashes.

Why scrypt (`hashlib.scrypt`, in the standard library wherever OpenSSL is 1.1 or newer): it is a
maintained, memory-hard KDF, so a stolen users file costs an attacker memory as well as time per
guess, where PBKDF2 costs only time and runs cheaply on GPUs.  Each hash carries its own random
salt and its cost parameters (`scrypt$n$r$p$salt$hash`, base64 without padding), so the cost can be
raised later without breaking old lines.  One check costs about 50 ms and 16 MiB; the REST server
caches a verified header for a short while (front/rest_auth.py) so dashboards do not pay it per call.

Write entries with the command line, never by hand:

    python -m anylog_tw.front.rest_users add users.txt alice reader     # asks for the password
    ANYLOG_PW=... python -m anylog_tw.front.rest_users add users.txt bob admin --password-env ANYLOG_PW
    python -m anylog_tw.front.rest_users remove users.txt alice
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass

from anylog_tw.base.errors import AnyLogError

# The three REST roles and the grant each holds; owner is never given over the network.
ROLES = {"reader": "read", "writer": "write", "admin": "admin"}
SCHEME = "scrypt"
N, R, P = 2 ** 14, 8, 1  # ~16 MiB, ~50 ms: OWASP's minimum for scrypt
_MAXMEM = 64 * 1024 * 1024


class UsersFileError(AnyLogError):
    code = "bad_users_file"
    status = 400


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, n: int = N, r: int = R, p: int = P) -> str:
    """A salted scrypt hash of `password`, with its parameters."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str | bytes, encoded: str) -> bool:
    """Whether `password` matches the hash (compared in constant time); a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, want = encoded.split("$")
        if scheme != SCHEME:
            return False
        want_bytes = _unb64(want)
        raw = password.encode("utf-8") if isinstance(password, str) else password
        got = hashlib.scrypt(raw, salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM,
                             dklen=len(want_bytes))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want_bytes)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str

    @property
    def grant(self) -> str:
        return ROLES[self.role]


def parse_users(text: str, source: str = "users file") -> dict[str, User]:
    """`name:role:hash` lines ('#' comments and blank lines skipped); an error names the line."""
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise UsersFileError(f"{source}:{number}: expected 'name:role:hash' (write entries with "
                                 f"'python -m anylog_tw.front.rest_users add')")
        name, role, encoded = parts
        if role not in ROLES:
            raise UsersFileError(f"{source}:{number}: role {role!r} is not one of {', '.join(ROLES)}")
        if not encoded.startswith(SCHEME + "$") or encoded.count("$") != 5:
            raise UsersFileError(f"{source}:{number}: the password of {name!r} is not a scrypt hash (plain text "
                                 f"passwords are refused; write it with 'python -m anylog_tw.front.rest_users add')")
        users[name] = User(name, role, encoded)
    return users


def load_users(path: str) -> dict[str, User]:
    try:
        with open(path, encoding="utf-8") as f:
            return parse_users(f.read(), path)
    except OSError as e:
        raise UsersFileError(f"cannot read the users file {path}: {e.strerror}") from None


def write_users(path: str, users: dict[str, User]) -> None:
    """Replace the file atomically, readable by its owner only."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".users-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# anylog-tw REST users: name:role:scrypt hash (python -m anylog_tw.front.rest_users)\n")
            for user in users.values():
                f.write(f"{user.name}:{user.role}:{user.hash}\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add_user(path: str, name: str, role: str, password: str) -> None:
    if not name or ":" in name or any(c.isspace() for c in name):
        raise UsersFileError(f"user name {name!r}: use letters, digits and punctuation other than ':'")
    if role not in ROLES:
        raise UsersFileError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise UsersFileError("a password needs at least 8 characters")
    users = load_users(path) if os.path.exists(path) else {}
    users[name] = User(name, role, hash_password(password))
    write_users(path, users)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anylog_tw.front.rest_users",
                                     description="Write the REST users file (run rest server ... and users = FILE).")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="add a user or change its role and password")
    add.add_argument("file")
    add.add_argument("name")
    add.add_argument("role", choices=sorted(ROLES))
    add.add_argument("--password-env", help="read the password from this environment variable, not the terminal")
    remove = sub.add_parser("remove", help="remove a user")
    remove.add_argument("file")
    remove.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.action == "add":
            if args.password_env:
                password = os.environ.get(args.password_env, "")
            else:
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    print("the passwords differ", file=sys.stderr)
                    return 1
            add_user(args.file, args.name, args.role, password)
            print(f"{args.name} ({args.role}) written to {args.file}")
        else:
            users = load_users(args.file)
            if users.pop(args.name, None) is None:
                print(f"no user {args.name} in {args.file}", file=sys.stderr)
                return 1
            write_users(args.file, users)
            print(f"{args.name} removed from {args.file}")
    except UsersFileError as e:
        print(e.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
