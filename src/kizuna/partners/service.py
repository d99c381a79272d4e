"""Use cases of programmes, partners and stores."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.core.errors import NotFound
from kizuna.ledger.domain import LedgerPolicy
from kizuna.partners.errors import ErrorCode
from kizuna.partners.models import Partner, Program, Store
from kizuna.rules.domain import EarnPolicy


@dataclass(frozen=True)
class ProgramPolicies:
    """A programme's policies as the domain reads them."""

    program_id: int
    point_value_yen: int
    ledger: LedgerPolicy
    earn: EarnPolicy


def create_program(
    session: Session,
    *,
    code: str,
    name: str,
    timezone: str = "Asia/Tokyo",
    point_value_yen: int = 1,
    ledger: LedgerPolicy | None = None,
    earn: EarnPolicy | None = None,
) -> Program:
    """A new programme with the given (or default) policies."""
    program = Program(
        code=code,
        name=name,
        timezone=timezone,
        point_value_yen=point_value_yen,
        ledger_policy=(ledger or LedgerPolicy(timezone=timezone)).to_dict(),
        earn_policy=(earn or EarnPolicy()).to_dict(),
    )
    session.add(program)
    session.flush()
    return program


def policies(session: Session, program_id: int) -> ProgramPolicies:
    """The policies of programme `program_id`."""
    program = session.get(Program, program_id)
    if program is None:
        raise NotFound(ErrorCode.PROGRAM_NOT_FOUND, f"programme {program_id} not found")
    return ProgramPolicies(
        program_id=program.id,
        point_value_yen=program.point_value_yen,
        ledger=LedgerPolicy.from_dict(program.ledger_policy, timezone=program.timezone),
        earn=EarnPolicy.from_dict(program.earn_policy),
    )


def create_partner(
    session: Session, *, program_id: int, code: str, name: str, is_operator: bool = False
) -> Partner:
    """A new partner company of a programme."""
    partner = Partner(program_id=program_id, code=code, name=name, is_operator=is_operator)
    session.add(partner)
    session.flush()
    return partner


def create_store(
    session: Session, *, partner_id: int, code: str, name: str, prefecture: str | None = None
) -> Store:
    """A new store of a partner."""
    store = Store(partner_id=partner_id, code=code, name=name, prefecture=prefecture)
    session.add(store)
    session.flush()
    return store


def get_store(session: Session, store_id: int) -> Store:
    """Store `store_id`, or `store_not_found`."""
    store = session.get(Store, store_id)
    if store is None:
        raise NotFound(ErrorCode.STORE_NOT_FOUND, f"store {store_id} not found")
    return store


def find_store(session: Session, *, partner_id: int, code: str) -> Store | None:
    """The store of a partner with this code, if any."""
    return session.scalars(
        select(Store).where(Store.partner_id == partner_id, Store.code == code)
    ).one_or_none()
