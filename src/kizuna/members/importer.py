"""Legacy card migration (ポイント移行): a validated, resumable, idempotent CSV import.

Each line is one card of an older system: its number, its balance and, optionally, who holds it.
A line is checked whole (`parse_line`: every bad field is reported with its line and reason, never
its value). A valid line becomes a member, an active legacy card and, when the balance is
positive, a `migrate_in` journal entry with its lot — the entry and lot `ledger.earn` would write,
posted for a whole chunk at once by `ledger.opening.open_balances`.

Lines go in chunks (2,000 by default). The CPU-heavy part — parsing, normalising, encrypting
every personal field, blind indexes — is done per chunk in Python (`prepare_chunk`, in worker
processes with `workers` > 1); the writer then loads the chunk's rows with `COPY` on PostgreSQL
(`executemany` on SQLite) into members, profiles, identifiers, cards, accounts, entries and lots,
ids reserved from the sequences first, in one transaction that also moves the import's
`last_line`: after a crash a rerun resumes after the last committed chunk. A card already in the
database is skipped, so running a file twice, or two files naming the same card, posts nothing
twice.
"""

from __future__ import annotations

import csv
import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from multiprocessing import get_context
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.orm import Session

from kizuna.core.errors import KizunaError
from kizuna.db.base import Base
from kizuna.db.bulk import allocate_ids, write_rows
from kizuna.db.database import Database
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType
from kizuna.ledger.opening import BalanceOpener
from kizuna.ledger.transfer import Opening
from kizuna.members import cards, service
from kizuna.members.domain import (
    PROFILE_FIELDS,
    IdentifierKind,
    MemberStatus,
    Profile,
    normalise_card_number,
    normalise_field,
    validate_programme_card,
)
from kizuna.members.identity import stored_value
from kizuna.members.models import Card, CardImport, Member, MemberIdentifier, MemberProfile
from kizuna.partners.service import ProgramPolicies, policies
from kizuna.privacy.keys import Keyring, keyring
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
    # Each field alone (as `normalise_profile` would), so that the report names every bad field
    # of the line, not the first; each is normalised once.
    fields: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        given = birth if name == "birth_date" else value[name] or None
        if given is None:
            continue
        try:
            fields[name] = normalise_field(name, given)
        except KizunaError as bad:
            errors.append(LineError(line, name, str(bad.details.get("reason", bad.code))))
    if errors:
        return None, errors
    return CardLine(line, number, points, expires, joined, Profile(**fields)), []


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
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise KizunaError("invalid_import_file", f"missing columns: {', '.join(missing)}")
        for row in reader:
            if row:  # blank lines are skipped, as csv.DictReader does
                yield reader.line_num, dict(zip(header, row, strict=False))


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


_MEMBERS = _table(Member)
_PROFILES = _table(MemberProfile)
_IDENTIFIERS = _table(MemberIdentifier)
_CARDS = _table(Card)

# The columns of the rows a chunk writes; `member_id` is put in front by the writer.
_PROFILE_COLUMNS = (
    *(f"{name}_enc" for name in PROFILE_FIELDS),
    "key_version",
    "kana_index",
    "birth_index",
    "postal_index",
    "phone_index",
    "email_index",
)
_IDENTIFIER_COLUMNS = ("type", "value", "value_enc", "key_version", "created_at")
_CARD_COLUMNS = (
    "program_id",
    "number_index",
    "number_enc",
    "key_version",
    "last4",
    "status",
    "origin",
    "issued_at",
    "activated_at",
)
_MEMBER_COLUMNS = ("id", "program_id", "status", "joined_at", "join_channel")
_profile_values = itemgetter(*_PROFILE_COLUMNS)
_identifier_values = itemgetter(*_IDENTIFIER_COLUMNS)
_card_values = itemgetter(*_CARD_COLUMNS)
_NO_PROFILE = Profile()

