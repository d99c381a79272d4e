"""Legacy card migration (ポイント移行): a validated, resumable, idempotent CSV import.

Each line is one card of an older system: its number, its balance and, optionally, who holds it.
A line is checked whole (`parse_line`: every bad field is reported with its line and reason, never
its value). A valid line becomes a member, an active legacy card and, when the balance is
positive, a `migrate_in` journal entry with its lot — the entry and lot `ledger.earn` would write,
posted for the whole batch at once by `ledger.transfer.open_accounts`. Lines are written in batches,
one transaction each, and the import's `last_line` moves in the same transaction: after a crash
a rerun resumes after the last committed batch. A card already in the database is skipped, so
running a file twice, or two files naming the same card, posts nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from kizuna.core.errors import KizunaError
from kizuna.db.base import Base
from kizuna.db.database import Database
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType
from kizuna.ledger.transfer import Opening, open_accounts
from kizuna.members import cards, service
from kizuna.members.domain import (
    IdentifierKind,
    MemberStatus,
    Profile,
    normalise_card_number,
    normalise_profile,
    validate_programme_card,
)
from kizuna.members.identity import stored_value
from kizuna.members.models import Card, CardImport, Member, MemberIdentifier, MemberProfile
from kizuna.partners.service import ProgramPolicies, policies
from kizuna.privacy.keys import keyring
from kizuna.rules.domain import BreakdownRow

COLUMNS = (
    "card_number",
    "points",
    "expires_on",
    "name_kanji",
    "name_kana",
    "birth_date",
    "gender",
    "postal_code",
    "address",
    "phone",
    "email",
    "joined_on",
)
REQUIRED = ("card_number", "points")
MAX_POINTS = 100_000_000


def _table(model: type[Base]) -> Table:
    # Core inserts of plain rows: the ORM's bulk path costs more per row than the database does.
    return cast(Table, model.__table__)


@dataclass(frozen=True)
class LineError:
    """One reason a line was refused: where, which field, why (never the value)."""

    line: int
    field: str
    reason: str


@dataclass(frozen=True)
class CardLine:
    """A valid line, normalised."""

    line: int
    card_number: str
    points: int
    expires_on: date | None
    joined_on: date | None
    profile: Profile


def _date(value: str, name: str, errors: list[str]) -> date | None:
    try:
        return date.fromisoformat(value.replace("/", "-"))
    except ValueError:
        errors.append(name)
        return None


def parse_line(
    line: int, row: dict[str, str], prefix: str
) -> tuple[CardLine | None, list[LineError]]:
    """A line checked whole: the normalised card line, or every error in it."""
    errors: list[LineError] = []
    value = {name: (row.get(name) or "").strip() for name in COLUMNS}
    for name in REQUIRED:
        if not value[name]:
            errors.append(LineError(line, name, "required"))
    number = ""
    if value["card_number"]:
        try:
            number = normalise_card_number(value["card_number"])
            validate_programme_card(number, prefix)
        except KizunaError as bad:
            errors.append(LineError(line, "card_number", str(bad.details.get("reason", bad.code))))
    points = 0
    if value["points"]:
        try:
            points = int(value["points"].replace(",", ""))
            if not 0 <= points <= MAX_POINTS:
                errors.append(LineError(line, "points", f"must be 0 to {MAX_POINTS}"))
        except ValueError:
            errors.append(LineError(line, "points", "not a whole number"))
    bad_dates: list[str] = []
    expires = _date(value["expires_on"], "expires_on", bad_dates) if value["expires_on"] else None
    joined = _date(value["joined_on"], "joined_on", bad_dates) if value["joined_on"] else None
    birth = _date(value["birth_date"], "birth_date", bad_dates) if value["birth_date"] else None
    errors += [LineError(line, name, "not a date (YYYY-MM-DD)") for name in bad_dates]
    written = Profile(
        name_kanji=value["name_kanji"] or None,
        name_kana=value["name_kana"] or None,
        birth_date=birth,
        gender=value["gender"] or None,
        postal_code=value["postal_code"] or None,
        address=value["address"] or None,
        phone=value["phone"] or None,
        email=value["email"] or None,
    )
    profile = Profile()
    # Each field alone, so that the report names every bad field of the line, not the first.
    for name, given in written.fields().items():
        try:
            if given is not None:
                normalise_profile(replace(Profile(), **{name: getattr(written, name)}))
        except KizunaError as bad:
            errors.append(LineError(line, name, str(bad.details.get("reason", bad.code))))
    if not errors:
        profile = normalise_profile(written)
    if errors:
        return None, errors
    return CardLine(line, number, points, expires, joined, profile), []


def file_digest(path: Path) -> str:
    """SHA-256 of the file: an import is known by its content, not its name."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, fields) of each data line; the header is line 1."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
        if missing:
            raise KizunaError("invalid_import_file", f"missing columns: {', '.join(missing)}")
        for row in reader:
            yield reader.line_num, row


@dataclass
class ImportReport:
    """Counts and errors of one run."""

    total: int = 0
    imported: int = 0
    skipped: int = 0
    points: int = 0
    resumed_after: int = 0
    errors: list[LineError] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len({error.line for error in self.errors})


