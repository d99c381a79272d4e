"""Idempotency keys: a retried request returns the first response and does nothing again.

The key, the request's hash and the response are written in the same transaction as the work, so
either both are stored or neither. A business outcome (success, or a domain error such as
`insufficient_points`) is stored and replayed; the work of a refused request is rolled back first
(to a savepoint, or the whole transaction when `run_idempotent_write` owns it) so that it changes
nothing. On PostgreSQL a transaction-scoped advisory lock on the
key turns a retry that arrives while the first attempt is still running into `409`; on SQLite the
writer lock already makes the retry wait and then replay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, cast

from sqlalchemy import (
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from kizuna.core.errors import Conflict, KizunaError, Unprocessable
from kizuna.db.base import Base, BigId, Json, UtcDateTime
from kizuna.db.prepared import Call, Check, Prepared, run_and_commit, run_checks, run_together


class ErrorCode(StrEnum):
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"


class IdempotencyKey(Base):
    """A mutating request already seen: its hash and the response to replay."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int]
    response_body: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

    __table_args__ = (UniqueConstraint("client", "key"),)


@dataclass(frozen=True)
class Outcome:
    """The response of an idempotent request, and whether it was replayed."""

    status: int
    body: dict[str, Any]
    replayed: bool


def request_hash(request: Any) -> str:
    """A stable hash of a request's meaningful content (canonical JSON)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _advisory_key(client: str, key: str) -> int:
    digest = hashlib.sha256(f"{client}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_KEYS = cast(Table, IdempotencyKey.__table__)
_SEEN_COLUMNS = (
    _KEYS.c.id,
    _KEYS.c.request_hash,
    _KEYS.c.response_status,
    _KEYS.c.response_body,
    _KEYS.c.expires_at,
)
_THIS_KEY = and_(_KEYS.c.client == bindparam("client"), _KEYS.c.key == bindparam("key"))
_SEEN = Prepared(select(*_SEEN_COLUMNS).where(_THIS_KEY), ("client", "key"))
# PostgreSQL: take the key's advisory lock and read the key in one round trip. Should the
# statement's snapshot miss a first attempt that commits in the instant before the lock is
# taken, the unique (client, key) constraint still refuses the second row: `in progress`, and
# the client's retry replays.
_LOCK_AND_SEEN = Prepared(
    select(func.pg_try_advisory_xact_lock(bindparam("lock")).label("locked"), *_SEEN_COLUMNS)
    .select_from(select(literal(1).label("one")).subquery())
    .outerjoin(_KEYS, _THIS_KEY),
    ("lock", "client", "key"),
)
_INSERT_KEY = Prepared(
    insert(_KEYS),
    (
        "client",
        "key",
        "request_hash",
        "response_status",
        "response_body",
        "created_at",
        "expires_at",
    ),
)
_IN_PROGRESS = ("a request with this Idempotency-Key is still being processed; retry later",)


def _seen_call(session: Session, client: str, key: str) -> Call:
    params = {"client": client, "key": key}
    if session.get_bind().dialect.name != "postgresql":
        return Call(_SEEN, params)
    return Call(_LOCK_AND_SEEN, {**params, "lock": _advisory_key(client, key)})


def _seen_row(session: Session, rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The key's stored (id, hash, status, body, expires_at), or None; on PostgreSQL `_KeyBusy`
    when another attempt holds the key's advisory lock."""
    if session.get_bind().dialect.name != "postgresql":
        return rows[0] if rows else None
    locked, *seen = rows[0]
    if not locked:
        raise _KeyBusy()
    return tuple(seen) if seen[0] is not None else None


class _KeyBusy(Exception):
    """Another attempt with the key is running (not a business outcome: never stored)."""


Body = dict[str, Any]


def _as_is(body: Body) -> Body:
    return body


def _replay(
    session: Session,
    client: str,
    key: str,
    digest: str,
    as_of: datetime,
    unseal: Callable[[Body], Body] = _as_is,
) -> Outcome | None:
    """The stored outcome to replay for this key, or None when the request is to run (a key past
    its retention is forgotten first); a different request under a live key is refused."""
    try:
        seen = _seen_row(session, run_together(session, [_seen_call(session, client, key)])[0])
    except _KeyBusy:
        raise Conflict(ErrorCode.IDEMPOTENCY_IN_PROGRESS, *_IN_PROGRESS) from None
    if seen is None:
        return None
    outcome = _stored(seen, digest, as_of, unseal)
    if outcome is None:
        session.execute(delete(_KEYS).where(_KEYS.c.id == seen[0]))
    return outcome


