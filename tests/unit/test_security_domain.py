"""The permission table, lock-out, masking and the audit hash chain, without a database."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kizuna.security.domain import (
    GENESIS_HASH,
    LOCKOUT,
    MAX_FAILED_LOGINS,
    ROLE_PERMISSIONS,
    AuditFacts,
    Permission,
    Role,
    after_failed_login,
    allows,
    audit_hash,
    can_assign,
    can_decide_adjustment,
    is_locked,
    mask_email,
    mask_phone,
    mask_text,
    password_problem,
    scope_for,
    session_alive,
    verify_chain,
)

T = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


def test_every_role_has_a_row_in_the_permission_table():
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert all(Permission.SELF in perms for perms in ROLE_PERMISSIONS.values())


def test_auditor_holds_no_permission_that_changes_anything():
    writes = {
        Permission.CARDS_MANAGE,
        Permission.MEMBERS_MERGE,
        Permission.POINTS_ADJUST,
        Permission.POINTS_APPROVE,
        Permission.CAMPAIGNS_WRITE,
        Permission.CLIENTS_WRITE,
        Permission.STAFF_MANAGE,
    }
    assert not ROLE_PERMISSIONS[Role.AUDITOR] & writes


def test_only_support_and_administrators_see_personal_data_unmasked():
    assert {role for role in Role if allows(role, Permission.MEMBERS_PII)} == {
        Role.OWNER,
        Role.ADMIN,
        Role.SUPPORT,
    }


def test_admin_cannot_make_owners_or_admins_but_owner_can():
    assert not can_assign(Role.ADMIN, Role.OWNER)
    assert not can_assign(Role.ADMIN, Role.ADMIN)
    assert can_assign(Role.ADMIN, Role.STORE_STAFF)
    assert can_assign(Role.OWNER, Role.ADMIN)
    assert not can_assign(Role.SUPPORT, Role.STORE_STAFF)


def test_scoped_roles_need_their_store_or_partner():
    with pytest.raises(ValueError, match="store"):
        scope_for(Role.STORE_STAFF, store_id=None, partner_id=None)
    with pytest.raises(ValueError, match="partner"):
        scope_for(Role.PARTNER_MANAGER, store_id=None, partner_id=None)
    assert scope_for(Role.STORE_STAFF, store_id=3, partner_id=9).store_id == 3
    assert scope_for(Role.MARKETER, store_id=3, partner_id=9).unrestricted


def test_fifth_failed_login_locks_the_account_for_the_lockout_period():
    state = after_failed_login(MAX_FAILED_LOGINS - 2, T)
    assert state.locked_until is None
    state = after_failed_login(state.failed_logins, T)
    assert state.locked_until == T + LOCKOUT
    assert is_locked(state.locked_until, T + LOCKOUT - timedelta(seconds=1))
    assert not is_locked(state.locked_until, T + LOCKOUT)


def test_short_passwords_and_passwords_containing_the_user_name_are_refused():
    assert password_problem("short", username="kato") == "password_too_short"
    assert password_problem("my-name-is-Kato-ok", username="kato") == "password_contains_username"
    assert password_problem("correct horse battery", username="kato") is None


def test_session_ends_after_idling_and_after_its_maximum_life():
    assert session_alive(T, T, T + timedelta(minutes=29))
    assert not session_alive(T, T, T + timedelta(minutes=30))
    assert not session_alive(T, T + timedelta(hours=12), T + timedelta(hours=12, seconds=1))


def test_requester_cannot_approve_their_own_adjustment():
    assert not can_decide_adjustment(requested_by="staff:a", decided_by="staff:a")
    assert can_decide_adjustment(requested_by="staff:a", decided_by="staff:b")


def test_masking_keeps_only_what_a_store_needs_to_recognise_a_member():
    assert mask_phone("+819012345678") == "＊＊＊＊＊＊＊＊＊5678"
    assert mask_email("taro.yamada@example.jp") == "t＊＊＊@example.jp"
    assert mask_text("山田 太郎") == "山＊ 太＊"
    assert mask_text(None) == ""


def _chain(n: int) -> list[tuple[AuditFacts, str]]:
    chain, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        facts = AuditFacts(seq, T, "staff:a", "member.view", f"member:{seq}", {"n": seq}, prev)
        prev = audit_hash(facts)
        chain.append((facts, prev))
    return chain


def test_an_intact_chain_verifies():
    chain = _chain(4)
    assert verify_chain(chain, head_seq=4, head_hash=chain[-1][1]) == []


def test_an_altered_entry_is_detected():
    chain = _chain(4)
    facts, stored = chain[1]
    chain[1] = (replace(facts, target="member:999"), stored)
    problems = verify_chain(chain, head_seq=4, head_hash=chain[-1][1])
    assert [(p.seq, p.problem) for p in problems] == [(2, "altered")]


def test_a_deleted_entry_in_the_middle_and_at_the_end_are_detected():
    chain = _chain(4)
    middle = chain[:1] + chain[2:]
    assert {p.problem for p in verify_chain(middle, head_seq=4, head_hash=chain[-1][1])} == {
        "missing",
        "broken_link",
    }
    tail = chain[:3]
    assert [p.problem for p in verify_chain(tail, head_seq=4, head_hash=chain[-1][1])] == [
        "head_mismatch"
    ]
