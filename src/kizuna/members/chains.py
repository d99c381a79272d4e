"""Chains of merges (名寄せ) in SQL: whose receipts and journal count for a member.

A merge leaves the merged member's receipts and journal under its own id (see `merge`), so a
reader of a person's whole history follows `member_merges` from the member down, transitively:
A ← B ← C counts for A the rows of A, B and C. Ranks and the conditions of campaigns and
segments read purchases this way; `service.history_member_ids` is the same walk in Python.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnExpressionArgument, CompoundSelect, cast, select, union_all

from kizuna.members.models import Member, MemberMerge


def merged_into(member_id: ColumnExpressionArgument[Any]) -> CompoundSelect[Any]:
    """The ids of the member and of everyone merged into it, transitively: `x.in_(...)` of it.

    `member_id` is a bound parameter, or `Member.id` of an enclosing query over `members`: the
    walk is written inside the subquery, so it correlates, one walk per member. It starts from
    the member's merges rather than the member, so that for the many members nobody was merged
    into it is one index probe of `member_merges.survivor_id` and the recursion never runs.
    """
    merged = (
        select(MemberMerge.merged_id.label("member_id"))
        .where(MemberMerge.survivor_id == member_id)
        .correlate(Member)
        .cte("merged", recursive=True, nesting=True)
    )
    merged = merged.union_all(
        select(MemberMerge.merged_id).join(merged, MemberMerge.survivor_id == merged.c.member_id)
    )
    itself = select(cast(member_id, BigInteger)).correlate(Member)
    return union_all(itself, select(merged.c.member_id)).add_cte(merged, nest_here=True)
