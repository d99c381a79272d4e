"""Who may do what, and the rules that keep staff access honest — without a database.

Every staff user has one *role*; a role grants *permissions*, and `ROLE_PERMISSIONS` below is the
one table that says which. Routes name the permission they need; nothing else decides access.
Two roles are also *scoped*: store staff see only their store's members, partner managers only
their partner's. Personal data is shown masked unless the role holds `members:pii`.
The audit log is a hash chain: each entry's hash covers its content and the previous hash, so
changing or deleting any entry breaks every link after it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MARKETER = "marketer"
    STORE_STAFF = "store_staff"
    SUPPORT = "support"
    AUDITOR = "auditor"
    PARTNER_MANAGER = "partner_manager"


class Permission(StrEnum):
    SELF = "self"  # one's own account: log out, password, second factor
    DASHBOARD_VIEW = "dashboard:view"
    MEMBERS_READ = "members:read"
    MEMBERS_PII = "members:pii"  # see personal data unmasked
    CARDS_MANAGE = "cards:manage"  # block, reissue
    MEMBERS_MERGE = "members:merge"
    POINTS_ADJUST = "points:adjust"  # request an adjustment
    POINTS_APPROVE = "points:approve"  # approve someone else's adjustment
    CAMPAIGNS_READ = "campaigns:read"
    CAMPAIGNS_WRITE = "campaigns:write"
    CLIENTS_READ = "clients:read"  # API clients, keys, webhook endpoints
    CLIENTS_WRITE = "clients:write"
    STAFF_READ = "staff:read"
    STAFF_MANAGE = "staff:manage"
    AUDIT_READ = "audit:read"


P = Permission
_READ_ONLY = frozenset(
    {
        P.SELF,
        P.DASHBOARD_VIEW,
        P.MEMBERS_READ,
        P.CAMPAIGNS_READ,
        P.CLIENTS_READ,
        P.STAFF_READ,
        P.AUDIT_READ,
    }
)

# THE permission table. Change access here and nowhere else; the route × role matrix test reads it.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission),
    Role.MARKETER: frozenset(
        {P.SELF, P.DASHBOARD_VIEW, P.MEMBERS_READ, P.CAMPAIGNS_READ, P.CAMPAIGNS_WRITE}
    ),
    Role.STORE_STAFF: frozenset({P.SELF, P.MEMBERS_READ, P.CARDS_MANAGE, P.POINTS_ADJUST}),
    Role.SUPPORT: frozenset(
        {
            P.SELF,
            P.DASHBOARD_VIEW,
            P.MEMBERS_READ,
            P.MEMBERS_PII,
            P.CARDS_MANAGE,
            P.MEMBERS_MERGE,
            P.POINTS_ADJUST,
            P.POINTS_APPROVE,
            P.CAMPAIGNS_READ,
        }
    ),
    Role.AUDITOR: _READ_ONLY,
    Role.PARTNER_MANAGER: frozenset(
        {P.SELF, P.DASHBOARD_VIEW, P.MEMBERS_READ, P.CAMPAIGNS_READ, P.CLIENTS_READ}
    ),
}

# Roles that may hand out each role: nobody below an owner makes owners or admins.
_ASSIGNABLE_BY: Mapping[Role, frozenset[Role]] = {
    Role.OWNER: frozenset(Role),
    Role.ADMIN: frozenset(Role) - {Role.OWNER, Role.ADMIN},
}

MIN_PASSWORD_LENGTH = 12  # OWASP ASVS 2.1.1
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(minutes=30)
SESSION_MAX = timedelta(hours=12)


def allows(role: Role | str, permission: Permission) -> bool:
    """True when `role` holds `permission` according to the permission table."""
    return permission in ROLE_PERMISSIONS[Role(role)]


def can_assign(actor: Role | str, target: Role | str) -> bool:
    """True when a staff user of role `actor` may create or edit a user of role `target`."""
    return Role(target) in _ASSIGNABLE_BY.get(Role(actor), frozenset())


@dataclass(frozen=True)
class Scope:
    """Which members a staff user may see: everyone, one store's, or one partner's."""

    store_id: int | None = None
    partner_id: int | None = None

    @property
    def unrestricted(self) -> bool:
        return self.store_id is None and self.partner_id is None


def scope_for(role: Role | str, *, store_id: int | None, partner_id: int | None) -> Scope:
    """The member scope of a staff user; store staff and partner managers must name theirs."""
    role = Role(role)
    if role is Role.STORE_STAFF:
        if store_id is None:
            raise ValueError("store staff need a store")
        return Scope(store_id=store_id)
    if role is Role.PARTNER_MANAGER:
        if partner_id is None:
            raise ValueError("a partner manager needs a partner")
        return Scope(partner_id=partner_id)
    return Scope()


def password_problem(password: str, *, username: str) -> str | None:
    """Why `password` is not acceptable (a message key), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return "password_too_short"
    if username and username.lower() in password.lower():
        return "password_contains_username"
    return None


@dataclass(frozen=True)
class Lockout:
    failed_logins: int
    locked_until: datetime | None