def write_error_report(path: Path, errors: list[LineError]) -> None:
    """The error report as CSV: line, field, reason."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "field", "reason"])
        writer.writerows((error.line, error.field, error.reason) for error in errors)


def _existing_cards(session: Session, numbers: list[str]) -> set[str]:
    indexes = {stored_value(IdentifierKind.CARD, number): number for number in numbers}
    found = session.scalars(select(Card.number_index).where(Card.number_index.in_(list(indexes))))
    return {indexes[index] for index in found}


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def _post_batch(
    session: Session, items: list[CardLine], *, rules: ProgramPolicies, as_of: datetime
) -> None:
    """Members, profiles, cards and opening balances, each in one bulk statement per batch."""
    ring = keyring()
    tz = rules.ledger.tz
    member_ids = session.scalars(
        insert(_table(Member)).returning(_table(Member).c.id, sort_by_parameter_order=True),
        [
            {
                "program_id": rules.program_id,
                "status": str(MemberStatus.ACTIVE),
                "joined_at": _local_midnight(item.joined_on, tz) if item.joined_on else as_of,
                "join_channel": "import",
            }
            for item in items
        ],
    ).all()
    profiles = [
        {"member_id": member_id, "updated_at": as_of, **service.profile_columns(item.profile, ring)}
        for member_id, item in zip(member_ids, items, strict=True)
        if item.profile != Profile()
    ]
    if profiles:
        session.execute(insert(_table(MemberProfile)), profiles)
    rows = [
        cards.card_rows(
            member_id=member_id,
            program_id=rules.program_id,
            number=item.card_number,
            status=cards.CardStatus.ACTIVE,
            origin=cards.CardOrigin.LEGACY,
            as_of=as_of,
            ring=ring,
        )
        for member_id, item in zip(member_ids, items, strict=True)
    ]
    session.execute(insert(_table(MemberIdentifier)), [identifier for identifier, _ in rows])
    session.execute(insert(_table(Card)), [card for _, card in rows])
    openings = [
        Opening(
            member_id,
            [BreakdownRow("migrate_in", "移行ポイント", item.points, expires_at=_expiry(item, tz))]
            if item.points
            else [],
        )
        for member_id, item in zip(member_ids, items, strict=True)
    ]
    open_accounts(
        session,
        openings=openings,
        policy=rules.ledger,
        occurred_at=as_of,
        as_of=as_of,
        context=ledger.Context(actor="import", channel="import", reason_code="migrate_in"),
        entry_type=EntryType.MIGRATE_IN,
    )


def _expiry(item: CardLine, tz: ZoneInfo) -> datetime | None:
    """The day after `expires_on`, 00:00 local: the points can be used through that day."""
    if item.expires_on is None:
        return None
    return _local_midnight(item.expires_on, tz) + timedelta(days=1)


def run_import(
    database: Database,
    path: Path,
    *,
    program_id: int,
    as_of: datetime,
    dry_run: bool = False,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate (dry run) or import a legacy card file; resumes a file imported before in part."""
    report = ImportReport()
    digest = file_digest(path)
    if not dry_run:
        with database.write() as session:
            run = session.scalars(
                select(CardImport).where(CardImport.file_sha256 == digest)
            ).one_or_none()
            if run is None:
                session.add(
                    CardImport(
                        file_sha256=digest,
                        file_name=path.name[:300],
                        program_id=program_id,
                        last_line=1,
                        imported=0,
                        skipped=0,
                        failed=0,
                        started_at=as_of,
                        updated_at=as_of,
                    )
                )
            else:
                report.resumed_after = run.last_line
    with database.read() as session:
        prefix = cards.series_prefix(session, program_id)
    seen: set[str] = set()
    batch: list[CardLine] = []
    last_line = report.resumed_after
    errors_before = 0

    def flush() -> None:
        nonlocal batch, errors_before
        with database.read() if dry_run else database.write() as session:
            present = _existing_cards(session, [item.card_number for item in batch])
            rules = policies(session, program_id)
            fresh = [item for item in batch if item.card_number not in present]
            skipped = len(batch) - len(fresh)
            imported = len(fresh)
            report.points += sum(item.points for item in fresh)
            if fresh and not dry_run:
                _post_batch(session, fresh, rules=rules, as_of=as_of)
            if not dry_run:
                run = session.scalars(
                    select(CardImport).where(CardImport.file_sha256 == digest)
                ).one()
                run.last_line = last_line
                run.imported += imported
                run.skipped += skipped
                run.failed += report.failed - errors_before
                run.updated_at = as_of
        report.imported += imported
        report.skipped += skipped
        errors_before = report.failed
        if progress:
            progress(len(batch))
        batch = []

    for line, row in read_lines(path):
        report.total += 1
        if line <= report.resumed_after:
            continue
        item, errors = parse_line(line, row, prefix)
        if item is not None and item.card_number in seen:
            errors, item = [LineError(line, "card_number", "duplicate in this file")], None
        report.errors += errors
        if item is not None:
            seen.add(item.card_number)
            batch.append(item)
        elif progress:
            progress(1)
        last_line = line
        if len(batch) >= batch_size:
            flush()
    flush()
    if not dry_run:
        with database.write() as session:
            run = session.scalars(select(CardImport).where(CardImport.file_sha256 == digest)).one()
            run.finished_at = as_of
    return report
