"""Members, profiles, identifiers, consents and cards on a real database (both engines)."""

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from kizuna.core.errors import KizunaError
from kizuna.members import cards, merge, service
from kizuna.members.domain import Profile, card_number
from kizuna.members.models import MemberIdentifier, MemberProfile
from tests import factories as f


@pytest.fixture
def program(session):
    return f.program(session)


def test_a_member_is_found_by_any_common_writing_of_phone_and_email(session, program):
    member = service.create_member(
        session,
        program_id=program.id,
        joined_at=f.T0,
        identifiers={"phone": "090-1234-5678", "email": "Hanako.Yamada@Example.JP"},
    )
    for kind, written in [
        ("phone", "０９０－１２３４－５６７８"),
        ("phone", "+81 90 1234 5678"),
        ("phone", "819012345678"),
        ("email", "hanako.yamada@example.jp"),
        ("email", "ＨＡＮＡＫＯ．ＹＡＭＡＤＡ＠ＥＸＡＭＰＬＥ．ＪＰ"),
    ]:
        assert service.find_by_identifier(session, kind=kind, value=written).id == member.id


def test_identifier_values_are_stored_as_blind_indexes_not_in_clear(session, program):
    member = f.member(session, program, email="taro@example.jp", line="U1234")
    rows = session.scalars(
        select(MemberIdentifier).where(MemberIdentifier.member_id == member.id)
    ).all()
    by_type = {row.type: row for row in rows}
    assert "taro" not in by_type["email"].value
    assert len(by_type["email"].value) == 64
    assert by_type["email"].value_enc.startswith("k1:")
    assert by_type["line"].value == "U1234"
    assert by_type["line"].value_enc is None


def test_the_same_phone_cannot_belong_to_two_members_however_written(session, program):
    f.member(session, program, phone="090-2222-3333")
    with pytest.raises(KizunaError) as taken:
        f.member(session, program, phone="+81 90 2222 3333")
    assert taken.value.code == "identifier_taken"


def test_profile_is_encrypted_field_by_field_and_reads_back_normalised(session, program):
    member = service.create_member(
        session,
        program_id=program.id,
        joined_at=f.T0,
        identifiers={"email": "k.sato@example.jp"},
        profile=Profile(
            name_kanji="佐藤 健",
            name_kana="さとう けん",
            birth_date=date(1990, 5, 17),
            postal_code="〒１５０－０００１",
            address="東京都渋谷区神宮前１丁目２番３号",
        ),
    )
    row = session.get(MemberProfile, member.id)
    assert all(
        value is None or value.startswith("k1:")
        for value in (row.name_kanji_enc, row.name_kana_enc, row.birth_date_enc, row.email_enc)
    )
    profile = service.get_profile(session, member.id)
    assert profile.name_kana == "サトウケン"
    assert profile.postal_code == "1500001"
    assert profile.email == "k.sato@example.jp"  # the sign-up e-mail is the contact too
    updated = service.update_profile(
        session, member_id=member.id, changes={"address": None, "phone": "03-1234-5678"}, as_of=f.T0
    )
    assert updated.address is None
    assert updated.phone == "+81312345678"


def test_withdrawing_a_consent_takes_effect_at_once_and_history_is_kept(session, program):
    member = service.create_member(
        session, program_id=program.id, joined_at=f.T0, consents={"email": True, "dm": False}
    )
    assert service.has_consent(session, member_id=member.id, channel="email")
    service.set_consent(
        session, member_id=member.id, channel="email", granted=False, source="mypage", as_of=f.T0
    )
    assert not service.has_consent(session, member_id=member.id, channel="email")
    states = service.consents_of(session, member.id)
    assert states["email"].source == "mypage"
    assert not states["push"].granted
    assert len(service.consent_history(session, member.id)) == 3


