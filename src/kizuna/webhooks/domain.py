"""Signatures and back-off, without a database or a network.

The receiver checks `Kizuna-Signature: t=<unix seconds>,v1=<hex>` where the hex is
HMAC-SHA256(secret, "<t>.<raw body>"): signing the timestamp with the body stops an old request
from being replayed later. A failed attempt waits `base × 2^(attempts−1)` seconds, capped, and after
`MAX_ATTEMPTS` the delivery is given up (manual redelivery is still possible).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

EVENT_TYPES = frozenset(
    {
        "member.created",
        "member.merged",
        "member.withdrawn",
        "points.earned",
        "points.redeemed",
        "points.returned",
        "points.adjusted",
        "points.expiring",
        "points.expired",
        "rank.changed",
        "coupon.issued",
        "event.recorded",
        "batch.completed",
    }
)
ALL_EVENTS = "*"
MAX_ATTEMPTS = 12
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=6)
SIGNATURE_TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>" under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The `Kizuna-Signature` header value."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    now: int,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is within `tolerance`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(fields.get("v1", ""), signature(secret, timestamp, body))


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt."""
    delay: timedelta = BACKOFF_BASE * 2 ** max(attempts - 1, 0)
    return min(delay, BACKOFF_CAP)


def wants(event_types: list[str], event_type: str) -> bool:
    """True when an endpoint subscribed to `event_types` receives `event_type`."""
    return ALL_EVENTS in event_types or event_type in event_types
