"""The dashboard's figures come from the journal, lots and members of the chosen period: this
month, last month, a month chosen with the arrows, or a custom from–to range."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

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
        ("期間中の新規会員", "2"),
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
        before = kpis.daily(session, period=month)
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


TOKYO = ZoneInfo("Asia/Tokyo")


def test_period_choices_name_this_month_last_month_and_a_custom_range():
    as_of = datetime(2027, 1, 15, 3, 0, tzinfo=TOKYO)

    this = kpis.choose_period(kpis.PeriodChoice.THIS_MONTH, as_of=as_of, tz=TOKYO)
    last = kpis.choose_period(kpis.PeriodChoice.LAST_MONTH, as_of=as_of, tz=TOKYO)
    custom = kpis.choose_period(
        kpis.PeriodChoice.CUSTOM,
        as_of=as_of,
        tz=TOKYO,
        first=date(2026, 12, 20),
        last=date(2027, 1, 5),
    )

    assert (this.first, this.last, this.is_month) == (date(2027, 1, 1), date(2027, 1, 31), True)
    assert (last.first, last.last, last.is_month) == (date(2026, 12, 1), date(2026, 12, 31), True)
    assert (custom.first, custom.last, custom.is_month) == (
        date(2026, 12, 20),
        date(2027, 1, 5),
        False,
    )
    assert len(custom.days()) == 17
    assert custom.start == datetime(2026, 12, 20, tzinfo=TOKYO)
    assert custom.end == datetime(2027, 1, 6, tzinfo=TOKYO)
    for first, last in ((None, date(2027, 1, 5)), (date(2027, 1, 5), date(2027, 1, 4))):
        with pytest.raises(kpis.InvalidPeriod):
            kpis.choose_period(
                kpis.PeriodChoice.CUSTOM, as_of=as_of, tz=TOKYO, first=first, last=last
            )
    with pytest.raises(kpis.InvalidPeriod):
        kpis.choose_period(
            kpis.PeriodChoice.CUSTOM,
            as_of=as_of,
            tz=TOKYO,
            first=date(2026, 1, 1),
            last=date(2026, 1, 1) + timedelta(days=kpis.MAX_DAYS),
        )


def _kpi(text: str, label: str) -> str:
    start = text.index(f"<span>{label}</span><strong>") + len(f"<span>{label}</span><strong>")
    return text[start : text.index("<", start)].strip()


def test_dashboard_period_selector_counts_only_the_chosen_days(app):
    # given a programme whose member earned 40 points last month and 7 this month
    now = utcnow()
    this_month = kpis.month_of(now, TOKYO)
    last_month = kpis.month(this_month.previous_first, TOKYO)
    earlier = last_month.start + timedelta(days=2, hours=12)
    policy = LedgerPolicy()
    with app.state.database.write() as session:
        program = f.program(session)
        member = f.member(session, program, joined_at=earlier)
        for points, at in ((40, earlier), (7, now)):
            ledger.earn(
                session,
                member_id=member.id,
                rows=[BreakdownRow("base", "base", points)],
                policy=policy,
                occurred_at=at,
                as_of=at,
            )
        username = f.staff(session, role="owner").username
    day = earlier.astimezone(TOKYO).date()
    with TestClient(app, base_url="https://console.example") as client:
        f.console_login(client, username)
        # when the owner picks last month, one day of it, a bad range, and English
        previous = client.get("/console/dashboard?period=last_month")
        one_day = client.get(f"/console/dashboard?period=custom&from={day}&to={day}")
        backwards = client.get(f"/console/dashboard?period=custom&from={day}&to=2000-01-01")
        client.get("/console/lang/en?next=/console/dashboard")
        english = client.get("/console/dashboard?period=last_month")
    # then each shows the points issued in exactly its days, and says which period it is
    issued = "付与ポイント"
    assert previous.status_code == 200
    assert f'<strong id="period">{last_month.first:%Y-%m}</strong>' in previous.text
    assert '<option value="last_month" selected>先月</option>' in previous.text
    assert int(_kpi(previous.text, issued).replace(",", "")) >= 40
    assert one_day.status_code == 200
    assert f'<strong id="period">{day} 〜 {day}</strong>' in one_day.text
    assert _kpi(one_day.text, issued) == "40"
    assert _kpi(one_day.text, "期間中の新規会員") == "1"
    assert "期間を指定" in one_day.text
    assert backwards.status_code == 422
    assert "今月を表示しています" in backwards.text
    assert f'<strong id="period">{this_month.first:%Y-%m}</strong>' in backwards.text
    assert '<option value="last_month" selected>Last month</option>' in english.text
    assert "Points issued" in english.text
