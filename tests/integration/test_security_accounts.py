"""Staff accounts on a real database: Argon2 log-in, TOTP, lock-out, sessions and resets."""

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from kizuna.core.errors import Conflict, Unprocessable
from kizuna.security import service as security
from kizuna.security.domain import LOCKOUT, MAX_FAILED_LOGINS, Role
from kizuna.security.errors import Forbidden
from kizuna.security.models import AuditEntry, StaffSession
from kizuna.security.service import LoginStatus
from tests import factories as f

T = f.T0


def _actions(session, target):
    return list(
        session.scalars(
            select(AuditEntry.action).where(AuditEntry.target == target).order_by(AuditEntry.seq)
        )
    )


def test_password_is_stored_as_argon2_hash_and_logs_in(session):
    user = f.staff(session, role="support")
    assert user.password_hash.startswith("$argon2id$")
    outcome = security.authenticate(
        session, username=user.username, password=f.STAFF_PASSWORD, as_of=T
    )
    assert outcome.status is LoginStatus.OK
    assert user.last_login_at == T
    assert _actions(session, f"staff:{user.username}") == ["staff.create", "auth.login"]


def test_wrong_password_and_unknown_user_are_both_just_invalid(session):
    user = f.staff(session)
    wrong = security.authenticate(session, username=user.username, password="nope" * 4, as_of=T)
    unknown = security.authenticate(session, username="nobody", password="x" * 12, as_of=T)
    assert wrong.status is unknown.status is LoginStatus.INVALID
    assert user.failed_logins == 1


def test_account_locks_after_repeated_failures_even_for_the_right_password(session):
    user = f.staff(session)
    for _ in range(MAX_FAILED_LOGINS):
        outcome = security.authenticate(session, username=user.username, password="w" * 12, as_of=T)
    assert outcome.status is LoginStatus.LOCKED
    right = security.authenticate(
        session, username=user.username, password=f.STAFF_PASSWORD, as_of=T + timedelta(minutes=1)
    )
    assert right.status is LoginStatus.LOCKED
    later = security.authenticate(
        session, username=user.username, password=f.STAFF_PASSWORD, as_of=T + LOCKOUT
    )
    assert later.status is LoginStatus.OK
    assert "auth.locked" in _actions(session, f"staff:{user.username}")


def test_totp_is_required_after_the_password_and_a_code_is_accepted_only_once(session):
    user = f.staff(session)
    secret = security.new_totp_secret()
    security.enable_totp(
        session, staff_id=user.id, secret=secret, code=pyotp.TOTP(secret).at(T), as_of=T
    )
    later = T + timedelta(minutes=5)
    outcome = security.authenticate(
        session, username=user.username, password=f.STAFF_PASSWORD, as_of=later
    )
    assert outcome.status is LoginStatus.TOTP_REQUIRED
    _, pending = security.start_session(session, user=user, as_of=later, second_factor_pending=True)
    code = pyotp.TOTP(secret).at(later)
    ok = security.verify_second_factor(session, staff_session=pending, code=code, as_of=later)
    assert ok.status is LoginStatus.OK
    assert not pending.second_factor_pending
    replay = security.verify_second_factor(session, staff_session=pending, code=code, as_of=later)
    assert replay.status is LoginStatus.INVALID


def test_session_token_is_stored_hashed_and_resolves_until_logout(session):
    user = f.staff(session, role="marketer")
    token, row = security.start_session(session, user=user, as_of=T)
    assert token not in row.token_hash
    active = security.resolve_session(session, token=token, as_of=T + timedelta(minutes=1))
    assert active is not None
    assert active.staff.role is Role.MARKETER
    assert security.resolve_session(session, token=token, as_of=T + timedelta(hours=1)) is None
    security.end_session(session, token=token, as_of=T)
    assert security.resolve_session(session, token=token, as_of=T) is None


def test_admin_reset_gives_a_one_time_password_and_ends_sessions(session):
    admin = security._staff(f.staff(session, role="admin"))
    user = f.staff(
        session, role="store_staff", store=f.store(session, f.partner(session, f.program(session)))
    )
    token, _ = security.start_session(session, user=user, as_of=T)
    temporary = security.reset_password(session, actor=admin, staff_id=user.id, as_of=T)
    assert security.resolve_session(session, token=token, as_of=T) is None
    outcome = security.authenticate(session, username=user.username, password=temporary, as_of=T)
    assert outcome.status is LoginStatus.OK
    assert user.must_change_password
    security.change_password(
        session, staff_id=user.id, current=temporary, new="a brand new passphrase", as_of=T
    )
    assert not user.must_change_password


def test_admin_cannot_reset_an_owner(session):
    admin = security._staff(f.staff(session, role="admin"))
    owner = f.staff(session, role="owner")
    with pytest.raises(Forbidden):
        security.reset_password(session, actor=admin, staff_id=owner.id, as_of=T)


def test_weak_password_duplicate_name_and_missing_store_are_refused(session):
    with pytest.raises(Unprocessable, match="password_too_short"):
        f.staff(session, password="short")
    f.staff(session, username="hana")
    with pytest.raises(Conflict):
        f.staff(session, username="hana")
    with pytest.raises(Unprocessable, match="store"):
        f.staff(session, role="store_staff")


def test_demo_staff_has_one_account_per_role_that_can_log_in(session):
    store = f.store(session, f.partner(session, f.program(session)))
    accounts = security.create_demo_staff(
        session, as_of=T, store_id=store.id, partner_id=store.partner_id
    )
    assert {role for _, _, role in accounts} == set(Role)
    username, password, _ = accounts[0]
    outcome = security.authenticate(session, username=username, password=password, as_of=T)
    assert outcome.status is LoginStatus.OK


def test_demo_staff_can_be_created_again_with_new_passwords(session):
    store = f.store(session, f.partner(session, f.program(session)))
    security.create_demo_staff(session, as_of=T, store_id=store.id, partner_id=store.partner_id)
    again = security.create_demo_staff(
        session, as_of=T, store_id=store.id, partner_id=store.partner_id
    )
    username, password, _ = again[-1]
    outcome = security.authenticate(session, username=username, password=password, as_of=T)
    assert outcome.status is LoginStatus.OK


def test_a_new_log_in_clears_the_users_dead_sessions(session):
    user = f.staff(session)
    old_token, _ = security.start_session(session, user=user, as_of=T)
    later = T + timedelta(hours=13)
    security.start_session(session, user=user, as_of=later)
    rows = session.scalars(select(StaffSession).where(StaffSession.staff_id == user.id)).all()
    assert len(rows) == 1
    assert security.resolve_session(session, token=old_token, as_of=later) is None