# The chunk's indexes as one comma-separated text (hex has no commas): cheaper to send than an
# array of thousands of strings.
_EXISTING_PG = text(
    "SELECT number_index FROM cards WHERE number_index = ANY(string_to_array(:indexes, ','))"
)
_EXISTING = select(_CARDS.c.number_index).where(
    _CARDS.c.number_index.in_(bindparam("indexes", expanding=True))
)
_CHECKPOINT = (
    update(_table(CardImport))
    .where(_table(CardImport).c.file_sha256 == bindparam("digest"))
    .values(
        last_line=bindparam("last_line"),
        imported=_table(CardImport).c.imported + bindparam("imported"),
        skipped=_table(CardImport).c.skipped + bindparam("skipped"),
        failed=_table(CardImport).c.failed + bindparam("failed"),
        updated_at=bindparam("as_of"),
    )
)


def _existing_cards(session: Session, indexes: list[str]) -> set[str]:
    """The card blind indexes among `indexes` that the database already holds."""
    if not indexes:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        return set(session.scalars(_EXISTING_PG, {"indexes": ",".join(indexes)}))
    found: set[str] = set()
    for start in range(0, len(indexes), 500):  # SQLite caps the number of bound parameters
        found.update(session.scalars(_EXISTING, {"indexes": indexes[start : start + 500]}))
    return found


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


class Prepared(NamedTuple):
    """A valid line with its rows already encrypted (plain tuples: cheap to send between
    processes); the writer puts the member id in front of each row."""

    line: int
    card_number: str
    card_index: str
    points: int
    expires_on: date | None
    joined_on: date | None
    profile: tuple[Any, ...] | None  # _PROFILE_COLUMNS
    identifier: tuple[Any, ...]  # _IDENTIFIER_COLUMNS
    card: tuple[Any, ...]  # _CARD_COLUMNS


Chunk = list[tuple[int, dict[str, str]]]
Parsed = list[tuple[int, Prepared | None, list[LineError]]]


def _prepare(
    item: CardLine, *, program_id: int, as_of: datetime, encrypt: bool, ring: Keyring
) -> Prepared:
    if not encrypt:  # a dry run needs the index (is the card known?) and nothing else
        index = stored_value(IdentifierKind.CARD, item.card_number)
        return Prepared(
            item.line,
            item.card_number,
            index,
            item.points,
            item.expires_on,
            item.joined_on,
            None,
            (),
            (),
        )
    identifier, card = cards.card_rows(
        member_id=0,
        program_id=program_id,
        number=item.card_number,
        status=cards.CardStatus.ACTIVE,
        origin=cards.CardOrigin.LEGACY,
        as_of=as_of,
        ring=ring,
    )
    profile = None
    if item.profile != _NO_PROFILE:
        profile = _profile_values(service.profile_columns(item.profile, ring))
    return Prepared(
        item.line,
        item.card_number,
        card["number_index"],
        item.points,
        item.expires_on,
        item.joined_on,
        profile,
        _identifier_values(identifier),
        _card_values(card),
    )


def prepare_chunk(
    chunk: Chunk, *, prefix: str, program_id: int, as_of: datetime, encrypt: bool
) -> Parsed:
    """Parse, validate and (unless a dry run) encrypt some lines: the CPU-heavy part of an import,
    safe to run in another process (it reads no database)."""
    ring = keyring()
    parsed: Parsed = []
    for line, row in chunk:
        item, errors = parse_line(line, row, prefix)
        prepared = (
            None
            if item is None
            else _prepare(item, program_id=program_id, as_of=as_of, encrypt=encrypt, ring=ring)
        )
        parsed.append((line, prepared, errors))
    return parsed


def _opener(rules: ProgramPolicies, as_of: datetime) -> BalanceOpener:
    return BalanceOpener(
        policy=rules.ledger,
        occurred_at=as_of,
        as_of=as_of,
        context=ledger.Context(actor="import", channel="import", reason_code="migrate_in"),
        entry_type=EntryType.MIGRATE_IN,
    )


