"""名寄せ in the console: candidates are listed, compared, and merged with confirmation."""

from datetime import date

from fastapi.testclient import TestClient

from kizuna.core.clock import utcnow
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.members import service as members
from kizuna.members.domain import Profile
from kizuna.members.models import Member
from kizuna.rules.domain import BreakdownRow
from tests import factories as f


def test_support_merges_a_duplicate_pair_and_the_points_follow(app):
    # given the same person signed up twice, with points on both accounts
    now = utcnow()
    with app.state.database.write() as session:
        program = f.program(session)
        ids = []
        for email, points in (("sato@example.jp", 100), ("sato.k@example.jp", 40)):
            member = members.create_member(
                session,
                program_id=program.id,
                joined_at=now,
                profile=Profile(
                    name_kanji="佐藤 健",
                    name_kana="サトウ ケン",
                    birth_date=date(1985, 7, 7),
                    postal_code="150-0001",
                    phone="03-1234-5678",
                    email=email,
                ),
            )
            ledger.earn(
                session,
                member_id=member.id,
                rows=[BreakdownRow("base", "base", points)],
                policy=LedgerPolicy(),
                occurred_at=now,
                as_of=now,
            )
            ids.append(member.id)
        username = f.staff(session, role="support").username
        clerk = f.staff(
            session, role="store_staff", store=f.store(session, f.partner(session, program))
        ).username
    client = TestClient(app, base_url="https://console.example")
    f.console_login(client, username)
    # when support opens the candidates, reviews the pair and keeps the first member
    listing = client.get("/console/merge", params={"program": program.id})
    assert f"/console/merge/{ids[0]}/{ids[1]}" in listing.text
    review = client.get(f"/console/merge/{ids[0]}/{ids[1]}")
    assert review.text.count("佐藤 健") == 2
    done = client.post(
        f"/console/merge/{ids[0]}/{ids[1]}",
        data={"survivor": ids[0], "csrf_token": f.csrf_of(review.text)},
    )
    # then the survivor holds both balances and the other is merged into it
    assert done.status_code == 200
    assert f"会員 #{ids[1]} をこの会員に統合しました" in done.text
    assert '<p class="big" id="available">140' in done.text
    with app.state.database.read() as session:
        merged = session.get(Member, ids[1])
        assert (merged.status, merged.merged_into_id) == ("merged", ids[0])
    # and store staff may not merge at all
    other = TestClient(app, base_url="https://console.example")
    f.console_login(other, clerk)
    assert other.get("/console/merge").status_code == 403
