"""The condition language: one JSON tree for campaigns, segments and scenarios.

A condition is `{"all": [...]}`, `{"any": [...]}`, `{"not": {...}}` or a comparison such as
`{"field": "event.amount", "op": "gte", "value": 3000}`; windowed behaviour fields take `"days"`
(`{"field": "member.spend", "days": 90, "op": "gte", "value": 10000}`). `parse` validates a tree
once (errors name the path of the bad node, `$.all[1].value`) and returns typed nodes; `predicate`
turns a node into a Python function of `Facts`, and `kizuna.rules.sql` compiles the same node to
SQL. A comparison on a missing value (no birth date, no purchase yet) is false in both back ends;
`exists` asks whether the value is there. Weekday (1 = Monday … 7 = Sunday), hour, day of month and
holidays (`jpholiday`) are taken in the programme's time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache, cached_property, lru_cache
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

import jpholiday

from kizuna.rules.errors import ConditionError


class ValueType(StrEnum):
    INT = "int"
    STR = "str"
    BOOL = "bool"
    STR_SET = "str_set"  # e.g. the categories of a receipt: `contains`, `in` (any of), `not_in`
    INT_SET = "int_set"
    SCALAR = "scalar"  # custom event attributes: a str, int or bool decided by the value


SET_TYPES = {ValueType.STR_SET, ValueType.INT_SET}
OPS_BY_TYPE: dict[ValueType, frozenset[str]] = {
    ValueType.INT: frozenset({"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between"}),
    ValueType.STR: frozenset({"eq", "ne", "in", "not_in"}),
    ValueType.BOOL: frozenset({"eq", "ne"}),
    ValueType.STR_SET: frozenset({"contains", "in", "not_in"}),
    ValueType.INT_SET: frozenset({"contains", "in", "not_in"}),
    ValueType.SCALAR: frozenset({"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between"}),
}
ALL_OPS = frozenset().union(*OPS_BY_TYPE.values()) | {"exists"}
MAX_WINDOW_DAYS = 3660


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


@dataclass(frozen=True)
class EventFacts:
    """The event being judged (a purchase, a visit, a login…), in the programme's local time."""

    type: str
    local: datetime
    weekday: int  # ISO: 1 = Monday … 7 = Sunday
    hour: int
    day: int
    channel: str | None = None
    store: int | None = None
    partner: int | None = None
    amount: int | None = None
    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def holiday(self) -> bool:
        return is_holiday(self.local.date())


@cache
def is_holiday(day: date) -> bool:
    """True on a Japanese national holiday (jpholiday; cached, the table is fixed per date)."""
    return bool(jpholiday.is_holiday(day))


@dataclass(frozen=True)
class MemberFacts:
    """A member as conditions see them: profile, rank and (when loaded) behaviour."""

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