def _stored(
    seen: tuple[Any, ...], digest: str, as_of: datetime, unseal: Callable[[Body], Body] = _as_is
) -> Outcome | None:
    """The outcome stored under a key seen before, or None when the key is past its retention
    (to be forgotten); a different request under a live key is refused."""
    _, seen_hash, seen_status, seen_body, expires_at = seen
    if expires_at <= as_of:
        return None
    if seen_hash != digest:
        raise Unprocessable(
            ErrorCode.IDEMPOTENCY_CONFLICT, "this Idempotency-Key was used for a different request"
        )
    return Outcome(seen_status, unseal(seen_body), replayed=True)


def _remember(
    session: Session,
    *,
    client: str,
    key: str,
    digest: str,
    outcome: tuple[int, dict[str, Any]],
    as_of: datetime,
    keep_days: int,
    seal: Callable[[Body], Body] = _as_is,
    last: bool = False,
) -> Outcome:
    """Store the outcome under the key; `last`: as the transaction's last write, committing it
    (`db.prepared.run_and_commit`)."""
    status, body = outcome
    try:
        (run_and_commit if last else run_together)(
            session,
            [
                Call(
                    _INSERT_KEY,
                    {
                        "client": client,
                        "key": key,
                        "request_hash": digest,
                        "response_status": status,
                        "response_body": seal(body),
                        "created_at": as_of,
                        "expires_at": as_of + timedelta(days=keep_days),
                    },
                )
            ],
        )
    except IntegrityError as taken:
        raise Conflict(ErrorCode.IDEMPOTENCY_IN_PROGRESS, *_IN_PROGRESS) from taken
    return Outcome(status, body, replayed=False)


def run_idempotent(
    session: Session,
    *,
    client: str,
    key: str,
    request: Any,
    action: Callable[[], tuple[int, dict[str, Any]]],
    as_of: datetime,
    keep_days: int = 7,
    seal: Callable[[Body], Body] = _as_is,
    unseal: Callable[[Body], Body] = _as_is,
) -> Outcome:
    """Run `action` once per (client, key) inside the caller's transaction; replay its stored
    outcome for the same request. A refused action is undone to a savepoint. `seal` turns the
    response into what is stored (a secret it shows once, encrypted) and `unseal` back."""
    digest = request_hash(request)
    replay = _replay(session, client, key, digest, as_of, unseal)
    if replay is not None:
        return replay
    try:
        with session.begin_nested():
            outcome = action()
    except KizunaError as refused:
        outcome = refused.status, refused.to_dict()
    return _remember(
        session,
        client=client,
        key=key,
        digest=digest,
        outcome=outcome,
        as_of=as_of,
        keep_days=keep_days,
        seal=seal,
    )


class _Refused(Exception):
    """Carries a business refusal out of the transaction it rolls back."""

    def __init__(self, error: KizunaError) -> None:
        super().__init__(error.code)
        self.error = error


class _Seen(Exception):
    """The key was used before: the attempt stops, and its stored outcome is replayed."""

    def __init__(self, row: tuple[Any, ...]) -> None:
        super().__init__("seen")
        self.row = row


@dataclass
class KeyUse:
    """What an action run by `run_idempotent_write` may do with its key, to save round trips: run
    the key's look-up with its own first statement (`checks`), and write the key's record with its
    own last statements and the COMMIT (`record`). An action that does neither is served too."""

    session: Session
    client: str
    key: str
    digest: str
    as_of: datetime
    keep_days: int
    first: bool
    verified: bool = False
    recorded: tuple[int, dict[str, Any]] | None = None

    @property
    def checks(self) -> list[Check]:
        """The key's look-up (none when it was looked up before the action)."""
        return (
            [Check(_seen_call(self.session, self.client, self.key), self._verify)]
            if self.first and not self.verified
            else []
        )

    def _verify(self, rows: list[tuple[Any, ...]]) -> None:
        self.verified = True
        seen = _seen_row(self.session, rows)
        if seen is not None:
            raise _Seen(seen)

    def record(self, outcome: tuple[int, dict[str, Any]]) -> Call:
        """The key's record of `outcome`, to run as the transaction's last write (with its
        COMMIT): the outcome is then the attempt's, and nothing more is written after it."""
        if not self.verified:
            raise RuntimeError("the key's record is written after its look-up, not before")
        self.recorded = outcome
        status, body = outcome
        return Call(
            _INSERT_KEY,
            {
                "client": self.client,
                "key": self.key,
                "request_hash": self.digest,
                "response_status": status,
                "response_body": body,
                "created_at": self.as_of,
                "expires_at": self.as_of + timedelta(days=self.keep_days),
            },
        )


