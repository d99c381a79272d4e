"""Legacy card import (ポイント移行): dry run, idempotency, resume after a kill (both engines)."""

import csv
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from kizuna.core.errors import KizunaError
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType, LedgerPolicy
from kizuna.ledger.models import JournalEntry, Lot, PointAccount
from kizuna.ledger.opening import BalanceOpener, open_balances
from kizuna.ledger.reconcile import check as reconcile
from kizuna.ledger.transfer import Opening, open_accounts
from kizuna.members import cards, importer, service
from kizuna.members.identity import stored_value
from kizuna.members.models import Card, CardImport, Member, MemberProfile
from kizuna.partners.service import policies
from kizuna.rules.domain import BreakdownRow
from tests import factories as f

HEADER = ["card_number", "points", "expires_on", "name_kana", "phone", "email", "birth_date"]


def _write(path, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _valid_rows(count, start=0):
    return [
        [
            f"5{start + n:011d}",
            str(100 + n),
            "2027-12-31" if n % 2 else "",
            "やまだ たろう",
            f"090-{1000 + (start + n) // 10000:04d}-{(start + n) % 10000:04d}",
            f"Member{start + n}@Example.JP",
            "1980-01-02",
        ]
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def program(fresh_database):
    with fresh_database.write() as session:
        program = f.program(session)
    return program


def _counts(database):
    with database.read() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Member, Card, JournalEntry, CardImport)
        )


def test_dry_run_validates_every_line_reports_errors_and_writes_nothing(
    fresh_database, program, tmp_path
):
    rows = [
        *_valid_rows(3, start=100),
        ["12AB", "-5", "", "", "123", "not-mail", "1980-13-01"],
        ["", "", "", "", "", "", ""],
        [f"5{100:011d}", "10", "", "", "", "", ""],  # the first card again
    ]
    path = _write(tmp_path / "legacy.csv", rows)
    before = _counts(fresh_database)
    report = importer.run_import(
        fresh_database, path, program_id=program.id, as_of=f.T0, dry_run=True
    )
    assert _counts(fresh_database) == before
    assert (report.total, report.imported, report.failed) == (6, 3, 3)
    reasons = {(e.line, e.field) for e in report.errors}
    assert {
        (5, "card_number"),
        (5, "points"),
        (5, "birth_date"),
        (5, "phone"),
        (5, "email"),
    } <= reasons
    assert (6, "card_number") in reasons
    assert (6, "points") in reasons
    assert (7, "card_number") in reasons
    out = tmp_path / "errors.csv"
    importer.write_error_report(out, report.errors)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("line,field,reason")
    assert "not-mail" not in text
    assert "12AB" not in text


def test_importing_a_file_twice_posts_each_balance_once(fresh_database, program, tmp_path):
    path = _write(tmp_path / "twice.csv", _valid_rows(30, start=1000))
    first = importer.run_import(fresh_database, path, program_id=program.id, as_of=f.T0)
    again = importer.run_import(fresh_database, path, program_id=program.id, as_of=f.T0)
    copy = _write(tmp_path / "copy.csv", list(reversed(_valid_rows(30, start=1000))))
    third = importer.run_import(fresh_database, copy, program_id=program.id, as_of=f.T0)
    assert (first.imported, again.imported, third.imported, third.skipped) == (30, 0, 0, 30)
    with fresh_database.read() as session:
        migrated = session.scalar(
            select(func.count()).where(
                JournalEntry.entry_type == "migrate_in",
                JournalEntry.amount.between(100, 129),
            )
        )
        member = service.find_by_identifier(session, kind="card", value=f"5{1005:011d}")
        profile = service.get_profile(session, member.id)
        ids = session.scalars(select(Member.id).where(Member.join_channel == "import")).all()
        assert reconcile(session, ids) == []
    assert migrated == 30
    assert profile.email == "member1005@example.jp"
    assert profile.name_kana == "ヤマダタロウ"


def test_lines_parsed_in_worker_processes_are_written_in_order_once(
    fresh_database, program, tmp_path
):
    path = _write(
        tmp_path / "parallel.csv", [*_valid_rows(90, start=40000), ["bad", "", "", "", "", "", ""]]
    )
    report = importer.run_import(
        fresh_database, path, program_id=program.id, as_of=f.T0, batch_size=20, workers=2
    )
    assert (report.imported, report.failed) == (90, 1)
    assert [e.line for e in report.errors] == [92, 92]
    with fresh_database.read() as session:
        run = session.scalars(
            select(CardImport).where(CardImport.file_name == "parallel.csv")
        ).one()
        member = service.find_by_identifier(session, kind="card", value=f"5{40089:011d}")
        assert service.get_profile(session, member.id).email == "member40089@example.jp"
        ids = session.scalars(select(Card.member_id).where(Card.origin == "legacy")).all()
        assert reconcile(session, ids) == []
    assert run.last_line == 92


