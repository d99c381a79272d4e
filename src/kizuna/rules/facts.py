"""The facts a condition reads, and the named fields over them.

`Facts` is one evaluation's world: the event being judged (in the programme's local time, with
holidays from `jpholiday`), the member (profile, rank, and — loaded only when a condition asks —
their purchases and lots), and `as_of`. `FIELDS` names what conditions may compare: `event.*`,
`member.*` and the member's behaviour over an optional `days` window; each field has a type, and a
value that is missing (no birth date, no purchase yet) reads as None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache
from operator import attrgetter
from typing import Any, Generic, TypeVar, overload
from zoneinfo import ZoneInfo

import jpholiday


class ValueType(StrEnum):
    INT = "int"
    STR = "str"
    BOOL = "bool"
    STR_SET = "str_set"  # e.g. the categories of a receipt: `contains`, `in` (any of), `not_in`
    INT_SET = "int_set"
    SCALAR = "scalar"  # custom event attributes: a str, int or bool decided by the value


SET_TYPES = frozenset({ValueType.STR_SET, ValueType.INT_SET})


# --- facts: what a condition is evaluated against --------------------------------------------


@dataclass(frozen=True)
class PastPurchase:
    """A purchase in a member's history; `refunded` yen have been returned."""

    occurred_at: datetime
    amount: int
    refunded: int = 0
    channel: str | None = None
    store: int | None = None
    categories: frozenset[str] = frozenset()

    @property
    def live(self) -> bool:
        """False once the whole purchase has been returned: it no longer counts."""
        return self.refunded < self.amount


@dataclass(frozen=True)
class HeldLot:
    """A lot of the member's points, as the behaviour fields see it."""

    remaining: int
    available_at: datetime
    expires_at: datetime | None


T = TypeVar("T")


