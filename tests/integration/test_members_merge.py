"""Merging duplicates (名寄せ) and withdrawal (退会) on a real database (both engines)."""

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from kizuna.core.errors import KizunaError
from kizuna.ledger import reversal
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy, LotKind
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.ledger.reconcile import check as reconcile
from kizuna.members import cards, merge, service, withdrawal
from kizuna.members.domain import Profile
from kizuna.members.models import MemberProfile
from kizuna.rules.domain import BreakdownRow
from tests import factories as f

POLICY = LedgerPolicy()


def _earn(session, member, points, *, at=f.T0, kind="standard", available_at=None):
    return ledger.earn(
        session,
        member_id=member.id,
        rows=[BreakdownRow("base", "base", points, kind=kind)],
        policy=POLICY,
        occurred_at=at,
        as_of=at,
        available_at=available_at,
    )


@pytest.fixture
def program(session):
    return f.program(session)


def _hanako(session, program, **identifiers):
    return service.create_member(
        session,
        program_id=program.id,
        joined_at=f.T0,
        identifiers=identifiers,
        profile=Profile(
            name_kanji="山田 花子",
            name_kana="やまだ はなこ",
            birth_date=date(1985, 7, 3),
            postal_code="150-0001",
        ),
    )


def test_duplicates_by_phone_and_by_name_and_birth_date_are_proposed_with_reasons(session, program):
    first = _hanako(session, program, phone="090-1234-5678")
    by_name = service.create_member(
        session,
        program_id=program.id,
        joined_at=f.T0,
        profile=Profile(name_kanji="山田花子", name_kana="ﾔﾏﾀﾞ ﾊﾅｺ", birth_date=date(1985, 7, 3)),
    )
    f.member(session, program, email="other@example.jp")
    pairs = merge.find_candidates(session, program_id=program.id)
    assert [(p.member_id, p.other_id) for p in pairs] == [(first.id, by_name.id)]
    assert {"same_kana", "same_kanji", "same_birth_date"} <= set(pairs[0].reasons)
    assert [c.other_id for c in merge.candidates_for(session, member_id=first.id)] == [by_name.id]


def test_merge_moves_lots_debt_identifiers_and_cards_and_keeps_every_invariant(session, program):
    survivor = _hanako(session, program, email="hanako@example.jp")
    merged = f.member(session, program, phone="090-1234-5678")
    _, card_number = cards.issue_card(session, member_id=merged.id, as_of=f.T0)
    _earn(session, survivor, 100)
    earned = _earn(session, merged, 300)
    _earn(session, merged, 70, available_at=f.T0 + timedelta(days=30))  # pending
    spent = ledger.redeem(
        session, member_id=merged.id, points=200, policy=POLICY, occurred_at=f.T0, as_of=f.T0
    )
    later = f.T0 + timedelta(days=10)
    _earn(session, merged, 50, kind="limited", available_at=later)  # pending too
    reversal.reverse(session, entry_id=earned.entry_id, policy=POLICY, as_of=f.T0)  # → debt
    before = ledger.balance(session, member_id=merged.id, policy=POLICY, as_of=f.T0)
    assert before.debt > 0
    assert before.pending == 120
    assert spent is not None

    record = merge.merge_members(
        session, survivor_id=survivor.id, merged_id=merged.id, actor="staff:1", as_of=f.T0
    )

    after = ledger.balance(session, member_id=survivor.id, policy=POLICY, as_of=f.T0)
    assert after.available == 100 + before.available
    assert (after.pending, after.debt) == (120, before.debt)
    emptied = ledger.balance(session, member_id=merged.id, policy=POLICY, as_of=f.T0)
    assert (emptied.available, emptied.pending, emptied.debt) == (0, 0, 0)
    assert reconcile(session, [survivor.id, merged.id]) == []
    types = session.scalars(
        select(JournalEntry.entry_type).where(
            JournalEntry.id.in_([record.out_entry_id, record.in_entry_id])
        )
    ).all()
    assert sorted(types) == ["merge_in", "merge_out"]
    limited = session.scalars(
        select(Lot).where(Lot.member_id == survivor.id, Lot.kind == str(LotKind.LIMITED))
    ).all()
    assert [(lot.remaining, lot.available_at) for lot in limited] == [(50, later)]
    # Old identifiers and cards reach the survivor; the merged member points to it.
    assert service.find_by_identifier(session, kind="phone", value="09012345678").id == survivor.id
    assert cards.resolve_card(session, card_number).member.id == survivor.id
    assert service.get_member(session, merged.id).merged_into_id == survivor.id
    assert service.history_member_ids(session, survivor.id) == [survivor.id, merged.id]
    assert service.get_profile(session, survivor.id).phone == "+819012345678"
    assert session.get(MemberProfile, merged.id) is None


def test_a_merged_member_cannot_be_merged_again_or_changed(session, program):
    a, b, c = (f.member(session, program) for _ in range(3))
    merge.merge_members(session, survivor_id=a.id, merged_id=b.id, actor="staff:1", as_of=f.T0)
    with pytest.raises(KizunaError) as refused:
        merge.merge_members(session, survivor_id=c.id, merged_id=b.id, actor="staff:1", as_of=f.T0)
    assert refused.value.code == "member_not_active"
    with pytest.raises(KizunaError):
        merge.merge_members(session, survivor_id=a.id, merged_id=a.id, actor="staff:1", as_of=f.T0)


def test_withdrawal_forfeits_points_erases_data_and_releases_identifiers(session, program):
    member = _hanako(session, program, phone="090-5555-6666", email="bye@example.jp")
    service.set_consent(
        session, member_id=member.id, channel="email", granted=True, source="app", as_of=f.T0
    )
    _, number = cards.issue_card(session, member_id=member.id, as_of=f.T0)
    _earn(session, member, 500)

    result = withdrawal.withdraw(session, member_id=member.id, actor="staff:1", as_of=f.T0)

    assert result.forfeited_points == 500
    assert result.identifiers_released == 3
    view = ledger.balance(session, member_id=member.id, policy=POLICY, as_of=f.T0)
    assert view.available == 0
    assert service.get_member(session, member.id).status == "withdrawn"
    assert session.get(MemberProfile, member.id) is None
    assert not service.has_consent(session, member_id=member.id, channel="email")
    with pytest.raises(KizunaError) as blocked:
        cards.resolve_card(session, number)
    assert blocked.value.code == "card_blocked"
    with pytest.raises(KizunaError):
        service.find_by_identifier(session, kind="email", value="bye@example.jp")
    again = f.member(session, program, phone="090-5555-6666")  # the phone is free again
    assert service.find_by_identifier(session, kind="phone", value="09055556666").id == again.id
    entries = ledger.entries_of(session, [member.id])
    assert [e.entry_type for e in entries] == ["earn", "forfeit"]  # history kept
    assert reconcile(session, [member.id]) == []
    with pytest.raises(KizunaError) as twice:
        withdrawal.withdraw(session, member_id=member.id, actor="staff:1", as_of=f.T0)
    assert twice.value.code == "already_withdrawn"
