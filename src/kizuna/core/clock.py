"""Time: stored in UTC, business dates computed in the programme's time zone.

Domain code takes `as_of` as an argument; only entry points ask the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """`moment` as aware UTC; a naive value is taken to be UTC (as the database stores it)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    """The programme's time zone by IANA name."""
    return ZoneInfo(name)
