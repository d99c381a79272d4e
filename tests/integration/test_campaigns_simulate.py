"""Simulation: a draft campaign replayed over past purchases, by the service and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from typer.testing import CliRunner

from kizuna.cli.main import app
from kizuna.core.settings import get_settings
from kizuna.ledger.models import JournalEntry
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest
from kizuna.rules import manage
from kizuna.rules.domain import PurchaseLine
from kizuna.rules.models import CampaignGrant, CampaignVersion
from tests import factories as f

JAN = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(hours=9)  # 1 January 00:00 in Tokyo
DRAFT = {
    "name": "食品2倍 (試算)",
    "starts_at": "2026-03-01T00:00:00+09:00",
    "ends_at": "2026-04-01T00:00:00+09:00",
    "action": {"type": "multiply", "times": 2, "categories": ["food"]},
    "per_member_cap": 15,
}


def _history(session):
    """Three members' January: two buy food, one buys only drinks; one purchase is in February."""
    program = f.program(session)
    store = f.store(session, f.partner(session, program))
    baskets = [
        [("F", 1000, "food"), ("F", 1200, "food")],  # 10 + 12 points, capped at 15
        [("F", 500, "food"), ("D", 800, "drink")],  # 5 points
        [("D", 3000, "drink")],  # nothing
    ]
    for n, basket in enumerate(baskets):
        member = f.member(session, program)
        for k, (sku, amount, category) in enumerate(basket):
            request = PurchaseRequest(
                member_id=member.id,
                store_id=store.id,
                receipt_no=f"S{n}-{k}",
                occurred_at=JAN + timedelta(days=3 + k, hours=12),
                lines=[PurchaseLine(sku=sku, amount=amount, category=category)],
            )
            purchases.commit_purchase(session, request=request, as_of=request.occurred_at)
    late = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no="FEB",
        occurred_at=JAN + timedelta(days=40),
        lines=[PurchaseLine(sku="F", amount=9000, category="food")],
    )
    purchases.commit_purchase(session, request=late, as_of=late.occurred_at)
    return program


def _written(session):
    return [
        session.scalar(select(func.count()).select_from(table))
        for table in (JournalEntry, CampaignGrant, CampaignVersion)
    ]


def test_simulation_reports_cost_and_members_reached_and_writes_nothing(session):
    # given a January of purchases
    program = _history(session)
    before = _written(session)
    # when a draft campaign for March is replayed over January
    result = manage.simulate(
        session,
        program_id=program.id,
        definition=DRAFT,
        start=JAN,
        end=JAN + timedelta(days=31),
    )
    # then it reports what it would have cost and whom it would have reached, and wrote nothing
    assert (result.purchases, result.purchases_awarded, result.members_reached) == (5, 3, 2)
    assert (result.points, result.points_over_limits) == (15 + 5, 7)
    assert _written(session) == before


def test_cli_simulates_a_draft_file(fresh_database, tmp_path, monkeypatch):
    with fresh_database.write() as session:
        program = _history(session)
        code = program.code
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps(DRAFT), encoding="utf-8")
    monkeypatch.setenv("KIZUNA_DATABASE_URL", fresh_database.url)
    get_settings.cache_clear()
    try:
        outcome = CliRunner().invoke(
            app,
            [
                "rules",
                "simulate",
                "--from",
                "2026-01-01",
                "--to",
                "2026-02-01",
                "--file",
                str(draft),
                "--program",
                code,
            ],
        )
    finally:
        get_settings.cache_clear()
    assert outcome.exit_code == 0, outcome.output
    assert "到達会員数" in outcome.output
    assert "20" in outcome.output