def test_an_import_killed_midway_resumes_and_posts_every_line_exactly_once(
    fresh_database, program, tmp_path
):
    rows = _valid_rows(300, start=20000)
    path = _write(tmp_path / "big.csv", rows)
    env = {**os.environ, "KIZUNA_DATABASE_URL": fresh_database.url}
    command = [sys.executable, "-m", "kizuna", "import", "cards", str(path), "--batch-size", "10"]
    command += ["--program", program.code]
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done_at_kill = 0
    while time.monotonic() < deadline and child.poll() is None:
        with fresh_database.read() as session:
            done_at_kill = (
                session.scalar(select(CardImport.imported).where(CardImport.file_name == "big.csv"))
                or 0
            )
        if done_at_kill >= 30:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 0 < done_at_kill < len(rows), "the import was not caught midway"

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "resumed after line" in result.stdout
    indexes = [stored_value("card", row[0]) for row in rows]
    with fresh_database.read() as session:
        posted = session.execute(
            select(Card.member_id, func.count(JournalEntry.id))
            .join(JournalEntry, JournalEntry.member_id == Card.member_id)
            .where(Card.number_index.in_(indexes), JournalEntry.entry_type == "migrate_in")
            .group_by(Card.member_id)
        ).all()
        run = session.scalars(select(CardImport).where(CardImport.file_name == "big.csv")).one()
    assert len(posted) == len(rows)
    assert {count for _, count in posted} == {1}
    assert run.imported == len(rows)
    assert run.finished_at is not None


def _ledger_state(session, member_id):
    """Everything the ledger holds of one member, without ids."""
    entries = [
        (
            e.entry_type,
            e.amount,
            e.debt_change,
            e.reverses_entry_id,
            e.reversed_points,
            e.occurred_at,
            e.recorded_at,
            e.breakdown,
            e.actor,
            e.partner_id,
            e.channel,
            e.reason_code,
        )
        for e in ledger.entries_of(session, [member_id])
    ]
    lots = sorted(
        (
            lot.kind,
            lot.expiry_rule,
            lot.amount,
            lot.remaining,
            lot.earned_at,
            lot.available_at,
            lot.expires_at,
            lot.funding_partner_id,
            lot.expired_points,
        )
        for lot in session.scalars(select(Lot).where(Lot.member_id == member_id))
    )
    debt = session.scalar(select(PointAccount.debt).where(PointAccount.member_id == member_id))
    return entries, lots, debt


@pytest.mark.parametrize("bulk", ["open_accounts", "open_balances", "balance_opener"])
def test_bulk_opening_writes_the_entry_and_lots_that_earn_would(session, bulk):
    program = f.program(session)
    policy = LedgerPolicy()
    context = ledger.Context(actor="import", channel="import", reason_code="migrate_in")
    breakdowns = [
        [
            BreakdownRow("migrate_in", "移行ポイント", 700),
            BreakdownRow("migrate_in", "移行ポイント", 300, expires_at=f.T0 + timedelta(days=30)),
        ],
        [BreakdownRow("migrate_in", "移行ポイント", 50, kind="limited")],
        [],
        [BreakdownRow("migrate_in", "移行ポイント", 0)],
    ]
    by_earn = []
    for rows in breakdowns:
        member = f.member(session, program)
        ledger.earn(
            session,
            member_id=member.id,
            rows=rows,
            policy=policy,
            occurred_at=f.T0,
            as_of=f.T0,
            context=context,
            entry_type=EntryType.MIGRATE_IN,
        )
        by_earn.append(member.id)
    in_bulk = []
    for _ in breakdowns:
        member = Member(program_id=program.id, status="active", joined_at=f.T0)
        session.add(member)
        in_bulk.append(member)
    session.flush()
    openings = [Opening(m.id, rows) for m, rows in zip(in_bulk, breakdowns, strict=True)]
    times = {"policy": policy, "occurred_at": f.T0, "as_of": f.T0, "context": context}
    if bulk == "open_accounts":
        posted = open_accounts(session, openings=openings, **times)
    elif bulk == "open_balances":
        posted = open_balances(session, openings=openings, **times)
    else:  # an opener used for two chunks remembers breakdowns: the second gets its own rows
        opener = BalanceOpener(**times)
        posted = opener.open(session, openings[:2]) + opener.open(session, openings[2:])
    session.expire_all()

    assert len(posted) == 2
    for member, earned in zip(in_bulk, by_earn, strict=True):
        assert _ledger_state(session, member.id) == _ledger_state(session, earned)
    assert reconcile(session, [m.id for m in in_bulk] + by_earn) == []


