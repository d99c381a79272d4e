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
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, cast
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


@dataclass(frozen=True)
class Prepared:
    """A valid line with its rows already encrypted; member ids are filled in at insert time."""

    item: CardLine
    profile: dict[str, Any] | None
    identifier: dict[str, Any]
    card: dict[str, Any]


Chunk = list[tuple[int, dict[str, str]]]
Parsed = list[tuple[int, Prepared | None, list[LineError]]]


def prepare_chunk(
    chunk: Chunk, *, prefix: str, program_id: int, as_of: datetime, encrypt: bool
) -> Parsed:
    """Parse, validate and (unless a dry run) encrypt some lines: the CPU-heavy part of an import,
    safe to run in another process (it reads no database)."""
    ring = keyring()
    parsed: Parsed = []
    for line, row in chunk:
        item, errors = parse_line(line, row, prefix)
        prepared = None
        if item is not None:
            identifier, card = (
                cards.card_rows(
                    member_id=0,
                    program_id=program_id,
                    number=item.card_number,
                    status=cards.CardStatus.ACTIVE,
                    origin=cards.CardOrigin.LEGACY,
                    as_of=as_of,
                    ring=ring,
                )
                if encrypt
                else ({}, {})
            )
            profile = (
                service.profile_columns(item.profile, ring)
                if encrypt and item.profile != Profile()
                else None
            )
            prepared = Prepared(item, profile, identifier, card)
        parsed.append((line, prepared, errors))
    return parsed


def _post_batch(
    session: Session, batch: list[Prepared], *, rules: ProgramPolicies, as_of: datetime
) -> None:
    """Members, profiles, cards and opening balances, each in one bulk statement per batch."""
    tz = rules.ledger.tz
    items = [prepared.item for prepared in batch]
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
    owned = list(zip(member_ids, batch, strict=True))
    profiles = [
        {**prepared.profile, "member_id": member_id, "updated_at": as_of}
        for member_id, prepared in owned
        if prepared.profile is not None
    ]
    if profiles:
        session.execute(insert(_table(MemberProfile)), profiles)
    session.execute(
        insert(_table(MemberIdentifier)),
        [{**prepared.identifier, "member_id": member_id} for member_id, prepared in owned],
    )
    session.execute(
        insert(_table(Card)),
        [{**prepared.card, "member_id": member_id} for member_id, prepared in owned],
    )
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


@contextmanager
def _pool(workers: int) -> Iterator[Executor | None]:
    if workers <= 1:
        yield None
        return
    # fork: the workers inherit the configured keyring (keys are never passed around).
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        yield pool


def _in_order(
    pool: Executor | None, fn: Callable[[Chunk], Parsed], chunks: Iterator[Chunk], ahead: int
) -> Iterator[Parsed]:
    """`fn` over `chunks` in order, at most `ahead` chunks in flight (memory stays bounded)."""
    if pool is None:
        yield from map(fn, chunks)
        return
    pending: deque[Future[Parsed]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(fn, chunk))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def run_import(
    database: Database,
    path: Path,
    *,
    program_id: int,
    as_of: datetime,
    dry_run: bool = False,
    batch_size: int = 500,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate (dry run) or import a legacy card file; resumes a file imported before in part.

    With `workers` > 1, lines are parsed and encrypted in that many processes while this one
    writes the batches in file order, so resumption stays exact.
    """
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
    last_line = report.resumed_after
    errors_before = 0

    def flush(batch: list[Prepared], lines: int) -> None:
        nonlocal errors_before
        with database.read() if dry_run else database.write() as session:
            present = _existing_cards(session, [prepared.item.card_number for prepared in batch])
            fresh = [prepared for prepared in batch if prepared.item.card_number not in present]
            report.points += sum(prepared.item.points for prepared in fresh)
            if fresh and not dry_run:
                _post_batch(session, fresh, rules=policies(session, program_id), as_of=as_of)
            if not dry_run:
                run = session.scalars(
                    select(CardImport).where(CardImport.file_sha256 == digest)
                ).one()
                run.last_line = last_line
                run.imported += len(fresh)
                run.skipped += len(batch) - len(fresh)
                run.failed += report.failed - errors_before
                run.updated_at = as_of
        report.imported += len(fresh)
        report.skipped += len(batch) - len(fresh)
        errors_before = report.failed
        if progress:
            progress(lines)

    def chunks() -> Iterator[Chunk]:
        chunk: Chunk = []
        for line, row in read_lines(path):
            report.total += 1
            if line <= report.resumed_after:
                continue
            chunk.append((line, row))
            if len(chunk) >= batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    prepare = partial(
        prepare_chunk, prefix=prefix, program_id=program_id, as_of=as_of, encrypt=not dry_run
    )
    with _pool(workers) as pool:
        for parsed in _in_order(pool, prepare, chunks(), ahead=2 * workers):
            batch: list[Prepared] = []
            for line, prepared, errors in parsed:
                if prepared is not None and prepared.item.card_number in seen:
                    errors, prepared = (
                        [LineError(line, "card_number", "duplicate in this file")],
                        None,
                    )
                report.errors += errors
                if prepared is not None:
                    seen.add(prepared.item.card_number)
                    batch.append(prepared)
                last_line = line
            flush(batch, len(parsed))
    if not dry_run:
        with database.write() as session:
            run = session.scalars(select(CardImport).where(CardImport.file_sha256 == digest)).one()
            run.finished_at = as_of
    return report
