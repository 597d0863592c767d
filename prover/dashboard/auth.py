"""Who may use the dashboard: holders of a token whose sha256 is in the token file.

Bound to loopback, the dashboard is open to the machine's users unless a token file is given;
bound beyond loopback it refuses to start without one. With a token file every page needs
``Authorization: Bearer <token>`` or the session cookie the login form sets (HttpOnly,
SameSite=Strict). The file holds one ``sha256:<hex> [name]`` per line, never a token itself,
hashed as the relay hashes its tokens' secrets (:func:`prover.relay.auth.digest`).

Dashboard users are not relay clients: the relay's tokens live in its job store (next to the
sealed patient inputs, on the relay's host) and grant API scopes; a dashboard viewer needs
neither, so the two keep separate token lists. The dashboard itself calls the relay as one
client, with a ``zkr_…`` token read from ``--relay-token-file`` (:func:`read_relay_token`).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prover.exceptions import AuthenticationFailed, DashboardAuthRequired, TokenFileError
from prover.relay.auth import digest, split_token

COOKIE = "zkcare_dashboard_session"
SESSION_TTL_S = 12 * 3600
PREFIX = "sha256:"


def hash_token(token: str) -> str:
    """The stored form of a token: the relay's digest (:func:`prover.relay.auth.digest`,
    SHA-256 of 32 random bytes needs no slow hash), tagged ``sha256:``."""
    return PREFIX + digest(token)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: TokenFile | None) -> None:
    """Refuse a non-loopback bind without a token file."""
    if tokens is None and not is_loopback(host):
        raise DashboardAuthRequired(host)


@dataclass
class TokenFile:
    """The accepted token hashes (``name`` for each, if given)."""

    path: Path
    hashes: dict[str, str] = field(default_factory=dict)  # hash -> name

    @classmethod
    def load(cls, path: Path) -> TokenFile:
        """Parse ``path``; one clear error naming the line if it is malformed or empty."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise TokenFileError(path, 0, f"cannot read ({exc.strerror})") from exc
        hashes: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            digest, _, name = line.partition(" ")
            hexpart = digest.removeprefix(PREFIX)
            if not digest.startswith(PREFIX) or len(hexpart) != 64 or not _is_hex(hexpart):
                raise TokenFileError(path, number, "expected `sha256:<64 hex digits> [name]`")
            hashes[digest.lower()] = name.strip() or f"token {number}"
        if not hashes:
            raise TokenFileError(path, 0, "no token hashes (add one with --add-token NAME)")
        return cls(path, hashes)

    def who(self, token: str | None) -> str | None:
        """The name of ``token``'s holder, or None if it is not accepted."""
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for known, name in self.hashes.items():
            if hmac.compare_digest(known, digest):
                found = name
        return found


def add_token(path: Path, name: str) -> str:
    """Append a fresh token's hash to ``path`` (created 0600); returns the token (shown once)."""
    if not name or any(c.isspace() for c in name):
        raise TokenFileError(path, 0, f"token name {name!r} must be one word")
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    with path.open("a") as fh:
        fh.write(f"{hash_token(token)} {name}\n")
    return token


def read_relay_token(path: Path) -> str:
    """The relay client token in ``path`` (``--relay-token-file``): one ``zkr_<id>_<secret>``
    line (:mod:`prover.relay.auth`'s format), in a file only its owner can read."""
    try:
        mode = path.stat().st_mode & 0o777
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(path, 0, f"cannot read ({type(exc).__name__})") from exc
    if mode & 0o077:
        raise TokenFileError(
            path, 0, f"mode {mode:04o} lets others read a relay token; chmod 600 {path}"
        )
    try:
        split_token(token)
    except AuthenticationFailed:
        raise TokenFileError(
            path, 1, "not a relay client token (zkr_<id>_<secret>; `clients create --token-file`)"
        ) from None
    return token


class Sessions:
    """Login sessions (random ids, in memory, expiring)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str, float]] = {}

    def open(self, who: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._by_id[hash_token(sid)] = (who, time.monotonic() + self.ttl_s)
        return sid

    def who(self, sid: str | None) -> str | None:
        if not sid:
            return None
        with self._lock:
            entry = self._by_id.get(hash_token(sid))
            if entry is None:
                return None
            if entry[1] < time.monotonic():
                del self._by_id[hash_token(sid)]
                return None
            return entry[0]

    def close(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_id.pop(hash_token(sid), None)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
