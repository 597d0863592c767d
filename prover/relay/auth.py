"""Relay clients: API tokens, scopes, and who may call what.

A token is ``zkr_<id>_<secret>``: ``id`` is 8 random bytes (hex), the lookup key; ``secret`` is
32 random bytes (URL-safe base64). The store keeps only ``SHA-256(secret)`` per token id (a
32-byte random secret needs no slow hash), so a stolen store or backup yields no usable token,
and a request costs one indexed lookup and one constant-time compare. A token is shown once,
when it is created or rotated.

Scopes, each granting exactly this:

- ``submit``: ``POST /v1/jobs``, ``POST /v1/evaluations``;
- ``read``: ``GET`` the client's own jobs and evaluations, ``GET /openapi.json``;
- ``admin``: ``GET /healthz``, ``GET /metrics``, and everything ``read`` allows for every
  client's jobs and evaluations (an operator; it does not include ``submit``).

``GET /livez`` (``{"status": "alive"}``, nothing else) is the only route without a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from prover.exceptions import AuthenticationFailed, InvalidInput

TOKEN_PREFIX = "zkr"
ID_BYTES = 8
SECRET_BYTES = 32
_TOKEN = re.compile(r"^zkr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Scope(StrEnum):
    """What a client may do."""

    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class Client:
    """A relay client as stored (never its token)."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        """Whether the client was revoked (all its tokens stop working)."""
        return self.revoked_at is not None

    def may(self, scope: Scope) -> bool:
        """Whether the client holds ``scope`` (``admin`` includes ``read``)."""
        return scope in self.scopes or (scope == Scope.READ and Scope.ADMIN in self.scopes)

    @property
    def sees_all(self) -> bool:
        """``admin`` clients read every client's jobs and evaluations."""
        return Scope.ADMIN in self.scopes


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: the text (shown once) and what the store keeps."""

    token_id: str
    token: str
    digest: str


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """Scopes from names (``submit``, ``read``, ``admin``; comma lists allowed)."""
    out: set[Scope] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            try:
                out.add(Scope(name))
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise InvalidInput(f"unknown scope {name!r}; use {known}") from None
    if not out:
        raise InvalidInput("a client needs at least one scope (submit, read, admin)")
    return frozenset(out)


def check_name(name: str) -> str:
    """A client name: 1-64 characters from A-Z a-z 0-9 _ . @ -."""
    if not _NAME.match(name):
        raise InvalidInput("client name: use 1-64 characters from A-Z a-z 0-9 _ . @ -")
    return name


def new_token() -> NewToken:
    """A random token and its stored digest."""
    token_id = secrets.token_hex(ID_BYTES)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    return NewToken(token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}", digest(secret))


def digest(secret: str) -> str:
    """What the store keeps of a token's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """``(token id, secret)``, or :class:`AuthenticationFailed` for a malformed token."""
    match = _TOKEN.match(token.strip())
    if match is None:
        raise AuthenticationFailed("invalid or revoked token")
    return match.group(1), match.group(2)


def matches(secret: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented secret with the stored digest."""
    return hmac.compare_digest(digest(secret), stored_digest)


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header (:class:`AuthenticationFailed`)."""
    if not header:
        raise AuthenticationFailed("missing bearer token (Authorization: Bearer zkr_…)")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationFailed("the Authorization header must be 'Bearer <token>'")
    return value.strip()
