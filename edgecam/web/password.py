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
import stat
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
    """Write the hash atomically. A new file is readable by owner and group only; one written over keeps its
    owner, group and mode as far as this user may set them (the installer's root:edgecam 0640 stays
    readable by the service after `sudo edgecam password set`)."""
    try:
        old: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        old = None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "w") as fh:
            if old is not None:
                _keep_owner_and_mode(fh.fileno(), old)
            fh.write(hash_password(password) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _keep_owner_and_mode(fd: int, old: os.stat_result) -> None:
    """Owner and group of ``old`` where permitted (root may set both, an owner only a group of its own),
    then its mode (after chown, which may clear set-id bits)."""
    for uid, gid in ((old.st_uid, old.st_gid), (-1, old.st_gid)):
        try:
            os.fchown(fd, uid, gid)
            break
        except OSError:  # not permitted (not root), or a file system without owners
            continue
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def generate_password() -> str:
    """A password a person can type from a phone: 4 groups of 4 lowercase letters and digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))
