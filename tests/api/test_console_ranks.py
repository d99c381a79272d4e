"""Rank settings in the console, and the member page's rank and progress."""

from fastapi.testclient import TestClient

from kizuna.core.clock import utcnow
from kizuna.tiers import service as tiers
from tests import factories as f


def test_marketer_sets_ranks_and_the_member_page_shows_progress(app):
    with app.state.database.write() as session:
        program = f.program(session)
        member = f.member(session, program, joined_at=utcnow())
        marketer = f.staff(session, role="marketer").username
        support = f.staff(session, role="support").username
    client = TestClient(app, base_url="https://console.example")
    f.console_login(client, marketer)
    page = client.get(f"/console/ranks?program={program.id}")
    assert "このプログラムにはランクがありません" in page.text
    rows = [
        ("BRONZE", "ブロンズ", "0"),
        ("SILVER", "シルバー", "10000"),
        ("GOLD", "ゴールド", "50000"),
    ]
    blanks = 6 - len(rows)
    saved = client.post(
        "/console/ranks",
        data={
            "csrf_token": f.csrf_of(page.text),
            "program": program.id,
            "metric": "spend",
            "window": "calendar_year",
            "fiscal_start": "4",
            "code": [r[0] for r in rows] + [""] * blanks,
            "name": [r[1] for r in rows] + [""] * blanks,
            "threshold": [r[2] for r in rows] + [""] * blanks,
            "multiplier": ["100", "110", "150"] + [""] * blanks,
            "birthday": ["0", "100", "300"] + [""] * blanks,
        },
    )
    assert saved.status_code == 200
    assert "保存しました" in saved.text
    with app.state.database.read() as session:
        rules = tiers.rules_of(session, program.id)
    assert [t.code for t in rules.tiers] == ["BRONZE", "SILVER", "GOLD"]
    assert rules.tiers[2].earn_multiplier_pct == 150
    other = TestClient(app, base_url="https://console.example")
    f.console_login(other, support)
    member_page = other.get(f"/console/members/{member.id}")
    assert 'id="rank"' in member_page.text
    assert "ブロンズ" in member_page.text
    assert "シルバー まであと 10,000" in member_page.text
