"""Use cases of ranks: configure tiers, upgrade at once, show progress.

`after_purchase` runs in the purchase's transaction (after the earn, under the member's lock): it
measures the current window and upgrades when a threshold is crossed. The periodic re-ranking of a
whole programme is `evaluation.evaluate_ranks`, built on the same `metric_sums`.

A merge (名寄せ) leaves the merged member's receipts and journal under its own id; the metric of a
member counts the rows of everyone merged into it, transitively (`member_merges`), and
`after_merge` gives the survivor the higher of the two ranks at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BindParameter, Select, bindparam, case, func, select
from sqlalchemy.orm import Session

from kizuna.core.errors import NotFound
from kizuna.db.prepared import Prepared
from kizuna.ledger.models import JournalEntry
from kizuna.members.chains import merged_into
from kizuna.members.models import Member
from kizuna.outbox.service import publish
from kizuna.partners.models import Program
from kizuna.rules.sql import purchases
from kizuna.tiers.domain import (
    Metric,
    Progress,
    RankRules,
    TierSpec,
    Window,
    progress_of,
    rank_after_merge,
    validate_tiers,
)
from kizuna.tiers.models import MemberRank, RankChange, RankPolicy, Tier


@dataclass(frozen=True)
class TierInput:
    """A tier as an operator defines it; levels follow the thresholds."""

    code: str
    name: str
    threshold: int
    earn_multiplier_pct: int = 100
    birthday_points: int = 0


def _spec(tier: Tier) -> TierSpec:
    return TierSpec(
        id=tier.id,
        code=tier.code,
        name=tier.name,
        level=tier.level,
        threshold=tier.threshold,
        earn_multiplier_pct=tier.earn_multiplier_pct,
        birthday_points=tier.birthday_points,
    )


def configure(
    session: Session,
    *,
    program_id: int,
    metric: Metric,
    window: Window,
    tiers: Sequence[TierInput],
    fiscal_year_start_month: int = 4,
) -> RankRules:
    """Set a programme's ranking; tiers are matched by code (new codes are added)."""
    ordered = sorted(tiers, key=lambda tier: tier.threshold)
    validate_tiers(
        [
            TierSpec(0, t.code, t.name, level, t.threshold, t.earn_multiplier_pct)
            for level, t in enumerate(ordered)
        ]
    )
    policy = session.get(RankPolicy, program_id)
    if policy is None:
        policy = RankPolicy(program_id=program_id)
        session.add(policy)
    policy.metric, policy.window = str(metric), str(window)
    policy.fiscal_year_start_month = fiscal_year_start_month
    existing = {
        tier.code: tier
        for tier in session.scalars(select(Tier).where(Tier.program_id == program_id))
    }
    # Levels are unique per programme: park the old ones out of the way before renumbering.
    for tier in existing.values():
        tier.level = -tier.id
    session.flush()
    for level, given in enumerate(ordered):
        found = existing.get(given.code)
        tier = (
            found
            if found is not None
            else Tier(program_id=program_id, code=given.code, benefits={})
        )
        session.add(tier)
        tier.name, tier.level, tier.threshold = given.name, level, given.threshold
        tier.earn_multiplier_pct = given.earn_multiplier_pct
        tier.birthday_points = given.birthday_points
    session.flush()
    rules = rules_of(session, program_id)
    assert rules is not None
    return rules


def rules_of(session: Session, program_id: int) -> RankRules | None:
    """The programme's ranking, or None when it has no ranks."""
    row = session.execute(
        select(RankPolicy, Program.timezone)
        .join(Program, Program.id == RankPolicy.program_id)
        .where(RankPolicy.program_id == program_id)
    ).one_or_none()
    if row is None:
        return None
    policy, timezone = row
    tiers = session.scalars(
        select(Tier).where(Tier.program_id == program_id).order_by(Tier.level)
    ).all()
    if not tiers:
        return None
    return RankRules(
        metric=Metric(policy.metric),
        window=Window(policy.window),
        fiscal_year_start_month=policy.fiscal_year_start_month,
        tiers=[_spec(tier) for tier in tiers],
        tz=ZoneInfo(timezone),
    )


