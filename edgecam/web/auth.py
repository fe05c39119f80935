"""Who may see the stream: HTTP Basic, or a token (the stream password) for embedding, e.g. Home
Assistant's MJPEG camera: `http://box:8080/stream.mjpg?token=PASSWORD`.

A password is checked against its scrypt hash once; a credential that passed is then remembered (as a
keyed hash, in memory) so the page's status polling does not pay scrypt every second. Failed attempts are
rate-limited per client address. A configured password file that cannot be read fails closed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgecam.auth import PasswordFileError, read_password_file, verify_password

log = logging.getLogger(__name__)

Mode = Literal["none", "basic", "token"]
TOKEN_PATHS = frozenset({"/stream.mjpg", "/snapshot.jpg"})
MAX_FAILURES, FAILURE_WINDOW_S, LOCKOUT_S = 5, 60.0, 60.0


@dataclass(frozen=True)
class Verdict:
    ok: bool
    status: int = 200  # 401 or 429 when not ok
    retry_after_s: int = 0


class Authenticator:
    def __init__(self, mode: Mode, username: str = "edgecam", password_file: Path | None = None) -> None:
        self.mode = mode
        self.username = username
        self.error: str | None = None
        self._hash: str | None = None
        if mode != "none":
            try:
                self._hash = read_password_file(password_file) if password_file else None
            except PasswordFileError as exc:
                self.error = str(exc)
                log.error("stream auth: %s; every request but /healthz is refused until it is fixed", exc)
        self._key = os.urandom(32)
        self._accepted: OrderedDict[bytes, None] = OrderedDict()
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, path: str, authorization: str | None, token: str | None, client: str) -> Verdict:
        if self.mode == "none":
            return Verdict(True)
        now = time.monotonic()
        with self._lock:
            locked = self._locked_until.get(client, 0.0)
            if locked > now:
                return Verdict(False, 429, int(locked - now) + 1)
        secret = self._presented_secret(path, authorization, token)
        if secret is not None and self._verify(secret):
            with self._lock:
                self._failures.pop(client, None)
            return Verdict(True)
        if secret is not None:  # a wrong credential counts; a first request without one does not
            self._count_failure(client, now)
        return Verdict(False, 401)

    def _presented_secret(self, path: str, authorization: str | None, token: str | None) -> str | None:
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "basic":
                try:
                    user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return ""
                return password if hmac.compare_digest(user.encode(), self.username.encode()) else ""
            if scheme.lower() == "bearer" and self.mode == "token":
                return value.strip()
            return ""
        if token is not None and self.mode == "token" and path in TOKEN_PATHS:
            return token
        return None

    def _verify(self, secret: str) -> bool:
        if self._hash is None:
            return False
        key = hmac.new(self._key, secret.encode(), hashlib.sha256).digest()
        with self._lock:
            if key in self._accepted:
                self._accepted.move_to_end(key)
                return True
        if not verify_password(secret, self._hash):
            return False
        with self._lock:
            self._accepted[key] = None
            while len(self._accepted) > 64:
                self._accepted.popitem(last=False)
        return True

    def _count_failure(self, client: str, now: float) -> None:
        with self._lock:
            failures = self._failures.setdefault(client, deque())
            failures.append(now)
            while failures and failures[0] < now - FAILURE_WINDOW_S:
                failures.popleft()
            if len(failures) >= MAX_FAILURES:
                self._locked_until[client] = now + LOCKOUT_S
                failures.clear()
                log.warning(
                    "stream auth: %d failed attempts from %s; refusing it for %.0f s",
                    MAX_FAILURES,
                    client,
                    LOCKOUT_S,
                )
            if len(self._failures) > 4096:  # bounded memory under a scan from many addresses
                self._failures.clear()
                self._locked_until = {c: t for c, t in self._locked_until.items() if t > now}
