"""The programme-wide evaluation of ranks: every member re-ranked at the evaluation date.

`evaluate_ranks` is the periodic job — one set-based pass in SQL over every ranked or active member
of a programme, so a million members take seconds, not hours: aggregate the metric per member into
a temporary table of changes, then append the history, move the ranks and publish the events from
it. A merged member's rows count for the member who now stands for it, at the end of its chain of
merges, and the merged member itself is never ranked. `evaluate_due` runs it for every programme
whose evaluation date has come.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Select,
    Table,
    case,
    cast,
    func,
    insert,
    literal,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kizuna.core.errors import NotFound
from kizuna.members.domain import MemberStatus
from kizuna.members.models import Member, MemberMerge
from kizuna.outbox.models import OutboxEvent
from kizuna.tiers.domain import Metric, RankRules
from kizuna.tiers.errors import ErrorCode
from kizuna.tiers.models import MemberRank, RankChange, RankPolicy
from kizuna.tiers.service import metric_sums, rules_of


def _chains(program_id: int) -> Select[Any]:
    """(member_id, live_id) of every merged member of the programme: the member who now stands
    for it, at the end of its chain of merges."""
    chain = (
        select(MemberMerge.merged_id.label("member_id"), MemberMerge.survivor_id.label("live_id"))
        .join(Member, Member.id == MemberMerge.survivor_id)
        .where(Member.program_id == program_id, Member.status != MemberStatus.MERGED)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(MemberMerge.merged_id, chain.c.live_id).join(
            chain, MemberMerge.survivor_id == chain.c.member_id
        )
    )
    return select(chain.c.member_id, chain.c.live_id)


def _programme_metric(
    metric: Metric, *, program_id: int, start: datetime, split: datetime, end: datetime
) -> Select[Any]:
    """Per member of the programme with rows in the window, merged or not: the metric over
    [start, split) and over [split, end)."""
    query, owner = metric_sums(metric, start=start, split=split, end=end)
    return (
        query.add_columns(owner.label("member_id"))
        .join(Member, Member.id == owner)
        .where(Member.program_id == program_id)
        .group_by(owner)
    )


_changes = Table(
    "tmp_rank_changes",
    MetaData(),
    Column("member_id", BigInteger, primary_key=True),
    Column("from_tier_id", BigInteger),
    Column("to_tier_id", BigInteger),
    Column("metric_value", BigInteger),
    prefixes=["TEMPORARY"],
)
_stand_ins = Table(
    "tmp_stand_ins",
    MetaData(),
    Column("member_id", BigInteger, primary_key=True),
    Column("live_id", BigInteger),
    prefixes=["TEMPORARY"],
)


def evaluate_ranks(session: Session, *, program_id: int, as_of: datetime) -> int:
    """Re-rank every member of a programme at its evaluation date; returns how many changed.

    The rank becomes the tier of the window just ended, or of the current window so far when
    that is higher (an upgrade already earned is never taken back before its time).
    """
    rules = rules_of(session, program_id)
    if rules is None:
        raise NotFound(ErrorCode.RANK_POLICY_NOT_FOUND, f"programme {program_id} has no ranks")
    lowest = rules.lowest
    assert lowest is not None
    start, split, end = rules.evaluation_periods(as_of)
    measured = _programme_metric(
        rules.metric, program_id=program_id, start=start, split=split, end=end
    ).subquery()
    everyone = union_all(
        select(measured.c.member_id, measured.c.previous, measured.c.current),
        select(MemberRank.member_id, literal(0), literal(0)).where(
            MemberRank.program_id == program_id
        ),
    ).subquery()
    # A merged member is never ranked: its rows, and any rank row it kept, count for the member
    # who now stands for it, added to that member's own (and to its rank row's zeros). Mapped
    # after the per-member sums, so that the big aggregate still groups purchases by their own
    # member's index; the few merged members go to a temporary table first, analysed, because a
    # recursive query's row estimate is far too high for the join to be planned well.
    connection = session.connection()
    _stand_ins.create(connection, checkfirst=True)
    session.execute(insert(_stand_ins).from_select(["member_id", "live_id"], _chains(program_id)))
    session.execute(text("ANALYZE tmp_stand_ins"))
    member_id = func.coalesce(_stand_ins.c.live_id, everyone.c.member_id)
    per_member = (
        select(
            member_id.label("member_id"),
            cast(func.sum(everyone.c.previous), BigInteger).label("previous"),
            cast(func.sum(everyone.c.current), BigInteger).label("current"),
        )
        .select_from(everyone)
        .outerjoin(_stand_ins, _stand_ins.c.member_id == everyone.c.member_id)
        .group_by(member_id)
        .subquery()
    )
    value = case(
        (per_member.c.previous > per_member.c.current, per_member.c.previous),
        else_=per_member.c.current,
    )
    target = case(
        *[(value >= tier.threshold, tier.id) for tier in reversed(rules.tiers[1:])],
        else_=lowest.id,
    )
    held = func.coalesce(MemberRank.tier_id, lowest.id)
    changes = (
        select(per_member.c.member_id, held, target, value)
        .select_from(per_member)
        .outerjoin(MemberRank, MemberRank.member_id == per_member.c.member_id)
        .where(target != held)
    )
    # A failure rolls the whole transaction back, the temporary tables' creation included.
    _changes.create(connection, checkfirst=True)
    session.execute(
        insert(_changes).from_select(
            ["member_id", "from_tier_id", "to_tier_id", "metric_value"], changes
        )
    )
    changed = int(session.scalar(select(func.count()).select_from(_changes)) or 0)
    # Fresh statistics, so that the statements joining the changes plan for their real size.
    session.execute(text("ANALYZE tmp_rank_changes"))
    _apply_changes(session, program_id=program_id, rules=rules, as_of=as_of)
    _changes.drop(connection)
    _stand_ins.drop(connection)
    policy = session.get(RankPolicy, program_id)
    assert policy is not None
    policy.last_evaluated_at = as_of
    session.flush()
    return changed


def _apply_changes(session: Session, *, program_id: int, rules: RankRules, as_of: datetime) -> None:
    """Append history, move ranks and publish `rank.changed` from the table of changes."""
    c = _changes.c
    session.execute(
        insert(RankChange).from_select(
            [
                "member_id",
                "program_id",
                "from_tier_id",
                "to_tier_id",
                "changed_at",
                "reason",
                "metric_value",
            ],
            select(
                c.member_id,
                literal(program_id),
                c.from_tier_id,
                c.to_tier_id,
                literal(as_of, RankChange.changed_at.type),
                literal("evaluation"),
                c.metric_value,
            ),
        )
    )
    upsert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(
        MemberRank
    )
    session.execute(
        upsert.from_select(
            ["member_id", "program_id", "tier_id", "since"],
            select(
                c.member_id,
                literal(program_id),
                c.to_tier_id,
                literal(as_of, MemberRank.since.type),
            ).where(true()),  # SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT
        ).on_conflict_do_update(
            index_elements=[MemberRank.member_id],
            set_={"tier_id": upsert.excluded.tier_id, "since": upsert.excluded.since},
        )
    )
    code = case(*[(c.to_tier_id == tier.id, tier.code) for tier in rules.tiers])
    previous = case(*[(c.from_tier_id == tier.id, tier.code) for tier in rules.tiers])
    build = (
        func.json_build_object
        if session.get_bind().dialect.name == "postgresql"
        else func.json_object
    )
    payload = build(
        "member_id",
        c.member_id,
        "from",
        previous,
        "to",
        code,
        "reason",
        "evaluation",
        "metric_value",
        c.metric_value,
    )
    session.execute(
        insert(OutboxEvent).from_select(
            ["event_type", "member_id", "payload", "created_at"],
            select(
                literal("rank.changed"),
                c.member_id,
                payload,
                literal(as_of, OutboxEvent.created_at.type),
            ),
        )
    )


def evaluate_due(session: Session, *, as_of: datetime) -> int:
    """Evaluate every programme whose evaluation date has come since its last evaluation."""
    changed = 0
    for policy in session.scalars(select(RankPolicy).order_by(RankPolicy.program_id)).all():
        rules = rules_of(session, policy.program_id)
        if rules is None:
            continue
        boundary = rules.evaluation_boundary(as_of)
        if policy.last_evaluated_at is None or policy.last_evaluated_at < boundary:
            changed += evaluate_ranks(session, program_id=policy.program_id, as_of=as_of)
    return changed
