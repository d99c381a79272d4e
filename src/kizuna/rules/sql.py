"""The condition language compiled to SQL: which members a condition selects.

`member_filter` turns the same parsed node that `conditions.predicate` evaluates in Python into a
SQLAlchemy boolean over `members` (correlated subqueries read their purchases, lots and rank), so
a segment, a campaign's audience or a scenario is one definition with two back ends. Both agree
on missing values: every comparison is guarded by "the value is there", so `not` flips only what
was known, as in Python. Day counts and ages are computed in the programme's time zone by turning
"N days" into an instant boundary in Python, which keeps the SQL the same on both engines.
Profile fields (age, gender, birth month, postal area) are encrypted at rest and so select in
Python only; compiling them is an error naming the node. Purchase history is the member's own
receipts and those of everyone merged into it (`members.chains`), as in `service._member_facts`;
a merged member is selected like any other unless the caller filters on `Member.status`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    SQLColumnExpression,
    String,
    and_,
    column,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    table,
    true,
)

from kizuna.db.base import Json, UtcDateTime
from kizuna.ledger.models import Lot
from kizuna.members.chains import merged_into
from kizuna.members.models import Member
from kizuna.rules.conditions import All, AnyOf, Compare, Node, Not
from kizuna.rules.errors import ConditionError
from kizuna.rules.facts import field_spec
from kizuna.tiers.models import MemberRank, Tier

# The purchases table as the condition language reads it. Declared here rather than imported: the
# purchases area sits above the rules in the layers, and these are the only columns conditions use.
purchases = table(
    "purchases",
    column("id", Integer),
    column("member_id", Integer),
    column("partner_id", Integer),
    column("occurred_at", UtcDateTime),
    column("total_amount", Integer),
    column("refunded_amount", Integer),
    column("channel", String),
    column("store_id", Integer),
    column("lines", Json),
    column("points_used", Integer),
)
PROFILE_FIELDS = frozenset(
    {"member.age", "member.gender", "member.birth_month", "member.postal_area"}
)

Bool = ColumnElement[bool]


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which local calendar day `day` begins."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


class _Compiler:
    def __init__(self, *, as_of: datetime, tz: ZoneInfo, dialect: str) -> None:
        self.as_of = as_of
        self.tz = tz
        self.dialect = dialect
        self.today = as_of.astimezone(tz).date()

    # -- tree --------------------------------------------------------------------------------

    def node(self, node: Node, path: str) -> Bool:
        if isinstance(node, All):
            if not node.children:
                return true()
            return and_(*(self.node(c, f"{path}.all[{i}]") for i, c in enumerate(node.children)))
        if isinstance(node, AnyOf):
            if not node.children:
                return false()
            return or_(*(self.node(c, f"{path}.any[{i}]") for i, c in enumerate(node.children)))
        if isinstance(node, Not):
            return not_(self.node(node.child, f"{path}.not"))
        return self.compare(node, path)

    def compare(self, node: Compare, path: str) -> Bool:
        spec = field_spec(node.field)
        assert spec is not None
        if spec.scope == "event":
            raise ConditionError(
                f"{path}.field", f"{node.field} describes an event and cannot select members"
            )
        if node.field in PROFILE_FIELDS:
            raise ConditionError(
                f"{path}.field",
                f"{node.field} is encrypted personal data: it selects events in Python, not in SQL",
            )
        name = node.field.removeprefix("member.")
        handler: Callable[[Compare], Bool] = getattr(self, f"f_{name}")
        return handler(node)

    # -- generic comparisons -------------------------------------------------------------------

    @staticmethod
    def plain(col: SQLColumnExpression[Any], node: Compare, *, nullable: bool = True) -> Bool:
        """A comparison on a column, false where the column is NULL (as in Python)."""
        op, value = node.op, node.value
        present: Bool = col.is_not(None) if nullable else true()
        if op == "exists":
            return present if value else not_(present)
        compared: Bool
        if op == "eq":
            compared = col == value
        elif op == "ne":
            compared = col != value
        elif op == "in":
            compared = col.in_(sorted(value))
        elif op == "not_in":
            compared = col.not_in(sorted(value))
        elif op == "between":
            compared = col.between(value[0], value[1])
        else:
            compared = {
                "gt": col > value,
                "gte": col >= value,
                "lt": col < value,
                "lte": col <= value,
            }[op]
        return and_(present, compared) if nullable else compared

    @staticmethod
    def ranged(
        node: Compare, ge: Callable[[int], Bool], le: Callable[[int], Bool], present: Bool
    ) -> Bool:
        """An integer comparison built from "value >= n" and "value <= n" (derived day counts)."""

        def eq(n: int) -> Bool:
            return and_(ge(n), le(n))

        op, value = node.op, node.value
        if op == "exists":
            return present if value else not_(present)
        compared: Bool
        if op == "eq":
            compared = eq(value)
        elif op == "ne":
            compared = not_(eq(value))
        elif op == "in":
            compared = or_(*(eq(n) for n in sorted(value)))
        elif op == "not_in":
            compared = not_(or_(*(eq(n) for n in sorted(value))))
        elif op == "between":
            compared = and_(ge(value[0]), le(value[1]))
        else:
            compared = {
                "gt": lambda: ge(value + 1),
                "gte": lambda: ge(value),
                "lt": lambda: le(value - 1),
                "lte": lambda: le(value),
            }[op]()
        return and_(present, compared)

    def days_before(self, instant: SQLColumnExpression[Any], node: Compare) -> Bool:
        """Compare the local calendar days from `instant` to today (NULL instant: missing)."""

        def ge(n: int) -> Bool:  # local date of instant <= today - n
            return instant < local_midnight(self.today - timedelta(days=n - 1), self.tz)

        def le(n: int) -> Bool:  # local date of instant >= today - n
            return instant >= local_midnight(self.today - timedelta(days=n), self.tz)

        return self.ranged(node, ge, le, instant.is_not(None))

    def set_of(self, values: Callable[[], Any], node: Compare) -> Bool:
        """A set-valued field given as a correlated `select value ...` of its elements."""
        op, value = node.op, node.value
        query = values()
        element = query.selected_columns[0]
        if op == "exists":
            found = exists(query)
            return found if value else not_(found)
        if op == "contains":
            return exists(query.where(element == value))
        matching = exists(query.where(element.in_(sorted(value))))
        return matching if op == "in" else not_(matching)

    # -- purchases ---------------------------------------------------------------------------

    def live_purchases(self, days: int | None) -> list[Bool]:
        # The member's own receipts and those of everyone merged into it: they stay under the
        # buyer's id after a merge.
        where = [
            purchases.c.member_id.in_(merged_into(Member.id)),
            purchases.c.occurred_at < self.as_of,
            purchases.c.refunded_amount < purchases.c.total_amount,
        ]
        if days:
            where.append(purchases.c.occurred_at >= self.as_of - timedelta(days=days))
        return where

    def f_purchase_count(self, node: Compare) -> Bool:
        count = (
            select(func.count())
            .select_from(purchases)
            .where(*self.live_purchases(node.days))
            .scalar_subquery()
        )
        return self.plain(count, node, nullable=False)

    def f_spend(self, node: Compare) -> Bool:
        spend = (
            select(
                func.coalesce(func.sum(purchases.c.total_amount - purchases.c.refunded_amount), 0)
            )
            .where(*self.live_purchases(node.days))
            .scalar_subquery()
        )
        return self.plain(spend, node, nullable=False)

    def f_days_since_last_purchase(self, node: Compare) -> Bool:
        last = (
            select(func.max(purchases.c.occurred_at))
            .where(*self.live_purchases(None))
            .scalar_subquery()
        )
        return self.days_before(last, node)

    def f_channels_used(self, node: Compare) -> Bool:
        return self.set_of(
            lambda: (
                select(purchases.c.channel)
                .where(*self.live_purchases(node.days))
                .where(purchases.c.channel.is_not(None))
            ),
            node,
        )

    def f_stores_visited(self, node: Compare) -> Bool:
        return self.set_of(
            lambda: (
                select(purchases.c.store_id)
                .where(*self.live_purchases(node.days))
                .where(purchases.c.store_id.is_not(None))
            ),
            node,
        )

    def f_categories_bought(self, node: Compare) -> Bool:
        def categories() -> Any:
            # Receipt lines are a JSON array; each engine unnests it its own way.
            category: SQLColumnExpression[Any]
            if self.dialect == "postgresql":
                line = func.jsonb_array_elements(purchases.c.lines).table_valued("value")
                category = line.c.value.op("->>")("category")
            else:
                line = func.json_each(purchases.c.lines).table_valued("value")
                category = func.json_extract(line.c.value, "$.category")
            return (
                select(category)
                .select_from(purchases)
                .join(line, true())
                .where(*self.live_purchases(node.days))
                .where(category.is_not(None), category != "")
            )

        return self.set_of(categories, node)

    # -- points ------------------------------------------------------------------------------

    def available_lots(self) -> list[Bool]:
        return [
            Lot.member_id == Member.id,
            Lot.remaining > 0,
            Lot.available_at <= self.as_of,
            or_(Lot.expires_at.is_(None), Lot.expires_at > self.as_of),
        ]

    def f_balance(self, node: Compare) -> Bool:
        total = (
            select(func.coalesce(func.sum(Lot.remaining), 0))
            .where(*self.available_lots())
            .scalar_subquery()
        )
        return self.plain(total, node, nullable=False)

    def f_points_expiring(self, node: Compare) -> Bool:
        until = self.as_of + timedelta(days=node.days or 0)
        total = (
            select(func.coalesce(func.sum(Lot.remaining), 0))
            .where(*self.available_lots(), Lot.expires_at.is_not(None), Lot.expires_at <= until)
            .scalar_subquery()
        )
        return self.plain(total, node, nullable=False)

    # -- the member --------------------------------------------------------------------------

    def f_rank(self, node: Compare) -> Bool:
        held = (
            select(Tier.code)
            .join(MemberRank, MemberRank.tier_id == Tier.id)
            .where(MemberRank.member_id == Member.id)
            .scalar_subquery()
        )
        # No rank row: the member holds the programme's lowest tier, if it has tiers at all.
        lowest = (
            select(Tier.code)
            .where(Tier.program_id == Member.program_id)
            .order_by(Tier.level)
            .limit(1)
            .scalar_subquery()
        )
        return self.plain(func.coalesce(held, lowest), node)

    def f_days_since_joining(self, node: Compare) -> Bool:
        return self.days_before(Member.joined_at, node)

    def f_join_channel(self, node: Compare) -> Bool:
        return self.plain(Member.join_channel, node)

    def f_join_store(self, node: Compare) -> Bool:
        return self.plain(Member.join_store_id, node)


def member_filter(node: Node, *, as_of: datetime, tz: ZoneInfo, dialect: str) -> Bool:
    """A boolean over `members` true for the members `node` selects at `as_of`."""
    return _Compiler(as_of=as_of, tz=tz, dialect=dialect).node(node, "$")