class derived(Generic[T]):  # noqa: N801 - a decorator, named like the cached_property it replaces
    """An attribute computed from the others on first read and kept: `functools.cached_property`
    without the lock that Python 3.11 takes on every first read (a receipt's facts are derived
    once per purchase, on the hot path of earning)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__

    @overload
    def __get__(self, instance: None, owner: type) -> derived[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object, owner: type) -> T | derived[T]:
        if instance is None:
            return self
        # No __set__: once the value sits in the instance's __dict__, it is read from there.
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@dataclass(eq=False)
class EventFacts:
    """The event being judged (a purchase, a visit, a login…), in the programme's local time.

    Read-only by convention rather than frozen: one is built per purchase on the hot path of
    earning, and what only some conditions read (holiday, the receipt's categories, SKUs and
    brands) is derived on first read.
    """

    type: str
    local: datetime
    weekday: int  # ISO: 1 = Monday … 7 = Sunday
    hour: int
    day: int
    channel: str | None = None
    store: int | None = None
    partner: int | None = None
    amount: int | None = None
    lines: Sequence[Any] = ()  # receipt lines with category, sku and brand
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @derived
    def holiday(self) -> bool:
        return is_holiday(self.local.date())

    @derived
    def categories(self) -> frozenset[str]:
        return frozenset(filter(None, map(_CATEGORY, self.lines)))

    @derived
    def skus(self) -> frozenset[str]:
        return frozenset(filter(None, map(_SKU, self.lines)))

    @derived
    def brands(self) -> frozenset[str]:
        return frozenset(filter(None, map(_BRAND, self.lines)))


# What a receipt line is filed under; `filter(None, …)` drops lines without one (C-level loops).
_CATEGORY, _SKU, _BRAND = attrgetter("category"), attrgetter("sku"), attrgetter("brand")


@cache
def is_holiday(day: date) -> bool:
    """True on a Japanese national holiday (jpholiday; cached, the table is fixed per date)."""
    return bool(jpholiday.is_holiday(day))


@dataclass(eq=False)
class MemberFacts:
    """A member as conditions see them: profile, rank and (when loaded) behaviour (read-only by
    convention, like `EventFacts`: built once per purchase)."""

    member_id: int
    joined_at: datetime
    rank: str | None = None
    birth_date: date | None = None
    gender: str | None = None
    postal_code: str | None = None
    join_channel: str | None = None
    join_store: int | None = None
    purchases: Sequence[PastPurchase] = ()
    lots: Sequence[HeldLot] = ()


@dataclass(eq=False)
class Facts:
    """Everything one evaluation may read; `as_of` is the moment of the evaluation (read-only by
    convention, like `EventFacts`)."""

    as_of: datetime
    tz: ZoneInfo
    event: EventFacts | None = None
    member: MemberFacts | None = None

    @derived
    def local_date(self) -> date:
        return self.as_of.astimezone(self.tz).date()

    def purchases_in(self, days: int | None) -> Iterable[PastPurchase]:
        """Live purchases before `as_of`, within the last `days` days when given."""
        if self.member is None:
            return ()
        since = self.as_of - timedelta(days=days) if days else None
        return (
            p
            for p in self.member.purchases
            if p.live and p.occurred_at < self.as_of and (since is None or p.occurred_at >= since)
        )

    def available_lots(self) -> Iterable[HeldLot]:
        """Lots that can be spent at `as_of` (not pending, not expired, not empty)."""
        if self.member is None:
            return ()
        return (
            lot
            for lot in self.member.lots
            if lot.remaining > 0
            and lot.available_at <= self.as_of
            and (lot.expires_at is None or lot.expires_at > self.as_of)
        )


def event_facts(
    *,
    event_type: str,
    occurred_at: datetime,
    tz: ZoneInfo,
    channel: str | None = None,
    store: int | None = None,
    partner: int | None = None,
    amount: int | None = None,
    lines: Iterable[Any] = (),
    attributes: Mapping[str, Any] | None = None,
) -> EventFacts:
    """The facts of an event; `lines` are receipt lines with category, sku and brand."""
    local = occurred_at.astimezone(tz)
    return EventFacts(
        event_type,
        local,
        local.isoweekday(),
        local.hour,
        local.day,
        channel,
        store,
        partner,
        amount,
        lines if isinstance(lines, list | tuple) else tuple(lines),
        attributes or {},
    )


def local_days_between(earlier: date, later: date) -> int:
    """Whole calendar days from `earlier` to `later`."""
    return (later - earlier).days


def age_on(birth_date: date, today: date) -> int:
    """Age in completed years on `today`."""
    return (
        today.year
        - birth_date.year
        - ((today.month, today.day) < (birth_date.month, birth_date.day))
    )


# --- the fields --------------------------------------------------------------------------------

Getter = Callable[[Facts, int | None], Any]


@dataclass(frozen=True)
class FieldSpec:
    """A named field: its type, where it comes from, whether it takes a `days` window.

    A field is either an attribute of the event or of the member (`attr`), read directly, or
    computed from the facts by `get` (ages, day counts, behaviour over a window)."""

    name: str
    type: ValueType
    scope: str  # "event" or "member"
    get: Getter | None = None
    window: str = "none"  # "none", "optional" or "required"
    lo: int | None = None
    hi: int | None = None
    attr: str | None = None


def _attr_field(
    name: str, kind: ValueType, attr: str, lo: int | None = None, hi: int | None = None
) -> FieldSpec:
    return FieldSpec(name, kind, name.split(".", 1)[0], lo=lo, hi=hi, attr=attr)


class Missing:
    """An absent event or member (a member-only evaluation has no event): every attribute reads
    as a missing value."""

    def __getattr__(self, name: str) -> None:
        return None


MISSING = Missing()


def _age(facts: Facts, _days: int | None) -> int | None:
    birth = facts.member.birth_date if facts.member else None
    return age_on(birth, facts.local_date) if birth else None


def _birth_month(facts: Facts, _days: int | None) -> int | None:
    birth = facts.member.birth_date if facts.member else None
    return birth.month if birth else None


def _postal_area(facts: Facts, _days: int | None) -> str | None:
    code = facts.member.postal_code if facts.member else None
    return code[:3] if code is not None else None


def _days_since_joining(facts: Facts, _days: int | None) -> int | None:
    if facts.member is None:
        return None
    joined = facts.member.joined_at.astimezone(facts.tz).date()
    return local_days_between(joined, facts.local_date)


def _purchase_count(facts: Facts, days: int | None) -> int:
    return sum(1 for _ in facts.purchases_in(days))


def _spend(facts: Facts, days: int | None) -> int:
    return sum(p.amount - p.refunded for p in facts.purchases_in(days))


def _days_since_last_purchase(facts: Facts, _days: int | None) -> int | None:
    last = max((p.occurred_at for p in facts.purchases_in(None)), default=None)
    if last is None:
        return None
    return local_days_between(last.astimezone(facts.tz).date(), facts.local_date)


def _categories_bought(facts: Facts, days: int | None) -> frozenset[str]:
    return frozenset(c for p in facts.purchases_in(days) for c in p.categories)


def _channels_used(facts: Facts, days: int | None) -> frozenset[str]:
    return frozenset(p.channel for p in facts.purchases_in(days) if p.channel)


def _stores_visited(facts: Facts, days: int | None) -> frozenset[int]:
    return frozenset(p.store for p in facts.purchases_in(days) if p.store is not None)


def _balance(facts: Facts, _days: int | None) -> int:
    return sum(lot.remaining for lot in facts.available_lots())


def _points_expiring(facts: Facts, days: int | None) -> int:
    until = facts.as_of + timedelta(days=days or 0)
    return sum(
        lot.remaining
        for lot in facts.available_lots()
        if lot.expires_at is not None and lot.expires_at <= until
    )


_T = ValueType
FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        _attr_field("event.type", _T.STR, "type"),
        _attr_field("event.channel", _T.STR, "channel"),
        _attr_field("event.store", _T.INT, "store"),
        _attr_field("event.partner", _T.INT, "partner"),
        _attr_field("event.amount", _T.INT, "amount"),
        _attr_field("event.categories", _T.STR_SET, "categories"),
        _attr_field("event.skus", _T.STR_SET, "skus"),
        _attr_field("event.brands", _T.STR_SET, "brands"),
        _attr_field("event.weekday", _T.INT, "weekday", lo=1, hi=7),
        _attr_field("event.hour", _T.INT, "hour", lo=0, hi=23),
        _attr_field("event.day", _T.INT, "day", lo=1, hi=31),
        _attr_field("event.holiday", _T.BOOL, "holiday"),
        FieldSpec(
            "event.weather",
            _T.STR,
            "event",
            lambda f, _d: f.event.attributes.get("weather") if f.event else None,
        ),
        _attr_field("member.rank", _T.STR, "rank"),
        _attr_field("member.gender", _T.STR, "gender"),
        FieldSpec("member.age", _T.INT, "member", _age, lo=0, hi=150),
        FieldSpec("member.birth_month", _T.INT, "member", _birth_month, lo=1, hi=12),
        FieldSpec("member.postal_area", _T.STR, "member", _postal_area),
        FieldSpec("member.days_since_joining", _T.INT, "member", _days_since_joining),
        _attr_field("member.join_channel", _T.STR, "join_channel"),
        _attr_field("member.join_store", _T.INT, "join_store"),
        FieldSpec("member.purchase_count", _T.INT, "member", _purchase_count, "optional"),
        FieldSpec("member.spend", _T.INT, "member", _spend, "optional"),
        FieldSpec("member.days_since_last_purchase", _T.INT, "member", _days_since_last_purchase),
        FieldSpec("member.categories_bought", _T.STR_SET, "member", _categories_bought, "optional"),
        FieldSpec("member.channels_used", _T.STR_SET, "member", _channels_used, "optional"),
        FieldSpec("member.stores_visited", _T.INT_SET, "member", _stores_visited, "optional"),
        FieldSpec("member.balance", _T.INT, "member", _balance),
        FieldSpec("member.points_expiring", _T.INT, "member", _points_expiring, "required"),
    )
}
ATTRIBUTE_PREFIX = "event.attributes."
# Behaviour fields read the member's history; the service loads it only when a condition needs it.
HISTORY_FIELDS = frozenset(
    {
        "member.purchase_count",
        "member.spend",
        "member.days_since_last_purchase",
        "member.categories_bought",
        "member.channels_used",
        "member.stores_visited",
    }
)
LOT_FIELDS = frozenset({"member.balance", "member.points_expiring"})


def field_spec(name: str) -> FieldSpec | None:
    """The spec of field `name` (custom event attributes included), None if unknown."""
    spec = FIELDS.get(name)
    if spec is None and name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX):
        key = name[len(ATTRIBUTE_PREFIX) :]
        spec = FieldSpec(
            name,
            ValueType.SCALAR,
            "event",
            lambda f, _d: f.event.attributes.get(key) if f.event else None,
        )
    return spec
