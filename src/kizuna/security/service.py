"""Use cases of staff accounts: create, log in (password, then TOTP), sessions, resets.

Passwords are hashed with Argon2id (argon2-cffi); the second factor is TOTP (pyotp, RFC 6238).
A log-in never raises for a wrong password: it returns an outcome and has already counted the
failure, so the caller commits the count even though the log-in failed. Every change to an
account is written to the audit log in the same transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, NotFound, Unprocessable
from kizuna.security import audit
from kizuna.security.domain import (
    SESSION_IDLE,
    SESSION_MAX,
    Permission,
    Role,
    Scope,
    after_failed_login,
    allows,
    can_assign,
    is_locked,
    password_problem,
    scope_for,
    session_alive,
    token_digest,
)
from kizuna.security.errors import ErrorCode, Forbidden
from kizuna.security.models import StaffSession, StaffUser

# Argon2id at the OWASP Password Storage Cheat Sheet's first configuration (19 MiB, 2 passes,
# 1 lane): ~50 ms a log-in on a small server, so a burst of log-ins cannot starve the API.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Verified against when the user name is unknown, so that a wrong name costs as long as a wrong
# password and response times do not reveal which user names exist.
_DUMMY_HASH = _hasher.hash("kizuna-no-such-user")
TOTP_ISSUER = "Kizuna"


@dataclass(frozen=True)
class Staff:
    """A logged-in staff user as the console and the API see them."""

    id: int
    username: str
    display_name: str
    role: Role
    scope: Scope
    must_change_password: bool

    def can(self, permission: Permission) -> bool:
        """True when this user's role holds `permission`."""
        return allows(self.role, permission)

    @property
    def actor(self) -> str:
        """How this user is named in journal entries and the audit log."""
        return f"staff:{self.username}"


def _audit_own(session: Session, user: StaffUser, action: str, as_of: datetime) -> None:
    """Audit something a user did to or with their own account."""
    target = f"staff:{user.username}"
    audit.record(session, actor=target, action=action, target=target, as_of=as_of)


def _staff(user: StaffUser) -> Staff:
    return Staff(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        scope=scope_for(user.role, store_id=user.store_id, partner_id=user.partner_id),
        must_change_password=user.must_change_password,
    )


def _check_password(password: str, username: str) -> None:
    problem = password_problem(password, username=username)
    if problem is not None:
        raise Unprocessable(ErrorCode.WEAK_PASSWORD, problem)


def _check_role(role: Role | str, store_id: int | None, partner_id: int | None) -> Role:
    try:
        role = Role(role)
        scope_for(role, store_id=store_id, partner_id=partner_id)
    except ValueError as bad:
        raise Unprocessable(ErrorCode.INVALID_ROLE_SCOPE, str(bad)) from bad
    return role