def _program_of(session: Session, member_id: int) -> int:
    program_id = session.scalar(select(Member.program_id).where(Member.id == member_id))
    if program_id is None:
        raise NotFound("member_not_found", f"member {member_id} not found")
    return program_id


def _tier(rules: RankRules, tier_id: int | None) -> TierSpec | None:
    return next((tier for tier in rules.tiers if tier.id == tier_id), rules.lowest)


def rank_at(
    session: Session, *, member_id: int, at: datetime, rules: RankRules | None = None
) -> TierSpec | None:
    """The tier in force for a member at `at`: the last change strictly before it, else the
    lowest. Strictly: the receipt that crosses a threshold earns at the rank it started with."""
    rules = rules or rules_of(session, _program_of(session, member_id))
    if rules is None:
        return None
    tier_id = session.scalar(
        select(RankChange.to_tier_id)
        .where(RankChange.member_id == member_id, RankChange.changed_at < at)
        .order_by(RankChange.changed_at.desc(), RankChange.id.desc())
        .limit(1)
    )
    return _tier(rules, tier_id)


def current_rank(
    session: Session, *, member_id: int, rules: RankRules | None = None
) -> TierSpec | None:
    """The member's rank now (None when the programme has no ranks)."""
    rules = rules or rules_of(session, _program_of(session, member_id))
    if rules is None:
        return None
    tier_id = session.scalar(select(MemberRank.tier_id).where(MemberRank.member_id == member_id))
    return _tier(rules, tier_id)


def _metric_source(metric: Metric) -> tuple[Any, Any, Any]:
    """(member id, instant, value) columns of the rows a metric adds up."""
    if metric is Metric.SPEND:
        return (
            purchases.c.member_id,
            purchases.c.occurred_at,
            purchases.c.total_amount - purchases.c.refunded_amount,
        )
    if metric is Metric.VISITS:
        live = purchases.c.refunded_amount < purchases.c.total_amount
        return purchases.c.member_id, purchases.c.occurred_at, case((live, 1), else_=0)
    reversed_points = (
        select(func.coalesce(func.sum(JournalEntry.reversed_points), 0))
        .where(JournalEntry.reverses_entry_id == _earn.c.id)
        .scalar_subquery()
    )
    return _earn.c.member_id, _earn.c.occurred_at, _earn.c.amount - reversed_points


_earn = JournalEntry.__table__.alias("earn")


def metric_sums(metric: Metric, *, start: Any, split: Any, end: Any) -> tuple[Select[Any], Any]:
    """The metric summed over [start, split) ("previous") and over [split, end) ("current"), and
    the column of the member each summed row belongs to (for the caller's filter or grouping)."""
    owner, instant, value = _metric_source(metric)
    query = select(
        func.coalesce(func.sum(case((instant < split, value), else_=0)), 0).label("previous"),
        func.coalesce(func.sum(case((instant >= split, value), else_=0)), 0).label("current"),
    ).where(instant >= start, instant < end)
    if metric is Metric.POINTS:
        query = query.where(_earn.c.entry_type == "earn")
    return query, owner


# Built once per metric: `after_purchase` runs it for every receipt of a ranked programme, and
# building the statement (with its chain of merges) costs far more than running it.
_MEMBER_METRIC: dict[Metric, Prepared] = {}


def _member_metric(metric: Metric) -> Prepared:
    prepared = _MEMBER_METRIC.get(metric)
    if prepared is None:
        end: BindParameter[datetime] = bindparam("end")
        query, owner = metric_sums(metric, start=bindparam("start"), split=end, end=end)
        prepared = _MEMBER_METRIC[metric] = Prepared(
            query.where(owner.in_(merged_into(bindparam("member_id")))),
            ("member_id", "start", "end"),
        )
    return prepared


def metric_value(
    session: Session, *, member_id: int, metric: Metric, start: datetime, end: datetime
) -> int:
    """The member's metric over [start, end), with the rows of everyone merged into it."""
    session.flush()  # the statement runs on the connection, past the session's autoflush
    rows = _member_metric(metric).rows(
        session, {"member_id": member_id, "start": start, "end": end}
    )
    return int(rows[0][0])


