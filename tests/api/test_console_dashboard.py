"""The dashboard's figures come from the journal, lots and members of the month."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from kizuna.api.app import create_app
from kizuna.console import kpis
from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.rules.domain import BreakdownRow
from tests import factories as f


@pytest.fixture(scope="module")
def app(fresh_database):
    return create_app(Settings(database_url=fresh_database.url), database=fresh_database)


def test_dashboard_shows_this_months_members_points_and_liability(app):
    # given two members this month: one earned 500 and spent 120, one earned 80
    now = utcnow()
    policy = LedgerPolicy()
    with app.state.database.write() as session:
        program = f.program(session)
        first = f.member(session, program, joined_at=now)
        second = f.member(session, program, joined_at=now)
        for member, points in ((first, 500), (second, 80)):
            ledger.earn(
                session,
                member_id=member.id,
                rows=[BreakdownRow("base", "base", points)],
                policy=policy,
                occurred_at=now,
                as_of=now,
            )
        ledger.redeem(
            session, member_id=first.id, points=120, policy=policy, occurred_at=now, as_of=now
        )
        username = f.staff(session, role="marketer").username
    # when a marketer opens the dashboard
    with TestClient(app, base_url="https://console.example") as client:
        f.console_login(client, username)
        page = client.get("/console/dashboard")
    # then the cards show the month's figures and the outstanding points in yen
    assert page.status_code == 200
    text = page.text
    for label, value in (
        ("今月の新規会員", "2"),
        ("付与ポイント", "580"),
        ("利用ポイント", "120"),
        ("負債額(円換算)", "¥460"),
    ):
        assert f"<span>{label}</span><strong>{value}" in text
    assert "/console/static/vendor/chart.umd.min.js" in text


def test_daily_series_puts_each_entry_on_its_local_day(fresh_database):
    now = utcnow()
    tz = kpis.ZoneInfo("Asia/Tokyo")
    month = kpis.month_of(now, tz)
    with fresh_database.write() as session:
        program = f.program(session)
        member = f.member(session, program, joined_at=month.start)
        ledger.earn(
            session,
            member_id=member.id,
            rows=[BreakdownRow("base", "base", 7)],
            policy=LedgerPolicy(),
            occurred_at=month.start + timedelta(hours=23, minutes=59),
            as_of=now,
        )
        before = kpis.daily(session, month=month)
        session.rollback()
    assert before.issued[0] >= 7
    assert before.new_members[0] >= 1


def test_vendored_chart_library_is_served_by_kizuna(app):
    with TestClient(app, base_url="https://console.example") as client:
        script = client.get("/console/static/vendor/chart.umd.min.js")
        escape = client.get("/console/static/../auth.py")
    assert script.status_code == 200
    assert "Chart.js v4" in script.text[:200]
    assert escape.status_code == 404
