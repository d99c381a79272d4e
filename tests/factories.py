"""Builders of test data through the services (never raw rows), with sensible defaults."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from kizuna.ledger.domain import LedgerPolicy
from kizuna.members import service as members
from kizuna.members.models import Member
from kizuna.partners import service as partners
from kizuna.partners.models import Partner, Program, Store
from kizuna.rules.domain import EarnPolicy

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