def _record_change(
    session: Session,
    *,
    member_id: int,
    program_id: int,
    before: TierSpec | None,
    after: TierSpec,
    value: int,
    reason: str,
    at: datetime,
) -> RankChange:
    change = RankChange(
        member_id=member_id,
        program_id=program_id,
        from_tier_id=before.id if before else None,
        to_tier_id=after.id,
        changed_at=at,
        reason=reason,
        metric_value=value,
    )
    session.add(change)
    held = session.get(MemberRank, member_id)
    if held is None:
        session.add(
            MemberRank(member_id=member_id, program_id=program_id, tier_id=after.id, since=at)
        )
    else:
        held.tier_id, held.since = after.id, at
    session.flush()
    publish(
        session,
        event_type="rank.changed",
        payload={
            "member_id": member_id,
            "from": before.code if before else None,
            "to": after.code,
            "reason": reason,
            "metric_value": value,
        },
        as_of=at,
        member_id=member_id,
    )
    return change


def after_purchase(
    session: Session, *, member_id: int, occurred_at: datetime, as_of: datetime
) -> RankChange | None:
    """Upgrade the member at once if the window of this purchase now meets a higher threshold."""
    program_id = _program_of(session, member_id)
    rules = rules_of(session, program_id)
    if rules is None:
        return None
    at = as_of if rules.window is Window.ROLLING_12M else occurred_at
    start, end = rules.period_of(at)
    value = metric_value(session, member_id=member_id, metric=rules.metric, start=start, end=end)
    current = current_rank(session, member_id=member_id, rules=rules)
    return _raise(
        session,
        member_id=member_id,
        program_id=program_id,
        held=current,
        target=rules.tier_for(value),
        value=value,
        reason="upgrade",
        at=as_of,
    )


def _raise(
    session: Session,
    *,
    member_id: int,
    program_id: int,
    held: TierSpec | None,
    target: TierSpec | None,
    value: int,
    reason: str,
    at: datetime,
) -> RankChange | None:
    """Move the member up to `target` if it is above the rank held (never down: only the
    evaluation lowers a rank)."""
    if target is None or (held is not None and target.level <= held.level):
        return None
    return _record_change(
        session,
        member_id=member_id,
        program_id=program_id,
        before=held,
        after=target,
        value=value,
        reason=reason,
        at=at,
    )


def after_merge(
    session: Session, *, survivor_id: int, merged_id: int, as_of: datetime
) -> RankChange | None:
    """Carry a merge into ranks, once it is recorded (`member_merges`): the survivor holds at
    least the higher of the two ranks, or the tier their combined metric reaches (a change with
    reason "merge"); the merged member holds no rank any more."""
    program_id = _program_of(session, survivor_id)
    rules = rules_of(session, program_id)
    if rules is None:
        return None
    held = current_rank(session, member_id=survivor_id, rules=rules)
    merged_rank = current_rank(session, member_id=merged_id, rules=rules)
    merged_row = session.get(MemberRank, merged_id)
    if merged_row is not None:
        # Its history stays: a return of its receipts earns back at the rank it held then.
        session.delete(merged_row)
    start, end = rules.period_of(as_of)
    value = metric_value(session, member_id=survivor_id, metric=rules.metric, start=start, end=end)
    return _raise(
        session,
        member_id=survivor_id,
        program_id=program_id,
        held=held,
        target=rank_after_merge(rules, [held, merged_rank], value),
        value=value,
        reason="merge",
        at=as_of,
    )


def progress(session: Session, *, member_id: int, as_of: datetime) -> Progress | None:
    """The member's rank and progress to the next one (None when the programme has no ranks)."""
    rules = rules_of(session, _program_of(session, member_id))
    if rules is None:
        return None
    start, end = rules.period_of(as_of)
    value = metric_value(
        session, member_id=member_id, metric=rules.metric, start=start, end=min(end, as_of)
    )
    tier = current_rank(session, member_id=member_id, rules=rules)
    return progress_of(rules, tier, value, as_of)


def history(session: Session, *, member_id: int) -> list[RankChange]:
    """The member's rank changes, oldest first."""
    return list(
        session.scalars(
            select(RankChange)
            .where(RankChange.member_id == member_id)
            .order_by(RankChange.changed_at, RankChange.id)
        )
    )
