"""Who may see the stream: HTTP Basic, or a token (the stream password) for embedding, e.g. Home
Assistant's MJPEG camera: `http://box:8080/stream.mjpg?token=PASSWORD`.

- A password is checked against its scrypt hash (~16 MiB, ~50 ms on a Pi 4) in a bounded pool: at most
  ``MAX_HASHING`` at a time, however many arrive; the rest wait their turn (throttled, never refused),
  clients with fewer recent failures first, so a flood of guesses from many addresses does not keep the
  real user's login waiting behind it.
  A credential that passed is remembered (as a keyed hash, in memory), so the page's status polling does
  not pay scrypt every second.
- Attempts are counted per client address on arrival, in-flight ones included: once an address has
  ``MAX_FAILURES`` failed or pending attempts in the window, its next ones get 429 at once, unhashed, and
  ``MAX_FAILURES`` failures lock it out for ``LOCKOUT_S``. The counts live in an ``AttemptLimiter`` that
  outlives config reloads.
- The client address is the peer's, or, for a peer in ``stream.trusted_proxies``, the nearest address in
  X-Forwarded-For that is not a trusted proxy.
- ``Authorization: Basic Og==`` (empty user and password: what Home Assistant sends when no user is set)
  counts as no credentials, so a valid token in the same request wins and nothing is counted.
- A configured password file that cannot be read fails closed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgecam.web.password import PasswordFileError, read_password_file, verify_password

log = logging.getLogger(__name__)

Mode = Literal["none", "basic", "token"]
TOKEN_PATHS = frozenset({"/stream.mjpg", "/snapshot.jpg"})
MAX_FAILURES, FAILURE_WINDOW_S, LOCKOUT_S = 5, 60.0, 60.0
MAX_HASHING = 2  # scrypt runs at once (16 MiB each)
PRUNE_AT = 4096  # addresses remembered before the ones neither locked out nor in flight are forgotten
LOCKOUT_LOG_PER_MIN = 10  # lockout lines a minute; a scan from many addresses is summed up, not listed
_WRONG_USER = object()


@dataclass(frozen=True)
class _OtherUser:
    """Basic credentials for another user name: refused, but only after hashing the password like any
    guess, so the time taken does not tell a right user name from a wrong one."""

    password: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    status: int = 200  # 401 or 429 when not ok
    retry_after_s: int = 0


# ---- client addresses -----------------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip("[]")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @staticmethod
    def of(values: Iterable[str]) -> TrustedProxies:
        return TrustedProxies(tuple(parse_networks(values)))

    def trusted(self, peer: str) -> bool:
        addr = _address(peer)
        return addr is not None and any(addr in net for net in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The address to count attempts against: the peer, or for a trusted proxy the nearest address in
        X-Forwarded-For that is not itself a trusted proxy."""
        if not forwarded_for or not self.trusted(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            addr = _address(hop)
            if addr is None:
                break  # garbage: believe nothing further to the left
            client = str(addr)
            if not any(addr in net for net in self.networks):
                break
        return client


# ---- attempt counting (survives reloads) ---------------------------------------------------------------------


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    locked_until: float = 0.0
    lockouts: int = 0  # since this address was last pruned from the table


class AttemptLimiter:
    """Per-address attempt budget; one per server, handed from one Authenticator to the next."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        lockout_s: float = LOCKOUT_S,
    ) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._clients: dict[str, _Client] = {}
        self._prune_at = PRUNE_AT
        self._lock = threading.Lock()
        self.refused = 0  # attempts answered 429 without hashing
        self._log_minute = -math.inf  # start of the minute the lockout lines are counted in
        self._logged = 0
        self._unlogged = 0  # lockouts not logged one by one in the last minute

    def _get(self, client: str, now: float) -> _Client:
        state = self._clients.get(client)
        if state is None:
            if len(self._clients) > self._prune_at:  # bounded memory under a scan from many addresses
                self._clients = {
                    c: s for c, s in self._clients.items() if s.in_flight or s.locked_until > now
                }
                # Thousands of addresses locked out at once (an IPv6 prefix is plenty) survive the pruning:
                # the next one comes after the map has doubled, not at the very next new address (a pass
                # over all of them per request, on the event loop: ~2 ms each at 50,000).
                self._prune_at = max(PRUNE_AT, 2 * len(self._clients))
            state = self._clients[client] = _Client()
        while state.failures and state.failures[0] < now - self.window_s:
            state.failures.popleft()
        return state

    def locked(self, client: str, now: float | None = None) -> int:
        """Seconds until ``client`` may try again (0 = it may)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._clients.get(client)
            if state is not None and state.locked_until > now:
                self.refused += 1
                return int(state.locked_until - now) + 1
        return 0

    def begin(self, client: str, now: float | None = None) -> int:
        """An attempt arrives: 0 if it may be checked (it is then in flight until ``end``), else seconds to
        wait. Pending attempts count against the budget, so concurrent guesses cannot exceed it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._get(client, now)
            if state.locked_until > now:
                self.refused += 1
                return int(state.locked_until - now) + 1
            if state.in_flight + len(state.failures) >= self.max_failures:
                self.refused += 1
                oldest = state.failures[0] if state.failures else now
                return max(1, int(oldest + self.window_s - now) + 1)
            state.in_flight += 1
            return 0

    def end(self, client: str, ok: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._get(client, now)
            state.in_flight = max(0, state.in_flight - 1)
        if ok:
            self.succeeded(client)
        else:
            self.failed(client, now)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._get(client, now)
            state.failures.append(now)
            if len(state.failures) >= self.max_failures and state.locked_until <= now:
                state.locked_until = now + self.lockout_s
                state.lockouts += 1
                state.failures.clear()
                self._log_lockout(client, now)

    def _log_lockout(self, client: str, now: float) -> None:
        """One line per lockout, up to LOCKOUT_LOG_PER_MIN a minute; past that, one line with the count."""
        if now - self._log_minute >= 60.0:
            if self._unlogged:
                log.warning(
                    "stream auth: %d more address(es) locked out in the last minute, not listed",
                    self._unlogged,
                )
            self._log_minute, self._logged, self._unlogged = now, 0, 0
        if self._logged >= LOCKOUT_LOG_PER_MIN:
            self._unlogged += 1
            return
        self._logged += 1
        log.warning(
            "stream auth: %d failed attempts from %s; refusing it for %.0f s",
            self.max_failures, client, self.lockout_s,
        )  # fmt: skip

    def rank(self, client: str) -> int:
        """How much ``client`` has been guessing lately (failures in the window, lockouts): its place in the
        queue for scrypt, lowest first."""
        with self._lock:
            state = self._clients.get(client)
            return 0 if state is None else len(state.failures) + self.max_failures * state.lockouts

    def succeeded(self, client: str) -> None:
        with self._lock:
            state = self._clients.get(client)
            if state is not None and not state.in_flight:
                state.failures.clear()


class Hasher:
    """scrypt off the event loop, at most ``workers`` at a time (bounded memory); shared across reloads."""

    def __init__(self, workers: int = MAX_HASHING) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrypt")
        self._workers = workers
        self._held = 0  # workers taken (running, or handed to a waiter about to run)
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []  # (rank, arrival, turn): a heap
        self._arrival = itertools.count()
        self.running = 0
        self.peak = 0

    def _verify(self, secret: str, stored: str) -> bool:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            return verify_password(secret, stored)
        finally:
            self.running -= 1

    async def verify(self, secret: str, stored: str, rank: int = 0) -> bool:
        """Check ``secret`` against ``stored``. With every worker busy it waits its turn: lowest ``rank``
        first (see AttemptLimiter.rank), then first come. Called on one event loop."""
        loop = asyncio.get_running_loop()
        if self._held < self._workers and not self._queue:
            self._held += 1
        else:
            turn: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._queue, (rank, next(self._arrival), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # handed a worker just as it was cancelled
                    self._hand_on()
                raise
        try:
            return await loop.run_in_executor(self._pool, self._verify, secret, stored)
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        """A worker is free: hand it to the next waiter still waiting, or give it back."""
        while self._queue:
            turn = heapq.heappop(self._queue)[2]
            if not turn.done():  # (a cancelled waiter's turn is done)
                turn.set_result(None)
                return
        self._held -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---- the gate --------------------------------------------------------------------------------------------------


class Authenticator:
    def __init__(
        self,
        mode: Mode,
        username: str = "edgecam",
        password_file: Path | None = None,
        *,
        limiter: AttemptLimiter | None = None,
        hasher: Hasher | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.mode = mode
        self.username = username
        self.error: str | None = None
        self.limiter = limiter or AttemptLimiter()
        self.hasher = hasher or Hasher()
        self.proxies = TrustedProxies.of(trusted_proxies)
        self._hash: str | None = None
        self._password_file = password_file
        self._stamp = _stamp(password_file)
        if mode != "none":
            try:
                self._hash = read_password_file(password_file) if password_file else None
            except PasswordFileError as exc:
                self.error = str(exc)
                log.error("stream auth: %s; every request but /healthz is refused until it is fixed", exc)
        self._key = os.urandom(32)
        self._accepted: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, peer: str, forwarded_for: str | None) -> str:
        return self.proxies.client(peer, forwarded_for)

    def stale(self) -> bool:
        """True when the password file changed since it was read (`edgecam password set` over it)."""
        return self.mode != "none" and _stamp(self._password_file) != self._stamp

    async def authorize(
        self, path: str, authorization: str | None, token: str | None, client: str, *, count: bool = True
    ) -> Verdict:
        """The verdict for one request. ``count=False`` re-checks an open stream after a reload: a
        credential that no longer passes ends the stream but is not counted as a guess."""
        if self.mode == "none":
            return Verdict(True)
        limiter = self.limiter
        if count and (retry := limiter.locked(client)):
            return Verdict(False, 429, retry)
        secret = self._presented_secret(path, authorization, token)
        if secret is None or self._hash is None:  # no credentials (a challenge), or failing closed
            return Verdict(False, 401)
        if secret is _WRONG_USER:
            if count:
                limiter.failed(client)
            return Verdict(False, 401)
        other_user = isinstance(secret, _OtherUser)
        if other_user:
            secret = secret.password
        assert isinstance(secret, str)
        if not secret.isascii():
            try:
                secret.encode()
            except UnicodeEncodeError:  # bytes that are no UTF-8 (aiohttp keeps them as surrogates): a guess
                if count:
                    limiter.failed(client)
                return Verdict(False, 401)
        key = hmac.new(self._key, secret.encode(), hashlib.sha256).digest()
        if not other_user:
            with self._lock:
                if key in self._accepted:
                    self._accepted.move_to_end(key)
                    return Verdict(True)
        if count and (retry := limiter.begin(client)):
            return Verdict(False, 429, retry)
        ok = False
        try:
            ok = await self.hasher.verify(secret, self._hash, limiter.rank(client)) and not other_user
        finally:
            if count:
                limiter.end(client, ok)
        if not ok:
            return Verdict(False, 401)
        with self._lock:
            self._accepted[key] = None
            while len(self._accepted) > 64:
                self._accepted.popitem(last=False)
        return Verdict(True)

    def _presented_secret(self, path: str, authorization: str | None, token: str | None) -> Any:
        """The password presented, None for none, _OtherUser for Basic with another user name, _WRONG_USER
        for credentials that cannot be read."""
        tokens_ok = self.mode == "token"
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "basic":
                try:
                    user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return _WRONG_USER
                if user or password:
                    return (
                        password
                        if hmac.compare_digest(user.encode(), self.username.encode())
                        else _OtherUser(password)
                    )
                # "Basic Og==": empty user and password, i.e. no credentials; a token may follow
            elif scheme.lower() == "bearer" and tokens_ok:
                return value.strip()
            else:
                return _WRONG_USER
        if token is not None and tokens_ok and path in TOKEN_PATHS:
            return token
        return None


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns) if info is not None else None


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def authenticator_for(
    stream: Any, resolve: Callable[[str], Path], bind: str, previous: Authenticator | None = None
) -> Authenticator:
    """The gate for a ``stream`` config section (``resolve`` turns its password_file into a real path).
    A ``previous`` gate hands over its attempt counts (lockouts survive a reload) and its scrypt pool."""
    password_file = resolve(stream.password_file) if stream.password_file else None
    if stream.auth_mode == "none" and bind not in LOOPBACK:
        log.warning("the stream has no password and listens on %s: set stream.password_file", bind)
    return Authenticator(
        stream.auth_mode, stream.username, password_file,
        limiter=previous.limiter if previous else None, hasher=previous.hasher if previous else None,
        trusted_proxies=getattr(stream, "trusted_proxies", ()),
    )  # fmt: skip