def test_card_lifecycle_issue_activate_block_and_reissue_in_one_step(session, program):
    member = f.member(session, program)
    card, number = cards.issue_card(session, member_id=member.id, as_of=f.T0, activate=False)
    with pytest.raises(KizunaError) as inactive:
        cards.resolve_card(session, number)
    assert inactive.value.code == "card_not_active"
    cards.activate_card(session, card_id=card.id, as_of=f.T0)
    assert cards.resolve_card(session, number).member.id == member.id
    new, new_number = cards.reissue_card(
        session, card_id=card.id, reason="lost", as_of=f.T0 + timedelta(days=1)
    )
    with pytest.raises(KizunaError) as blocked:
        cards.resolve_card(session, number)
    assert blocked.value.code == "card_blocked"
    assert blocked.value.status == 409
    assert blocked.value.details == {"block_reason": "lost", "replaced": True}
    assert service.find_by_identifier(session, kind="card", value=new_number).id == member.id
    assert new_number != number
    assert new.status == "active"


def test_legacy_card_numbers_register_and_programme_numbers_need_their_check_digit(
    session, program
):
    member = f.member(session, program, card="1234-5678-9012")
    assert service.find_by_identifier(session, kind="card", value="123456789012").id == member.id
    valid = card_number(cards.ensure_series(session, program_id=program.id).prefix, 1)
    wrong_digit = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    with pytest.raises(KizunaError) as wrong:
        cards.register_card(session, member_id=member.id, number=wrong_digit, as_of=f.T0)
    assert wrong.value.code == "invalid_identifier"


def test_identifiers_are_listed_masked(session, program):
    member = f.member(session, program, phone="090-1234-5678", email="hanako@example.jp")
    views = {view.type: view.masked for view in service.identifiers_of(session, member.id)}
    assert views == {"phone": "*********5678", "email": "h***@example.jp"}


def _both_paths(session, kind, value):
    """The member id by the ORM lookup and by the lean Core path, or the refusal's code."""

    def outcome(lookup):
        try:
            return lookup()
        except KizunaError as refused:
            return refused.code

    return (
        outcome(lambda: service.find_by_identifier(session, kind=kind, value=value).id),
        outcome(
            lambda: service.member_id_by_identifier(session.connection(), kind=kind, value=value)
        ),
    )


def test_the_lean_lookup_finds_what_the_orm_lookup_finds_and_refuses_alike(session, program):
    member = f.member(session, program, phone="090-4444-5555", email="jiro@example.jp")
    other = f.member(session, program)
    card, number = cards.issue_card(session, member_id=other.id, as_of=f.T0)
    _, issued_number = cards.issue_card(session, member_id=other.id, as_of=f.T0, activate=False)
    for kind, written, expected in [
        ("phone", "０９０－４４４４－５５５５", member.id),
        ("phone", "+81 90 4444 5555", member.id),
        ("email", "JIRO@EXAMPLE.JP", member.id),
        ("card", number, other.id),
        ("phone", "090-4444-5556", "member_not_found"),
        ("card", "1234 5678 9012", "card_not_found"),
        ("card", issued_number, "card_not_active"),
    ]:
        assert _both_paths(session, kind, written) == (expected, expected), (kind, written)
    cards.block_card(session, card_id=card.id, reason="stolen", as_of=f.T0)
    assert _both_paths(session, "card", number) == ("card_blocked", "card_blocked")


def test_the_lean_lookup_reaches_the_survivor_of_merges(session, program):
    first = f.member(session, program, phone="090-6666-7777")
    second = f.member(session, program, card="5555-6666-7777")
    third = f.member(session, program)
    merge.merge_members(
        session, survivor_id=second.id, merged_id=first.id, actor="staff", as_of=f.T0
    )
    merge.merge_members(
        session, survivor_id=third.id, merged_id=second.id, actor="staff", as_of=f.T0
    )
    assert _both_paths(session, "phone", "09066667777") == (third.id, third.id)
    assert _both_paths(session, "card", "555566667777") == (third.id, third.id)
