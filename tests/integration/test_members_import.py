"""Legacy card import (ポイント移行): dry run, idempotency, resume after a kill (both engines)."""

import csv
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType, LedgerPolicy
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.ledger.reconcile import check as reconcile
from kizuna.ledger.transfer import Opening, open_accounts
from kizuna.members import importer, service
from kizuna.members.identity import stored_value
from kizuna.members.models import Card, CardImport, Member
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


def test_bulk_opening_writes_the_entry_and_lots_that_earn_would(session):
    program = f.program(session)
    policy = LedgerPolicy()
    context = ledger.Context(actor="import", channel="import", reason_code="migrate_in")
    rows = [
        BreakdownRow("migrate_in", "移行ポイント", 700),
        BreakdownRow("migrate_in", "移行ポイント", 300, expires_at=f.T0 + timedelta(days=30)),
    ]
    by_earn = f.member(session, program)
    ledger.earn(
        session,
        member_id=by_earn.id,
        rows=rows,
        policy=policy,
        occurred_at=f.T0,
        as_of=f.T0,
        context=context,
        entry_type=EntryType.MIGRATE_IN,
    )
    in_bulk = Member(program_id=program.id, status="active", joined_at=f.T0)
    session.add(in_bulk)
    session.flush()

    open_accounts(
        session,
        openings=[Opening(in_bulk.id, rows)],
        policy=policy,
        occurred_at=f.T0,
        as_of=f.T0,
        context=context,
    )

    def written(member_id):
        entries = [
            (e.entry_type, e.amount, e.debt_change, e.occurred_at, e.breakdown, e.actor, e.channel)
            for e in ledger.entries_of(session, [member_id])
        ]
        lots = sorted(
            (lot.kind, lot.expiry_rule, lot.amount, lot.remaining, lot.available_at, lot.expires_at)
            for lot in session.scalars(select(Lot).where(Lot.member_id == member_id))
        )
        return entries, lots

    assert written(in_bulk.id) == written(by_earn.id)
    assert reconcile(session, [in_bulk.id, by_earn.id]) == []