def after_failed_login(failed_logins: int, as_of: datetime) -> Lockout:
    """The account state after one more failure: locked for `LOCKOUT` at the limit."""
    failed = failed_logins + 1
    if failed >= MAX_FAILED_LOGINS:
        return Lockout(0, as_of + LOCKOUT)
    return Lockout(failed, None)


def is_locked(locked_until: datetime | None, as_of: datetime) -> bool:
    """True while a lock-out is in force."""
    return locked_until is not None and as_of < locked_until


# Per network address, on top of the per-account lock-out: guessing across many user names from
# one place stops too. Generous enough for a store's staff sharing one address.
MAX_FAILED_LOGINS_PER_ADDRESS = 20
ADDRESS_WINDOW = timedelta(minutes=15)


class LoginThrottle:
    """Failed log-ins per network address over a sliding window, kept in this process.

    `retry_after` says how many seconds an address must wait before it may try again (0: it may
    try now); `failed` counts one more failure. Time comes in as `now` (monotonic seconds). Like
    the API's rate limits this lives in the process: with N server processes an address gets at
    most N times the limit before every process refuses it.
    """

    def __init__(
        self,
        limit: int = MAX_FAILED_LOGINS_PER_ADDRESS,
        window: timedelta = ADDRESS_WINDOW,
        max_addresses: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window.total_seconds()
        self._max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str, now: float) -> float:
        """0 when `address` may try to log in now, else the seconds until it may."""
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.limit:
                return 0.0
            # Allowed again once enough failures have left the window to fall under the limit.
            return times[len(times) - self.limit] + self.window - now

    def failed(self, address: str, now: float) -> None:
        """Count one failed log-in (or second-factor code) from `address` at `now`."""
        with self._lock:
            if address not in self._failures and len(self._failures) >= self._max_addresses:
                self._forget_idle(now)
            self._recent(address, now)
            self._failures.setdefault(address, deque()).append(now)

    def _forget_idle(self, now: float) -> None:
        for address in list(self._failures):
            self._recent(address, now)
        if len(self._failures) >= self._max_addresses:
            # Flooded by that many addresses at once: drop the oldest half rather than grow.
            oldest = sorted(self._failures, key=lambda a: self._failures[a][-1])
            for address in oldest[: len(oldest) // 2]:
                del self._failures[address]


def session_alive(created_at: datetime, last_seen_at: datetime, as_of: datetime) -> bool:
    """A session ends after `SESSION_IDLE` without use, and after `SESSION_MAX` in any case."""
    return as_of - last_seen_at < SESSION_IDLE and as_of - created_at < SESSION_MAX


def token_digest(token: str) -> str:
    """What is stored for a session token: its SHA-256, so a database leak opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()


def can_decide_adjustment(*, requested_by: str, decided_by: str) -> bool:
    """Maker–checker: the person who asked for an adjustment never approves it."""
    return requested_by != decided_by


# --- masking personal data ---------------------------------------------------------------


def mask_text(value: str | None, keep: int = 1) -> str:
    """A name or address with all but its first `keep` characters of each word hidden."""
    if not value:
        return ""
    return " ".join(word[:keep] + "＊" * max(len(word) - keep, 1) for word in value.split())


def mask_phone(value: str | None) -> str:
    """A phone number showing only its last four digits."""
    if not value:
        return ""
    return "＊" * max(len(value) - 4, 3) + value[-4:]


def mask_email(value: str | None) -> str:
    """An e-mail address showing its first character and its domain."""
    if not value:
        return ""
    local, _, domain = value.partition("@")
    return f"{local[:1]}＊＊＊@{domain}" if domain else mask_text(value)


# --- the audit hash chain -----------------------------------------------------------------

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditFacts:
    """The content of one audit entry, as hashed."""

    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, Any]
    prev_hash: str


def audit_hash(facts: AuditFacts) -> str:
    """The SHA-256 of an entry's content and its predecessor's hash (canonical JSON)."""
    body = json.dumps(
        {
            "seq": facts.seq,
            "at": facts.at.isoformat(timespec="microseconds"),
            "actor": facts.actor,
            "action": facts.action,
            "target": facts.target,
            "details": facts.details,
            "prev": facts.prev_hash,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    problem: str  # "altered", "missing", "broken_link", "head_mismatch"


def verify_chain(
    entries: Iterable[tuple[AuditFacts, str]], *, head_seq: int, head_hash: str
) -> list[ChainProblem]:
    """Every break in a chain of (facts, stored hash) in seq order, checked against its head."""
    problems: list[ChainProblem] = []
    expected_seq, prev = 1, GENESIS_HASH
    for facts, stored in entries:
        if facts.seq != expected_seq:
            problems.append(ChainProblem(expected_seq, "missing"))
        if facts.prev_hash != prev:
            problems.append(ChainProblem(facts.seq, "broken_link"))
        if audit_hash(facts) != stored:
            problems.append(ChainProblem(facts.seq, "altered"))
        expected_seq, prev = facts.seq + 1, stored
    # The head row remembers the last entry, so deleting entries at the end is seen too.
    if expected_seq - 1 != head_seq or prev != head_hash:
        problems.append(ChainProblem(head_seq, "head_mismatch"))
    return problems