def create_staff(
    session: Session,
    *,
    username: str,
    display_name: str,
    role: Role | str,
    password: str,
    actor: str,
    as_of: datetime,
    store_id: int | None = None,
    partner_id: int | None = None,
    must_change_password: bool = False,
) -> StaffUser:
    """A new staff account; `username_taken` if the name is used."""
    role = _check_role(role, store_id, partner_id)
    _check_password(password, username)
    user = StaffUser(
        username=username.strip(),
        display_name=display_name.strip() or username,
        role=str(role),
        store_id=store_id if role is Role.STORE_STAFF else None,
        partner_id=partner_id if role is Role.PARTNER_MANAGER else None,
        password_hash=_hasher.hash(password),
        must_change_password=must_change_password,
        failed_logins=0,
        active=True,
        created_at=as_of,
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as taken:
        raise Conflict(ErrorCode.USERNAME_TAKEN, f"user name {username!r} is taken") from taken
    audit.record(
        session,
        actor=actor,
        action="staff.create",
        target=f"staff:{user.username}",
        details={"role": str(role), "store_id": store_id, "partner_id": partner_id},
        as_of=as_of,
    )
    return user


def get_staff(session: Session, staff_id: int) -> StaffUser:
    """Staff user `staff_id`, or `staff_not_found`."""
    user = session.get(StaffUser, staff_id)
    if user is None:
        raise NotFound(ErrorCode.STAFF_NOT_FOUND, f"staff {staff_id} not found")
    return user


def find_staff(session: Session, username: str) -> StaffUser | None:
    """The staff user with this user name, if any."""
    return session.scalars(select(StaffUser).where(StaffUser.username == username)).one_or_none()


def list_staff(session: Session) -> list[StaffUser]:
    """Every staff account, by user name."""
    return list(session.scalars(select(StaffUser).order_by(StaffUser.username)))


class LoginStatus(StrEnum):
    OK = "ok"
    TOTP_REQUIRED = "totp_required"
    INVALID = "invalid"
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginOutcome:
    status: LoginStatus
    user: StaffUser | None = None


def _fail(session: Session, user: StaffUser, *, as_of: datetime, action: str) -> LoginOutcome:
    state = after_failed_login(user.failed_logins, as_of)
    user.failed_logins, user.locked_until = state.failed_logins, state.locked_until
    locked = state.locked_until is not None
    _audit_own(session, user, "auth.locked" if locked else action, as_of)
    session.flush()
    return LoginOutcome(LoginStatus.LOCKED if locked else LoginStatus.INVALID)


def authenticate(
    session: Session, *, username: str, password: str, as_of: datetime
) -> LoginOutcome:
    """Check a user name and password; failures count towards the lock-out and are audited."""
    user = find_staff(session, username.strip())
    if user is None or not user.active:
        _verify(_DUMMY_HASH, password)
        return LoginOutcome(LoginStatus.INVALID)
    if is_locked(user.locked_until, as_of):
        return LoginOutcome(LoginStatus.LOCKED)
    if not _verify(user.password_hash, password):
        return _fail(session, user, as_of=as_of, action="auth.failed")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    if user.totp_secret:
        return LoginOutcome(LoginStatus.TOTP_REQUIRED, user)
    _succeed(session, user, as_of=as_of)
    return LoginOutcome(LoginStatus.OK, user)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _succeed(session: Session, user: StaffUser, *, as_of: datetime) -> None:
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, as_of
    _audit_own(session, user, "auth.login", as_of)
    session.flush()


def verify_second_factor(
    session: Session, *, staff_session: StaffSession, code: str, as_of: datetime
) -> LoginOutcome:
    """Check a TOTP code for a session waiting for it; a right code opens the session."""
    user = get_staff(session, staff_session.staff_id)
    if is_locked(user.locked_until, as_of):
        return LoginOutcome(LoginStatus.LOCKED)
    step = _totp_step(user.totp_secret or "", code, as_of)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return _fail(session, user, as_of=as_of, action="auth.totp_failed")
    user.totp_last_step = step
    staff_session.second_factor_pending = False
    _succeed(session, user, as_of=as_of)
    return LoginOutcome(LoginStatus.OK, user)


def _totp_step(secret: str, code: str, as_of: datetime) -> int | None:
    """The time step whose code `code` is (one step of clock drift either way), or None."""
    if not secret:
        return None
    totp = pyotp.TOTP(secret)
    code = code.strip().replace(" ", "")
    for drift in (0, -1, 1):
        moment = datetime.fromtimestamp(as_of.timestamp() + drift * totp.interval, tz=as_of.tzinfo)
        if secrets.compare_digest(totp.at(moment), code):
            return totp.timecode(moment)
    return None


# --- sessions -------------------------------------------------------------------------------


def start_session(
    session: Session, *, user: StaffUser, as_of: datetime, second_factor_pending: bool = False
) -> tuple[str, StaffSession]:
    """A new server-side session; returns the cookie token (shown once) and the row.

    The user's sessions that can no longer be used are deleted here, so none pile up.
    """
    session.execute(
        delete(StaffSession).where(
            StaffSession.staff_id == user.id,
            or_(
                StaffSession.last_seen_at <= as_of - SESSION_IDLE,
                StaffSession.created_at <= as_of - SESSION_MAX,
            ),
        )
    )
    token = secrets.token_urlsafe(32)
    row = StaffSession(
        token_hash=token_digest(token),
        staff_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        second_factor_pending=second_factor_pending,
        created_at=as_of,
        last_seen_at=as_of,
    )
    session.add(row)
    session.flush()
    return token, row


@dataclass(frozen=True)
class ActiveSession:
    """A live session and its user."""

    row: StaffSession
    staff: Staff


def resolve_session(session: Session, *, token: str, as_of: datetime) -> ActiveSession | None:
    """The live session of a cookie token, or None (unknown, expired, or its user deactivated)."""
    found = session.execute(
        select(StaffSession, StaffUser)
        .join(StaffUser, StaffUser.id == StaffSession.staff_id)
        .where(StaffSession.token_hash == token_digest(token))
    ).one_or_none()
    if found is None:
        return None
    row, user = found
    if not user.active or not session_alive(row.created_at, row.last_seen_at, as_of):
        return None
    return ActiveSession(row, _staff(user))


def get_session(session: Session, session_id: int) -> StaffSession:
    """Session row `session_id` (the caller got its id from `resolve_session`)."""
    row = session.get(StaffSession, session_id)
    if row is None:
        raise NotFound(ErrorCode.NOT_AUTHENTICATED, "session ended")
    return row


def touch_session(session: Session, *, session_id: int, as_of: datetime) -> None:
    """Record use of a session (keeps it from idling out)."""
    session.execute(
        update(StaffSession).where(StaffSession.id == session_id).values(last_seen_at=as_of)
    )


def end_session(session: Session, *, token: str, as_of: datetime) -> None:
    """Log out: the session's row is deleted, so its cookie opens nothing any more."""
    row = session.scalars(
        select(StaffSession).where(StaffSession.token_hash == token_digest(token))
    ).one_or_none()
    if row is None:
        return
    user = get_staff(session, row.staff_id)
    session.delete(row)
    _audit_own(session, user, "auth.logout", as_of)
    session.flush()


def _end_all_sessions(session: Session, staff_id: int) -> None:
    session.execute(delete(StaffSession).where(StaffSession.staff_id == staff_id))


# --- changes by the user themself -------------------------------------------------------------


def change_password(
    session: Session, *, staff_id: int, current: str, new: str, as_of: datetime
) -> None:
    """Change one's own password after proving the current one."""
    user = get_staff(session, staff_id)
    if not _verify(user.password_hash, current):
        raise Unprocessable(ErrorCode.WRONG_PASSWORD, "the current password is wrong")
    _check_password(new, user.username)
    user.password_hash = _hasher.hash(new)
    user.must_change_password = False
    _audit_own(session, user, "staff.password_changed", as_of)
    session.flush()


def new_totp_secret() -> str:
    """A fresh random TOTP secret (base32) for enrolment."""
    return pyotp.random_base32()


def totp_uri(*, secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads (as a QR code or typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def enable_totp(
    session: Session, *, staff_id: int, secret: str, code: str, as_of: datetime
) -> None:
    """Turn on the second factor once the user shows a code made from `secret`."""
    user = get_staff(session, staff_id)
    step = _totp_step(secret, code, as_of)
    if step is None:
        raise Unprocessable(ErrorCode.INVALID_TOTP, "the code does not match")
    user.totp_secret, user.totp_last_step = secret, step
    _audit_own(session, user, "staff.totp_enabled", as_of)
    session.flush()


# --- administration -----------------------------------------------------------------------------


def _managed(session: Session, *, actor: Staff, staff_id: int) -> StaffUser:
    # Nobody resets, re-roles or deactivates themselves here: one's own account changes only
    # through the account page, which asks for the current password.
    if staff_id == actor.id:
        raise Forbidden(
            ErrorCode.ROLE_NOT_ASSIGNABLE, "manage your own account on the account page"
        )
    user = get_staff(session, staff_id)
    if not can_assign(actor.role, user.role):
        raise Forbidden(ErrorCode.ROLE_NOT_ASSIGNABLE, "you may not manage this account")
    return user


def reset_password(session: Session, *, actor: Staff, staff_id: int, as_of: datetime) -> str:
    """An administrator's reset: a random one-time password (returned, shown once), which must
    be changed at the next log-in; the lock-out, the second factor and all sessions are cleared."""
    user = _managed(session, actor=actor, staff_id=staff_id)
    temporary = secrets.token_urlsafe(12)
    user.password_hash = _hasher.hash(temporary)
    user.must_change_password = True
    user.failed_logins, user.locked_until = 0, None
    user.totp_secret = user.totp_last_step = None
    _end_all_sessions(session, user.id)
    audit.record(
        session,
        actor=actor.actor,
        action="staff.password_reset",
        target=f"staff:{user.username}",
        as_of=as_of,
    )
    session.flush()
    return temporary


def update_staff(
    session: Session,
    *,
    actor: Staff,
    staff_id: int,
    role: Role | str,
    active: bool,
    as_of: datetime,
    store_id: int | None = None,
    partner_id: int | None = None,
) -> StaffUser:
    """Change a user's role, scope or activity; deactivating ends their sessions."""
    user = _managed(session, actor=actor, staff_id=staff_id)
    role = _check_role(role, store_id, partner_id)
    if not can_assign(actor.role, role):
        raise Forbidden(ErrorCode.ROLE_NOT_ASSIGNABLE, f"you may not assign the role {role}")
    user.role = str(role)
    user.store_id = store_id if role is Role.STORE_STAFF else None
    user.partner_id = partner_id if role is Role.PARTNER_MANAGER else None
    user.active = active
    if not active:
        _end_all_sessions(session, user.id)
    audit.record(
        session,
        actor=actor.actor,
        action="staff.update",
        target=f"staff:{user.username}",
        details={
            "role": str(role),
            "active": active,
            "store_id": user.store_id,
            "partner_id": user.partner_id,
        },
        as_of=as_of,
    )
    session.flush()
    return user


def unlock(session: Session, *, actor: Staff, staff_id: int, as_of: datetime) -> None:
    """Lift a lock-out before it ends by itself."""
    user = _managed(session, actor=actor, staff_id=staff_id)
    user.failed_logins, user.locked_until = 0, None
    audit.record(
        session,
        actor=actor.actor,
        action="staff.unlock",
        target=f"staff:{user.username}",
        as_of=as_of,
    )
    session.flush()


def system_actor() -> Staff:
    """The acting identity of the command line (an operator at the server's console)."""
    return Staff(
        id=0,
        username="cli",
        display_name="CLI",
        role=Role.OWNER,
        scope=Scope(),
        must_change_password=False,
    )


def create_demo_staff(
    session: Session, *, as_of: datetime, store_id: int, partner_id: int
) -> list[tuple[str, str, Role]]:
    """One demo account per role, with fresh random passwords: (user name, password, role).

    Run again on the same database, it gives the existing demo accounts new passwords.
    """
    accounts: list[tuple[str, str, Role]] = []
    for role in Role:
        username = f"demo-{role.value.replace('_', '-')}"
        password = secrets.token_urlsafe(12)
        existing = find_staff(session, username)
        if existing is not None:
            existing.password_hash = _hasher.hash(password)
            existing.failed_logins, existing.locked_until = 0, None
            accounts.append((username, password, role))
            continue
        create_staff(
            session,
            username=username,
            display_name=f"Demo {role.value}",
            role=role,
            password=password,
            actor="system:demo",
            as_of=as_of,
            store_id=store_id,
            partner_id=partner_id,
        )
        accounts.append((username, password, role))
    return accounts
