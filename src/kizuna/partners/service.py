"""Use cases of programmes, partners and stores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Text, cast, select
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
    row = session.execute(select(*POLICY_COLUMNS).where(Program.id == program_id)).first()
    if row is None:
        raise NotFound(ErrorCode.PROGRAM_NOT_FOUND, f"programme {program_id} not found")
    return policies_of(*row)


# What `policies_of` takes, in its order: select these beside other columns to read a
# programme's policies in a statement that is running anyway.
POLICY_COLUMNS = (
    Program.id,
    Program.point_value_yen,
    Program.timezone,
    cast(Program.ledger_policy, Text),
    cast(Program.earn_policy, Text),
)


@lru_cache(maxsize=256)
def policies_of(
    program_id: int, point_value_yen: int, timezone: str, ledger_json: str, earn_json: str
) -> ProgramPolicies:
    """A programme's policies from its stored columns (`POLICY_COLUMNS`).

    Every purchase reads them; parsing the JSON into policy objects each time cost more than the
    read. The cache is keyed by the stored text itself, so an edited policy is a new key and a
    stale one can never be returned, in this process or any other.
    """
    return ProgramPolicies(
        program_id=program_id,
        point_value_yen=point_value_yen,
        ledger=LedgerPolicy.from_dict(json.loads(ledger_json), timezone=timezone),
        earn=EarnPolicy.from_dict(json.loads(earn_json)),
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
