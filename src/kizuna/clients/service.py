"""Use cases of API clients: create (the key is returned once), authenticate, rotate, revoke.

Also the QR tokens of members' apps: issuing one retires the member's earlier tokens, and a token
resolves once, within its short life, to the member it was issued for.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kizuna.clients.domain import (
    ClientIdentity,
    ClientKind,
    generate_key,
    key_matches,
    parse_scopes,
)
from kizuna.clients.domain import prefix_of as key_prefix
from kizuna.clients.errors import ErrorCode
from kizuna.clients.models import ApiClient, QrToken
from kizuna.core.errors import KizunaError, NotFound, Unprocessable
from kizuna.partners.models import Partner
from kizuna.partners.service import get_store

DEFAULT_RATE_PER_MINUTE = 6000
QR_TOKEN_SECONDS = 60


class UnauthenticatedError(KizunaError):
    status = 401


def create_client(
    session: Session,
    *,
    partner_id: int,
    kind: ClientKind,
    name: str,
    as_of: datetime,
    scopes: list[str] | None = None,
    store_id: int | None = None,
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
) -> tuple[ApiClient, str]:
    """A new client of a partner and its API key (the only time the key is seen)."""
    if session.get(Partner, partner_id) is None:
        raise NotFound(ErrorCode.INVALID_CLIENT, f"partner {partner_id} not found")
    if store_id is not None and get_store(session, store_id).partner_id != partner_id:
        raise Unprocessable(ErrorCode.INVALID_CLIENT, "the store belongs to another partner")
    if rate_per_minute < 1:
        raise Unprocessable(ErrorCode.INVALID_CLIENT, "rate_per_minute must be positive")
    try:
        granted = parse_scopes(scopes, kind)
    except ValueError as unknown:
        raise Unprocessable(ErrorCode.UNKNOWN_SCOPE, str(unknown)) from unknown
    new = generate_key()
    client = ApiClient(
        partner_id=partner_id,
        store_id=store_id,
        kind=str(kind),
        name=name,
        scopes=sorted(str(scope) for scope in granted),
        key_prefix=new.prefix,
        key_hash=new.digest,
        rate_per_minute=rate_per_minute,
        status="active",
        created_at=as_of,
    )
    session.add(client)
    session.flush()
    return client, new.key


def get_client(session: Session, client_id: int) -> ApiClient:
    """Client `client_id`, or `client_not_found`."""
    client = session.get(ApiClient, client_id)
    if client is None:
        raise NotFound(ErrorCode.CLIENT_NOT_FOUND, f"API client {client_id} not found")
    return client


def list_clients(session: Session, *, partner_id: int | None = None) -> list[ApiClient]:
    """All clients, or those of one partner, oldest first."""
    query = select(ApiClient).order_by(ApiClient.id)
    if partner_id is not None:
        query = query.where(ApiClient.partner_id == partner_id)
    return list(session.scalars(query))


def identity_of(session: Session, client: ApiClient) -> ClientIdentity:
    """What a request knows about `client`."""
    partner = session.get(Partner, client.partner_id)
    assert partner is not None
    return ClientIdentity(
        id=client.id,
        name=client.name,
        kind=ClientKind(client.kind),
        partner_id=client.partner_id,
        program_id=partner.program_id,
        is_operator=partner.is_operator,
        store_id=client.store_id,
        scopes=frozenset(client.scopes),
        rate_per_minute=client.rate_per_minute,
    )


def authenticate(session: Session, *, key: str) -> ClientIdentity:
    """The active client whose key this is, or `unauthenticated`."""
    prefix = key_prefix(key)
    client = (
        session.scalars(select(ApiClient).where(ApiClient.key_prefix == prefix)).one_or_none()
        if prefix
        else None
    )
    if client is None or client.status != "active" or not key_matches(key, client.key_hash):
        raise UnauthenticatedError(ErrorCode.UNAUTHENTICATED, "missing, unknown or revoked API key")
    return identity_of(session, client)


def rotate_key(session: Session, *, client_id: int, as_of: datetime) -> str:
    """Replace a client's key; the old key stops working at once. Returns the new key."""
    client = get_client(session, client_id)
    if client.status != "active":
        raise Unprocessable(ErrorCode.INVALID_CLIENT, "a revoked client cannot get a new key")
    new = generate_key()
    client.key_prefix, client.key_hash, client.key_rotated_at = new.prefix, new.digest, as_of
    session.flush()
    return new.key


def revoke(session: Session, *, client_id: int, as_of: datetime) -> ApiClient:
    """Revoke a client for good: its key no longer authenticates."""
    client = get_client(session, client_id)
    client.status, client.revoked_at = "revoked", as_of
    session.flush()
    return client


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_qr_token(
    session: Session, *, member_id: int, client_id: int, as_of: datetime
) -> tuple[str, datetime]:
    """A new QR token for a member's app and when it expires; earlier unused tokens stop working."""
    session.execute(
        update(QrToken)
        .where(QrToken.member_id == member_id, QrToken.used_at.is_(None))
        .values(used_at=as_of)
    )
    token = secrets.token_urlsafe(18)
    expires_at = as_of + timedelta(seconds=QR_TOKEN_SECONDS)
    session.add(
        QrToken(
            member_id=member_id,
            token_hash=_token_hash(token),
            issued_by=client_id,
            issued_at=as_of,
            expires_at=expires_at,
        )
    )
    session.flush()
    return token, expires_at


def resolve_qr_token(session: Session, *, token: str, as_of: datetime) -> int:
    """The member a QR token was issued to; the token is used up. `qr_token_invalid` otherwise."""
    # One conditional UPDATE both checks and consumes, so two tills cannot both use a token.
    member_id = session.scalar(
        update(QrToken)
        .where(
            QrToken.token_hash == _token_hash(token),
            QrToken.used_at.is_(None),
            QrToken.expires_at > as_of,
        )
        .values(used_at=as_of)
        .returning(QrToken.member_id)
    )
    if member_id is None:
        raise NotFound(ErrorCode.QR_TOKEN_INVALID, "QR token unknown, expired or already used")
    return int(member_id)
