"""Stream passwords: stored only as a salted scrypt hash, compared in constant time.

File format (one line): ``scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>``. The installer writes it with
``edgecam password set --file /etc/edgecam/auth``; ``stream.password_file`` points to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

N, R, P = 2**14, 8, 1  # ~16 MiB and ~50 ms per check on a Pi 4: slow for guessing, fine for a login
_PREFIX = "scrypt"


class PasswordFileError(ValueError):
    pass


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    b64 = base64.b64encode
    return f"{_PREFIX}${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.strip().split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def read_password_file(path: Path) -> str:
    """The stored hash, or PasswordFileError saying what is wrong with the file."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise PasswordFileError(f"{path}: cannot read the password file ({exc.strerror})") from exc
    if text.count("$") != 5 or not text.startswith(_PREFIX + "$"):
        raise PasswordFileError(
            f"{path}: not an edgecam password file; write one with `edgecam password set`"
        )
    return text


def write_password_file(path: Path, password: str) -> None:
    """Write the hash atomically, readable by owner and group only."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w") as fh:
        fh.write(hash_password(password) + "\n")
    os.replace(tmp, path)


def generate_password() -> str:
    """A password a person can type from a phone: 4 groups of 4 lowercase letters and digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))
