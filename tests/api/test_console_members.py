"""Member search, the member page with masking and scoping, and the lost-card reissue."""

from datetime import date

import pytest
from sqlalchemy import select

from kizuna.core.clock import utcnow
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.members import cards
from kizuna.members import service as members
from kizuna.members.domain import Profile
from kizuna.rules.domain import BreakdownRow
from kizuna.security.models import AuditEntry
from tests import factories as f


@pytest.fixture(scope="module")
def world(app):
    """A member who joined at store A with a phone, a カナ name, a card and 300 points."""
    now = utcnow()
    with app.state.database.write() as session:
        program = f.program(session)
        partner = f.partner(session, program)
        store_a, store_b = f.store(session, partner), f.store(session, partner)
        member = members.create_member(
            session,
            program_id=program.id,
            joined_at=now,
            join_store_id=store_a.id,
            identifiers={"phone": "090-1234-5678"},
            profile=Profile(
                name_kanji="山田 花子",
                name_kana="ヤマダ ハナコ",
                email="hanako@example.jp",
                birth_date=date(1990, 4, 1),
            ),
        )
        card, number = cards.issue_card(session, member_id=member.id, as_of=now)
        ledger.earn(
            session,
            member_id=member.id,
            rows=[BreakdownRow("base", "base", 300)],
            policy=LedgerPolicy(),
            occurred_at=now,
            as_of=now,
        )
        users = {
            "support": f.staff(session, role="support").username,
            "marketer": f.staff(session, role="marketer").username,
            "clerk_a": f.staff(session, role="store_staff", store=store_a).username,
            "clerk_b": f.staff(session, role="store_staff", store=store_b).username,
        }
    return {"member_id": member.id, "card_id": card.id, "card_number": number, "users": users}


def test_full_width_phone_number_finds_the_member_and_opens_the_page(app, world):
    client = f.console_client(app, world["users"]["support"])
    response = client.get("/console/members", params={"q": "０９０－１２３４－５６７８"})
    assert str(response.url).endswith(f"/console/members/{world['member_id']}")
    assert "300" in response.text
    assert "山田 花子" in response.text
    assert "+819012345678" in response.text


def test_hiragana_reading_finds_the_member_by_kana_name(app, world):
    client = f.console_client(app, world["users"]["support"])
    response = client.get("/console/members", params={"q": "やまだ はなこ"})
    assert str(response.url).endswith(f"/console/members/{world['member_id']}")


def test_store_staff_see_personal_data_masked(app, world):
    client = f.console_client(app, world["users"]["clerk_a"])
    page = client.get(f"/console/members/{world['member_id']}")
    assert page.status_code == 200
    assert "山田 花子" not in page.text
    assert "+819012345678" not in page.text
    assert "5678" in page.text
    assert "h＊＊＊@example.jp" in page.text


def test_store_staff_of_another_store_cannot_find_or_open_the_member(app, world):
    client = f.console_client(app, world["users"]["clerk_b"])
    search = client.get("/console/members", params={"q": "090-1234-5678"})
    assert "該当する会員が見つかりません" in search.text
    assert client.get(f"/console/members/{world['member_id']}").status_code == 404


def test_every_member_page_view_is_audited(app, world):
    client = f.console_client(app, world["users"]["support"])
    client.get(f"/console/members/{world['member_id']}")
    with app.state.database.read() as session:
        entry = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "member.view")
            .order_by(AuditEntry.seq.desc())
        ).first()
    assert entry.actor == f"staff:{world['users']['support']}"
    assert entry.target == f"member:{world['member_id']}"
    assert entry.details == {"unmasked": True}


def test_marketer_may_look_but_not_reissue_cards(app, world):
    client = f.console_client(app, world["users"]["marketer"])
    page = client.get(f"/console/members/{world['member_id']}")
    assert "停止して再発行" not in page.text
    response = client.post(
        f"/console/members/{world['member_id']}/cards/{world['card_id']}/reissue",
        data={"reason": "lost", "csrf_token": f.csrf_of(page.text)},
    )
    assert response.status_code == 403


def test_lost_card_is_blocked_and_replaced_in_one_step_keeping_the_balance(app, world):
    client = f.console_client(app, world["users"]["clerk_a"])
    page = client.get(f"/console/members/{world['member_id']}")
    response = client.post(
        f"/console/members/{world['member_id']}/cards/{world['card_id']}/reissue",
        data={"reason": "lost", "csrf_token": f.csrf_of(page.text)},
    )
    assert response.status_code == 200
    assert "カードを再発行しました" in response.text
    with app.state.database.read() as session:
        states = [c.status for c in cards.cards_of(session, world["member_id"])]
        resolved = cards.resolve_card(session, response.text.split('id="new-card-number">')[1][:19])
    assert states == ["blocked", "active"]
    assert resolved.member.id == world["member_id"]
    after = client.get(f"/console/members/{world['member_id']}")
    assert '<p class="big" id="available">300' in after.text
    # the blocked card still leads staff to the member
    found = client.get("/console/members", params={"q": world["card_number"]})
    assert str(found.url).endswith(f"/console/members/{world['member_id']}")