def test_bulk_opening_refuses_negative_points(session):
    program = f.program(session)
    member = Member(program_id=program.id, status="active", joined_at=f.T0)
    session.add(member)
    session.flush()
    with pytest.raises(KizunaError) as refused:
        open_balances(
            session,
            openings=[Opening(member.id, [BreakdownRow("migrate_in", "x", -1)])],
            policy=LedgerPolicy(),
            occurred_at=f.T0,
            as_of=f.T0,
        )
    assert refused.value.code == "invalid_points"


_MIRROR_HEADER = [
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
]


def _mirror_rows(count):
    """Lines of every shape: with and without profile, balance, expiry and join date."""
    rows = []
    for n in range(count):
        profile = n % 4 != 0
        rows.append(
            [
                f"4{7000 + n:011d}",
                "0" if n % 5 == 0 else str(10 * n + 1),
                f"2027-0{1 + n % 9}-15" if n % 3 == 0 else "",
                "髙橋 花子" if profile else "",
                "たかはし はなこ" if profile else "",
                "1985/04/0" + str(1 + n % 9) if profile else "",
                "female" if profile and n % 2 else "",
                "〒150-0001" if n % 6 == 1 else "",
                "東京都渋谷区神宮前1丁目2番3号" if n % 6 == 1 else "",
                f"０９０－７{n:03d}－１２３４" if profile else "",
                f"Hanako{n}@Example.JP" if profile and n % 3 else "",
                "2019-10-01" if n % 7 == 0 else "",
            ]
        )
    return rows


def test_bulk_import_writes_what_the_per_row_path_would(fresh_database, program, tmp_path):
    """The chunked import (ids reserved, COPY or executemany) and the first importer's per-row
    path — create the member, register the card, `ledger.earn` a migrate_in — leave the same
    members, profiles, cards, journal, lots and balances, and reconcile clean."""
    rows = _mirror_rows(36)
    path = tmp_path / "mirror.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_MIRROR_HEADER)
        writer.writerows(rows)
    as_of = f.T0 + timedelta(hours=5)
    report = importer.run_import(
        fresh_database, path, program_id=program.id, as_of=as_of, batch_size=10
    )
    assert (report.imported, report.errors) == (36, [])

    tokyo = ZoneInfo("Asia/Tokyo")

    def midnight(day: date) -> datetime:  # in UTC, as the first importer wrote it
        return datetime(day.year, day.month, day.day, tzinfo=tokyo).astimezone(UTC)

    context = ledger.Context(actor="import", channel="import", reason_code="migrate_in")
    pairs = []
    with fresh_database.write() as session:
        rules = policies(session, program.id)
        for line, row in enumerate(rows, start=2):
            fields = dict(zip(_MIRROR_HEADER, row, strict=True))
            item, errors = importer.parse_line(line, fields, "980000")
            assert errors == []
            one_by_one = service.create_member(
                session,
                program_id=program.id,
                joined_at=midnight(item.joined_on) if item.joined_on else as_of,
                join_channel="import",
                profile=item.profile,
            )
            # A number of the same length and last digits: the card itself is unique.
            card = cards.register_card(
                session, member_id=one_by_one.id, number="3" + item.card_number[1:], as_of=as_of
            )
            expires = midnight(item.expires_on) + timedelta(days=1) if item.expires_on else None
            ledger.earn(
                session,
                member_id=one_by_one.id,
                rows=[BreakdownRow("migrate_in", "移行ポイント", item.points, expires_at=expires)],
                policy=rules.ledger,
                occurred_at=as_of,
                as_of=as_of,
                context=context,
                entry_type=EntryType.MIGRATE_IN,
            )
            imported = service.find_by_identifier(session, kind="card", value=item.card_number)
            pairs.append((imported.id, one_by_one.id, card.id))

    def member_state(session, member_id):
        member = session.get(Member, member_id)
        profile = session.get(MemberProfile, member_id)
        indexes = (
            None
            if profile is None
            else tuple(
                getattr(profile, f"{name}_index")
                for name in ("kana", "birth", "postal", "phone", "email")
            )
        )
        return (
            (member.status, member.joined_at, member.join_channel, member.program_id),
            service.get_profile(session, member_id),
            indexes,
            ledger.balance(session, member_id=member_id, policy=rules.ledger, as_of=as_of),
            _ledger_state(session, member_id),
        )

    def card_state(card):
        return (card.status, card.origin, card.last4, card.issued_at, card.activated_at)

    with fresh_database.read() as session:
        for imported, one_by_one, card_id in pairs:
            assert member_state(session, imported) == member_state(session, one_by_one)
            [imported_card] = cards.cards_of(session, imported)
            assert card_state(imported_card) == card_state(session.get(Card, card_id))
        all_ids = [m for pair in pairs for m in pair[:2]]
        assert reconcile(session, all_ids) == []
        posted = session.scalar(
            select(func.count()).where(
                JournalEntry.member_id.in_([pair[0] for pair in pairs]),
                JournalEntry.entry_type == "migrate_in",
            )
        )
    assert posted == sum(1 for row in rows if row[1] != "0")
