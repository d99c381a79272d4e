"""Builders of test data through the services (never raw rows), with sensible defaults."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from kizuna.ledger.domain import LedgerPolicy
from kizuna.members import service as members
from kizuna.members.models import Member
from kizuna.partners import service as partners
from kizuna.partners.models import Partner, Program, Store
from kizuna.rules.domain import EarnPolicy
from kizuna.security import service as security
from kizuna.security.models import StaffUser

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # Monday 12:00 in Tokyo
_seq = itertools.count(1)


def program(
    session: Session, *, ledger: LedgerPolicy | None = None, earn: EarnPolicy | None = None
) -> Program:
    n = next(_seq)
    return partners.create_program(
        session, code=f"P{n}", name=f"Program {n}", ledger=ledger, earn=earn
    )


def partner(session: Session, program: Program, *, operator: bool = False) -> Partner:
    n = next(_seq)
    return partners.create_partner(
        session, program_id=program.id, code=f"PT{n}", name=f"Partner {n}", is_operator=operator
    )


def store(session: Session, partner: Partner) -> Store:
    n = next(_seq)
    return partners.create_store(session, partner_id=partner.id, code=f"S{n}", name=f"Store {n}")


def member(
    session: Session, program: Program, *, joined_at: datetime = T0, **identifiers: str
) -> Member:
    return members.create_member(
        session, program_id=program.id, joined_at=joined_at, identifiers=identifiers or None
    )


STAFF_PASSWORD = "correct horse battery staple"


def staff(
    session: Session,
    *,
    role: str = "admin",
    store: Store | None = None,
    partner: Partner | None = None,
    password: str = STAFF_PASSWORD,
    username: str | None = None,
) -> StaffUser:
    n = next(_seq)
    return security.create_staff(
        session,
        username=username or f"{role}-{n}",
        display_name=f"{role} {n}",
        role=role,
        password=password,
        actor="test",
        as_of=T0,
        store_id=store.id if store else None,
        partner_id=partner.id if partner else None,
    )


def console_login(
    client: Any, username: str, password: str = STAFF_PASSWORD, *, next: str = ""
) -> Any:
    """Log a test client in through the console's log-in form; returns the final response."""
    page = client.get("/console/login")
    token = csrf_of(page.text)
    return client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": token, "next": next},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a console page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def campaign(
    session: Session,
    program: Program,
    *,
    activate_at: datetime | None = T0 - timedelta(days=1),
    **definition: Any,
) -> Any:
    """A campaign (default: 2倍 on purchases from T0 − 1 day for 30 days), active unless
    `activate_at` is None."""
    from kizuna.rules import manage

    n = next(_seq)
    data = {
        "name": f"Campaign {n}",
        "starts_at": (T0 - timedelta(days=1)).isoformat(),
        "ends_at": (T0 + timedelta(days=30)).isoformat(),
        "action": {"type": "multiply", "times": 2},
        **definition,
    }
    view = manage.create_campaign(
        session, program_id=program.id, code=f"C{n}", definition=data, as_of=T0 - timedelta(days=2)
    )
    if activate_at is not None:
        view = manage.activate_campaign(session, campaign_id=view.campaign.id, as_of=activate_at)
    return view


def ranks(
    session: Session,
    program: Program,
    *,
    metric: str = "spend",
    window: str = "calendar_year",
    tiers: tuple[tuple[str, int, int], ...] = (
        ("bronze", 0, 100),
        ("silver", 10_000, 150),
        ("gold", 50_000, 200),
    ),
) -> Any:
    """Ranks for a programme: (code, threshold, earn multiplier %) per tier."""
    from kizuna.tiers import service as tier_service
    from kizuna.tiers.domain import Metric, Window

    return tier_service.configure(
        session,
        program_id=program.id,
        metric=Metric(metric),
        window=Window(window),
        tiers=[
            tier_service.TierInput(
                code=code,
                name=code.title(),
                threshold=threshold,
                earn_multiplier_pct=pct,
                birthday_points=pct,
            )
            for code, threshold, pct in tiers
        ],
    )


def console_client(app: Any, username: str, password: str = STAFF_PASSWORD) -> Any:
    """A browser-like test client of the console over https, logged in as `username`."""
    client = TestClient(app, base_url="https://console.example")
    console_login(client, username, password)
    return client