@dataclass(frozen=True)
class Facts:
    """Everything one evaluation may read; `as_of` is the moment of the evaluation."""

    as_of: datetime
    tz: ZoneInfo
    event: EventFacts | None = None
    member: MemberFacts | None = None

    @cached_property
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
    lines = list(lines)
    local = occurred_at.astimezone(tz)
    return EventFacts(
        type=event_type,
        local=local,
        weekday=local.isoweekday(),
        hour=local.hour,
        day=local.day,
        channel=channel,
        store=store,
        partner=partner,
        amount=amount,
        categories=frozenset(line.category for line in lines if line.category),
        skus=frozenset(line.sku for line in lines if line.sku),
        brands=frozenset(line.brand for line in lines if line.brand),
        attributes=attributes or {},
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
    """A named field: its type, where it comes from, whether it takes a `days` window."""

    name: str
    type: ValueType
    scope: str  # "event" or "member"
    get: Getter
    window: str = "none"  # "none", "optional" or "required"
    lo: int | None = None
    hi: int | None = None
    attr: str | None = None  # the attribute of `EventFacts` an event field reads


def _event_field(
    name: str, kind: ValueType, attr: str, lo: int | None = None, hi: int | None = None
) -> FieldSpec:
    return FieldSpec(name, kind, "event", _ev(attr), lo=lo, hi=hi, attr=attr)


def _ev(attr: str) -> Getter:
    def get(facts: Facts, _days: int | None) -> Any:
        return getattr(facts.event, attr) if facts.event is not None else None

    return get


def _mem(attr: str) -> Getter:
    def get(facts: Facts, _days: int | None) -> Any:
        return getattr(facts.member, attr) if facts.member is not None else None

    return get


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
        _event_field("event.type", _T.STR, "type"),
        _event_field("event.channel", _T.STR, "channel"),
        _event_field("event.store", _T.INT, "store"),
        _event_field("event.partner", _T.INT, "partner"),
        _event_field("event.amount", _T.INT, "amount"),
        _event_field("event.categories", _T.STR_SET, "categories"),
        _event_field("event.skus", _T.STR_SET, "skus"),
        _event_field("event.brands", _T.STR_SET, "brands"),
        _event_field("event.weekday", _T.INT, "weekday", lo=1, hi=7),
        _event_field("event.hour", _T.INT, "hour", lo=0, hi=23),
        _event_field("event.day", _T.INT, "day", lo=1, hi=31),
        _event_field("event.holiday", _T.BOOL, "holiday"),
        FieldSpec(
            "event.weather",
            _T.STR,
            "event",
            lambda f, _d: f.event.attributes.get("weather") if f.event else None,
        ),
        FieldSpec("member.rank", _T.STR, "member", _mem("rank")),
        FieldSpec("member.gender", _T.STR, "member", _mem("gender")),
        FieldSpec("member.age", _T.INT, "member", _age, lo=0, hi=150),
        FieldSpec("member.birth_month", _T.INT, "member", _birth_month, lo=1, hi=12),
        FieldSpec("member.postal_area", _T.STR, "member", _postal_area),
        FieldSpec("member.days_since_joining", _T.INT, "member", _days_since_joining),
        FieldSpec("member.join_channel", _T.STR, "member", _mem("join_channel")),
        FieldSpec("member.join_store", _T.INT, "member", _mem("join_store")),
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


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class Compare:
    """`field op value`; `value` is a frozenset for in/not_in and a (lo, hi) pair for between."""

    field: str
    op: str
    value: Any
    days: int | None = None


Node = All | AnyOf | Not | Compare
TRUE = All(())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scalar_ok(value: Any, kind: ValueType) -> bool:
    if kind in (ValueType.INT, ValueType.INT_SET):
        return _is_int(value)
    if kind in (ValueType.STR, ValueType.STR_SET):
        return isinstance(value, str)
    if kind is ValueType.BOOL:
        return isinstance(value, bool)
    return isinstance(value, str | int | bool)


def _check_scalar(spec: FieldSpec, value: Any, path: str) -> Any:
    if not _scalar_ok(value, spec.type):
        element = {"int_set": "int", "str_set": "str", "scalar": "str, int or bool"}.get(
            spec.type, str(spec.type)
        )
        raise ConditionError(path, f"{spec.name} takes {element} values, got {value!r}")
    if _is_int(value) and (
        (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi)
    ):
        raise ConditionError(path, f"{spec.name} is between {spec.lo} and {spec.hi}")
    return value


def _parse_compare(tree: Mapping[str, Any], path: str) -> Compare:
    unknown = set(tree) - {"field", "op", "value", "days"}
    if unknown:
        raise ConditionError(path, f"unknown keys {sorted(unknown)}")
    name = tree.get("field")
    if not isinstance(name, str):
        raise ConditionError(f"{path}.field", "a comparison needs a field name")
    spec = field_spec(name)
    if spec is None:
        raise ConditionError(f"{path}.field", f"unknown field {name!r}", field=name)
    op = tree.get("op")
    if op not in ALL_OPS:
        raise ConditionError(f"{path}.op", f"unknown operator {op!r}")
    if op != "exists" and op not in OPS_BY_TYPE[spec.type]:
        raise ConditionError(f"{path}.op", f"{name} ({spec.type}) does not take {op!r}")
    days = tree.get("days")
    if days is not None:
        if spec.window == "none":
            raise ConditionError(f"{path}.days", f"{name} takes no days window")
        if not _is_int(days) or not 1 <= days <= MAX_WINDOW_DAYS:
            raise ConditionError(f"{path}.days", f"days is a whole number 1..{MAX_WINDOW_DAYS}")
    elif spec.window == "required":
        raise ConditionError(f"{path}.days", f"{name} needs a days window")
    value_path = f"{path}.value"
    raw = tree.get("value")
    value: Any
    if op == "exists":
        if raw is not None and not isinstance(raw, bool):
            raise ConditionError(value_path, "exists takes true, false or nothing")
        value = True if raw is None else raw
    elif op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw:
            raise ConditionError(value_path, f"{op} takes a non-empty list")
        value = frozenset(
            _check_scalar(spec, item, f"{value_path}[{i}]") for i, item in enumerate(raw)
        )
        if len({type(item) for item in value}) > 1:
            raise ConditionError(value_path, f"{op} takes values of one type")
    elif op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConditionError(value_path, "between takes [low, high]")
        low = _check_scalar(spec, raw[0], f"{value_path}[0]")
        high = _check_scalar(spec, raw[1], f"{value_path}[1]")
        if type(low) is not type(high) or low > high:
            raise ConditionError(value_path, "between needs low <= high of one type")
        value = (low, high)
    else:
        if raw is None:
            raise ConditionError(value_path, f"{op} needs a value")
        value = _check_scalar(spec, raw, value_path)
        if op in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
            raise ConditionError(value_path, f"{op} compares numbers or strings, not booleans")
    return Compare(name, op, value, days)


def parse(tree: Any, path: str = "$") -> Node:
    """The validated node of a JSON condition tree, or `ConditionError` naming the bad node."""
    if not isinstance(tree, Mapping):
        raise ConditionError(path, "a condition is a JSON object")
    if "field" in tree or "op" in tree:
        return _parse_compare(tree, path)
    if len(tree) != 1:
        raise ConditionError(path, "use exactly one of all / any / not, or a comparison")
    ((key, body),) = tree.items()
    if key in ("all", "any"):
        if not isinstance(body, list):
            raise ConditionError(f"{path}.{key}", f"{key} takes a list of conditions")
        children = tuple(parse(child, f"{path}.{key}[{i}]") for i, child in enumerate(body))
        return All(children) if key == "all" else AnyOf(children)
    if key == "not":
        return Not(parse(body, f"{path}.not"))
    raise ConditionError(path, f"unknown node {key!r} (all, any, not or a comparison)")


def to_json(node: Node) -> dict[str, Any]:
    """The JSON tree of a node (the inverse of `parse`)."""
    if isinstance(node, All):
        return {"all": [to_json(child) for child in node.children]}
    if isinstance(node, AnyOf):
        return {"any": [to_json(child) for child in node.children]}
    if isinstance(node, Not):
        return {"not": to_json(node.child)}
    tree: dict[str, Any] = {"field": node.field, "op": node.op}
    if isinstance(node.value, frozenset):
        tree["value"] = sorted(node.value, key=repr)
    elif isinstance(node.value, tuple):
        tree["value"] = list(node.value)
    else:
        tree["value"] = node.value
    if node.days is not None:
        tree["days"] = node.days
    return tree


def fields_of(node: Node) -> frozenset[str]:
    """Every field a node reads (to load only the facts it needs)."""
    if isinstance(node, All | AnyOf):
        return frozenset().union(*(fields_of(child) for child in node.children))
    if isinstance(node, Not):
        return fields_of(node.child)
    return frozenset({node.field})


# --- evaluation in Python ------------------------------------------------------------------------

Predicate = Callable[[Facts], bool]


def _value_test(op: str, value: Any, kind: ValueType) -> Callable[[Any], bool]:
    if kind in SET_TYPES:
        if op == "contains":
            return lambda v: value in v
        if op == "in":
            return lambda v: not value.isdisjoint(v)
        return lambda v: value.isdisjoint(v)
    if kind is ValueType.SCALAR:
        # Custom attributes carry any scalar: a value of another type simply does not match.
        sample = next(iter(value)) if isinstance(value, frozenset | tuple) else value
        base = _value_test(op, value, ValueType.INT)
        return lambda v: type(v) is type(sample) and base(v)
    tests: dict[str, Callable[[Any], bool]] = {
        "eq": lambda v: v == value,
        "ne": lambda v: v != value,
        "in": lambda v: v in value,
        "not_in": lambda v: v not in value,
        "gt": lambda v: v > value,
        "gte": lambda v: v >= value,
        "lt": lambda v: v < value,
        "lte": lambda v: v <= value,
        "between": lambda v: value[0] <= v <= value[1],
    }
    return tests[op]


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda facts: first(facts) and second(facts)
    return lambda facts: all(part(facts) for part in parts)


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda facts: first(facts) or second(facts)
    return lambda facts: any(part(facts) for part in parts)


def _event_compare(attr: str, op: str, value: Any, kind: ValueType) -> Predicate:
    """A comparison on an attribute of the event, read directly: the hot path of campaigns."""
    read = attrgetter(attr)
    if kind is not ValueType.SCALAR and op in ("eq", "in", "contains"):
        # None never equals a value nor is in a set of values: no guard needed.
        if op == "eq":
            return lambda facts: facts.event is not None and read(facts.event) == value
        if op == "in" and kind not in SET_TYPES:
            return lambda facts: facts.event is not None and read(facts.event) in value
        if op == "contains":
            return lambda facts: facts.event is not None and value in read(facts.event)
    test = _value_test(op, value, kind)

    def compare(facts: Facts) -> bool:
        event = facts.event
        if event is None:
            return False
        found = read(event)
        return found is not None and test(found)

    return compare


@lru_cache(maxsize=4096)
def predicate(node: Node) -> Predicate:
    """A Python function of `Facts` that is true where the condition holds (cached per node)."""
    if isinstance(node, All):
        return _all([predicate(child) for child in node.children]) if node.children else _yes
    if isinstance(node, AnyOf):
        return _any([predicate(child) for child in node.children]) if node.children else _no
    if isinstance(node, Not):
        inner = predicate(node.child)
        return lambda facts: not inner(facts)
    spec = field_spec(node.field)
    assert spec is not None  # parse() accepted the field
    get, days = spec.get, node.days
    if node.op == "exists":
        wanted = bool(node.value)
        if spec.type in SET_TYPES:
            return lambda facts: bool(get(facts, days)) == wanted
        return lambda facts: (get(facts, days) is not None) == wanted
    if spec.attr is not None:
        return _event_compare(spec.attr, node.op, node.value, spec.type)
    test = _value_test(node.op, node.value, spec.type)

    def compare(facts: Facts) -> bool:
        value = get(facts, days)
        return value is not None and test(value)

    return compare


def _yes(_facts: Facts) -> bool:
    return True


def _no(_facts: Facts) -> bool:
    return False


def evaluate(node: Node, facts: Facts) -> bool:
    """True when `node` holds for `facts`."""
    return predicate(node)(facts)