def _write_chunk(
    session: Session,
    batch: list[Prepared],
    *,
    rules: ProgramPolicies,
    opener: BalanceOpener,
    as_of: datetime,
) -> None:
    """Members, profiles, identifiers, cards and opening balances of a chunk: ids reserved
    first, then one COPY (PostgreSQL) or executemany (SQLite) per table."""
    tz = rules.ledger.tz
    midnights: dict[date, datetime] = {}

    def midnight(day: date) -> datetime:
        if day not in midnights:
            midnights[day] = _local_midnight(day, tz)
        return midnights[day]

    member_ids = allocate_ids(session, _MEMBERS, len(batch))
    owned = list(zip(member_ids, batch, strict=True))
    active, program_id = str(MemberStatus.ACTIVE), rules.program_id
    write_rows(
        session,
        _MEMBERS,
        _MEMBER_COLUMNS,
        (
            (
                member_id,
                program_id,
                active,
                midnight(p.joined_on) if p.joined_on else as_of,
                "import",
            )
            for member_id, p in owned
        ),
    )
    write_rows(
        session,
        _PROFILES,
        ("member_id", "updated_at", *_PROFILE_COLUMNS),
        ((member_id, as_of, *p.profile) for member_id, p in owned if p.profile is not None),
    )
    write_rows(
        session,
        _IDENTIFIERS,
        ("member_id", *_IDENTIFIER_COLUMNS),
        ((member_id, *p.identifier) for member_id, p in owned),
    )
    write_rows(
        session,
        _CARDS,
        ("member_id", *_CARD_COLUMNS),
        ((member_id, *p.card) for member_id, p in owned),
    )
    opener.open(
        session,
        [
            Opening(
                member_id,
                # The day after `expires_on`, 00:00 local: usable through that day.
                [
                    BreakdownRow(
                        "migrate_in",
                        "移行ポイント",
                        p.points,
                        expires_at=midnight(p.expires_on) + timedelta(days=1)
                        if p.expires_on
                        else None,
                    )
                ]
                if p.points
                else [],
            )
            for member_id, p in owned
        ],
    )


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


DEFAULT_CHUNK = 2_000


def run_import(
    database: Database,
    path: Path,
    *,
    program_id: int,
    as_of: datetime,
    dry_run: bool = False,
    batch_size: int = DEFAULT_CHUNK,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate (dry run) or import a legacy card file; resumes a file imported before in part.

    `batch_size` lines are written per transaction. With `workers` > 1, lines are parsed and
    encrypted in that many processes while this one writes the chunks in file order, so
    resumption stays exact.
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

    # The programme's policies and the opener of balances, from the first chunk written.
    writing: tuple[ProgramPolicies, BalanceOpener] | None = None

    def flush(batch: list[Prepared], lines: int) -> None:
        nonlocal errors_before, writing
        with database.read() if dry_run else database.write() as session:
            present = _existing_cards(session, [prepared.card_index for prepared in batch])
            fresh = [prepared for prepared in batch if prepared.card_index not in present]
            report.points += sum(prepared.points for prepared in fresh)
            if fresh and not dry_run:
                if writing is None:
                    rules = policies(session, program_id)
                    writing = rules, _opener(rules, as_of)
                _write_chunk(session, fresh, rules=writing[0], opener=writing[1], as_of=as_of)
            if not dry_run:
                session.execute(
                    _CHECKPOINT,
                    {
                        "digest": digest,
                        "last_line": last_line,
                        "imported": len(fresh),
                        "skipped": len(batch) - len(fresh),
                        "failed": report.failed - errors_before,
                        "as_of": as_of,
                    },
                )
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
                if prepared is not None and prepared.card_number in seen:
                    errors, prepared = (
                        [LineError(line, "card_number", "duplicate in this file")],
                        None,
                    )
                report.errors += errors
                if prepared is not None:
                    seen.add(prepared.card_number)
                    batch.append(prepared)
                last_line = line
            flush(batch, len(parsed))
    if not dry_run:
        with database.write() as session:
            run = session.scalars(select(CardImport).where(CardImport.file_sha256 == digest)).one()
            run.finished_at = as_of
    return report
