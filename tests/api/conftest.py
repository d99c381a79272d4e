"""Fixtures of the HTTP tests: the app built on the module's `database` (both engines) and a small
world of two partners with API clients, committed for real so that the app's transactions see it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kizuna.api.app import create_app
from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.db.database import Database
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.partners.models import Partner, Program, Store
from kizuna.rules.domain import BreakdownRow
from tests import factories as f


@pytest.fixture(scope="module")
def app(database: Database) -> Any:
    return create_app(Settings(database_url=database.url, log_json=True), database=database)


@pytest.fixture(scope="module")
def http(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@dataclass
class Caller:
    """An API client as a test drives it."""

    http: TestClient
    key: str
    client_id: int
    partner: Partner
    store: Store | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.http.get(path, headers=self.headers, **kwargs)

    def post(self, path: str, json: Any = None, *, key: str | None = None, **kwargs: Any) -> Any:
        headers = self.headers | {"Idempotency-Key": key or uuid.uuid4().hex}
        headers |= kwargs.pop("headers", {})
        return self.http.post(path, json=json, headers=headers, **kwargs)


@dataclass
class World:
    database: Database
    http: TestClient
    program: Program
    partner_a: Partner
    store_a: Store
    partner_b: Partner
    store_b: Store
    a: Caller
    b: Caller

    def caller(
        self,
        partner: Partner,
        *,
        kind: ClientKind = ClientKind.PARTNER,
        scopes: list[str] | None = None,
        store: Store | None = None,
        rate_per_minute: int = 6000,
    ) -> Caller:
        with self.database.write() as session:
            client, key = clients.create_client(
                session,
                partner_id=partner.id,
                kind=kind,
                name=f"{kind} of {partner.code}",
                scopes=scopes,
                store_id=store.id if store else None,
                rate_per_minute=rate_per_minute,
                as_of=utcnow(),
            )
        return Caller(self.http, key, client.id, partner, store)

    def member(self, points: int = 0) -> int:
        """A member of the programme holding `points` available points."""
        with self.database.write() as session:
            member = f.member(session, self.program, ec=f"ec-{uuid.uuid4().hex}")
            if points:
                ledger.earn(
                    session,
                    member_id=member.id,
                    rows=[BreakdownRow("base", "opening", points)],
                    policy=LedgerPolicy(),
                    occurred_at=utcnow(),
                    as_of=utcnow(),
                )
            return member.id


@pytest.fixture
def world(database: Database, http: TestClient) -> World:
    with database.write() as session:
        program = f.program(session)
        partner_a, partner_b = f.partner(session, program), f.partner(session, program)
        store_a, store_b = f.store(session, partner_a), f.store(session, partner_b)
    all_scopes = [
        "members:read",
        "members:write",
        "purchases:read",
        "purchases:write",
        "events:write",
        "points:adjust",
        "batches:write",
        "webhooks:manage",
    ]
    # The two callers are made by the world itself, so they are filled in right after it.
    world = World(database, http, program, partner_a, store_a, partner_b, store_b, None, None)  # type: ignore[arg-type]
    world.a = world.caller(partner_a, scopes=all_scopes)
    world.b = world.caller(partner_b, scopes=all_scopes)
    return world
