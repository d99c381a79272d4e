"""Keys, scopes and the rate limit, without a database.

An API key is `kz_<prefix>_<secret>`: the prefix is public and finds the client's row, the secret is
256 random bits. Because the secret is high-entropy, a plain SHA-256 of the whole key is a safe
stored form (a slow password hash only matters for guessable secrets), and a check costs
microseconds. The rate limit is a token bucket: `per_minute` requests, refilled continuously.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ClientKind(StrEnum):
    PARTNER = "partner"
    STORE = "store"
    TERMINAL = "terminal"
    EC = "ec"
    APP = "app"


class Scope(StrEnum):
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    PURCHASES_READ = "purchases:read"
    PURCHASES_WRITE = "purchases:write"
    EVENTS_WRITE = "events:write"
    POINTS_ADJUST = "points:adjust"
    BATCHES_WRITE = "batches:write"
    WEBHOOKS_MANAGE = "webhooks:manage"
    QR_ISSUE = "qr:issue"
    CAMPAIGNS_MANAGE = "campaigns:manage"  # campaigns and ranks (admin)


_TILL = frozenset(
    {
        Scope.MEMBERS_READ,
        Scope.MEMBERS_WRITE,
        Scope.PURCHASES_READ,
        Scope.PURCHASES_WRITE,
        Scope.EVENTS_WRITE,
        Scope.BATCHES_WRITE,
    }
)

# What a new client may do when no scopes are given; `points:adjust` is always explicit.
DEFAULT_SCOPES: dict[ClientKind, frozenset[Scope]] = {
    ClientKind.PARTNER: _TILL | {Scope.WEBHOOKS_MANAGE},
    ClientKind.STORE: _TILL,
    ClientKind.TERMINAL: _TILL,
    ClientKind.EC: _TILL | {Scope.WEBHOOKS_MANAGE},
    ClientKind.APP: frozenset({Scope.MEMBERS_READ, Scope.EVENTS_WRITE, Scope.QR_ISSUE}),
}

KEY_PREFIX_BYTES = 6
KEY_SECRET_BYTES = 32


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: the full key (shown once), its prefix and its stored hash."""

    key: str
    prefix: str
    digest: str


def generate_key() -> NewKey:
    """A new random API key."""
    prefix = secrets.token_hex(KEY_PREFIX_BYTES)
    key = f"kz_{prefix}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
    return NewKey(key=key, prefix=prefix, digest=hash_key(key))


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str | None:
    """The public prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "kz" or len(parts[1]) != 2 * KEY_PREFIX_BYTES:
        return None
    return parts[1]


def key_matches(key: str, digest: str) -> bool:
    """True when `key` hashes to `digest` (constant-time comparison)."""
    return hmac.compare_digest(hash_key(key), digest)


def parse_scopes(names: list[str] | None, kind: ClientKind) -> frozenset[Scope]:
    """Scopes from their names (ValueError for an unknown one); the kind's defaults when None."""
    if names is None:
        return DEFAULT_SCOPES[kind]
    return frozenset(Scope(name) for name in names)


@dataclass(frozen=True)
class ClientIdentity:
    """An authenticated caller as every request sees it."""

    id: int
    name: str
    kind: ClientKind
    partner_id: int
    program_id: int
    is_operator: bool
    store_id: int | None
    scopes: frozenset[str]
    rate_per_minute: int

    @property
    def actor(self) -> str:
        """How journal entries and logs name this client."""
        return f"client:{self.id}"


def take_token(
    bucket: tuple[float, float] | None, per_minute: int, now: float
) -> tuple[tuple[float, float], float]:
    """One request against a client's token bucket (tokens, as of when; None: a full one): the
    bucket after it, and 0 when allowed, else the seconds until a token is free."""
    capacity = float(per_minute)
    rate = per_minute / 60.0
    tokens, last = bucket or (capacity, now)
    tokens = min(capacity, tokens + (now - last) * rate)
    if tokens >= 1.0:
        return (tokens - 1.0, now), 0.0
    return (tokens, now), (1.0 - tokens) / rate


class RateLimits(Protocol):
    """Where requests take tokens from their client's bucket (`TokenBuckets`, or the buckets the
    worker processes share)."""

    def retry_after(self, client_id: int, per_minute: int, now: float) -> float: ...


class TokenBuckets:
    """One token bucket per client, in this process: `retry_after` says how long to wait, or 0."""

    def __init__(self) -> None:
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client_id: int, per_minute: int, now: float) -> float:
        """Take one token for `client_id`; 0 when allowed, else seconds until one is free."""
        with self._lock:
            bucket, wait = take_token(self._buckets.get(client_id), per_minute, now)
            self._buckets[client_id] = bucket
            return wait