def _key_taken(error: IntegrityError) -> bool:
    """Whether `error` is the key's own row refused (another attempt wrote it meanwhile)."""
    return "idempotency_keys" in str(error.orig)


Action = Callable[[Session, KeyUse], tuple[int, dict[str, Any]]]


def run_idempotent_write(
    write: Callable[[], AbstractContextManager[Session]],
    *,
    client: str,
    key: str,
    request: Any,
    action: Action,
    as_of: datetime,
    keep_days: int = 7,
) -> Outcome:
    """`run_idempotent` for a caller that lets it open the write transaction (`write()`, such as
    `Database.write`): a success costs no savepoint, the busiest routes' two round trips, and its
    key goes out with the COMMIT (on PostgreSQL, one round trip for both).

    `action` gets the key (`KeyUse`): its look-up to run with its first statement (a purchase
    commit runs it with the member's lock: no round trip of its own), and its record to write
    with its last statements and the COMMIT (a purchase commit: with its writes). A look-up not
    run there runs after the action, whose work is then rolled back if the key was seen; a record
    not written there is written with the COMMIT after the action. A refused action
    rolls the whole transaction back; its outcome is then stored in a second one, after the key
    is checked again (another attempt may have taken it in between)."""
    digest = request_hash(request)
    remember = partial(
        _remember, client=client, key=key, digest=digest, as_of=as_of, keep_days=keep_days
    )
    attempt = partial(
        _attempt,
        write,
        action,
        remember,
        client=client,
        key=key,
        digest=digest,
        as_of=as_of,
        keep_days=keep_days,
    )
    try:
        try:
            return attempt(first=True)
        except _Seen as seen:
            stored = _stored(seen.row, digest, as_of)
            if stored is not None:
                return stored
        # A key past its retention: forgotten, then the request runs as a new one.
        return attempt(first=False)
    except _KeyBusy:
        raise Conflict(ErrorCode.IDEMPOTENCY_IN_PROGRESS, *_IN_PROGRESS) from None
    except _Refused as refusal:
        error = refusal.error
    with write() as session:
        replay = _replay(session, client, key, digest, as_of)
        if replay is not None:
            return replay
        return remember(session, outcome=(error.status, error.to_dict()))


def _attempt(
    write: Callable[[], AbstractContextManager[Session]],
    action: Action,
    remember: Callable[..., Outcome],
    *,
    first: bool,
    client: str,
    key: str,
    digest: str,
    as_of: datetime,
    keep_days: int,
) -> Outcome:
    """One transaction running `action`: the first checks the key with the action's first
    statement; a later one (after a stale key) looks the key up first, forgetting it."""
    with write() as session:
        use = KeyUse(session, client, key, digest, as_of, keep_days, first)
        if not first:
            replay = _replay(session, client, key, digest, as_of)
            if replay is not None:
                return replay
            use.verified = True
        try:
            outcome = action(session, use)
        except KizunaError as refused:
            raise _Refused(refused) from refused  # the key is checked again before storing it
        except IntegrityError as error:
            if use.recorded is not None and _key_taken(error):
                raise Conflict(ErrorCode.IDEMPOTENCY_IN_PROGRESS, *_IN_PROGRESS) from error
            raise
        if use.recorded is not None:
            return Outcome(*use.recorded, replayed=False)  # written and committed by the action
        if not use.verified:
            run_checks(session, use.checks)
        # The key's row and the COMMIT go out together: the success's last round trip.
        return remember(session, outcome=outcome, last=True)


def prune_expired(session: Session, *, as_of: datetime) -> int:
    """Forget keys past their retention; returns how many."""
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= as_of))
    return int(getattr(result, "rowcount", 0) or 0)
