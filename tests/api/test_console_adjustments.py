"""Point adjustments in the console under maker–checker: above the threshold a second person
approves, and the requester can never approve their own."""

import pytest
from sqlalchemy import select

from kizuna.core.clock import utcnow
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.ledger.models import AdjustmentRequest
from kizuna.members import service as members
from tests import factories as f


@pytest.fixture(scope="module")
def world(app):
    with app.state.database.write() as session:
        program = f.program(session, ledger=LedgerPolicy(approval_threshold=100))
        store = f.store(session, f.partner(session, program))
        member = members.create_member(
            session, program_id=program.id, joined_at=utcnow(), join_store_id=store.id
        )
        return {
            "member_id": member.id,
            "clerk": f.staff(session, role="store_staff", store=store).username,
            "support_a": f.staff(session, role="support").username,
            "support_b": f.staff(session, role="support").username,
        }


def _available(app, member_id):
    with app.state.database.read() as session:
        return ledger.balance(
            session, member_id=member_id, policy=LedgerPolicy(), as_of=utcnow()
        ).available


def _request(client, member_id, points, reason_code="goodwill"):
    form = client.get(f"/console/members/{member_id}/adjust")
    return client.post(
        f"/console/members/{member_id}/adjust",
        data={
            "points": points,
            "reason_code": reason_code,
            "reason": "お詫び",
            "csrf_token": f.csrf_of(form.text),
        },
    )


def _latest_request(app):
    with app.state.database.read() as session:
        return session.scalars(
            select(AdjustmentRequest).order_by(AdjustmentRequest.id.desc())
        ).first()


def test_small_adjustment_posts_at_once(app, world):
    before = _available(app, world["member_id"])
    page = _request(f.console_client(app, world["clerk"]), world["member_id"], 30)
    assert "30 pt の調整を反映しました" in page.text
    assert _available(app, world["member_id"]) == before + 30


def test_large_adjustment_waits_for_a_second_person_and_then_posts(app, world):
    before = _available(app, world["member_id"])
    clerk = f.console_client(app, world["clerk"])
    filed = _request(clerk, world["member_id"], 500)
    assert "承認後に反映されます" in filed.text
    assert _available(app, world["member_id"]) == before
    pending = _latest_request(app)
    approver = f.console_client(app, world["support_a"])
    page = approver.get("/console/adjustments")
    assert f'id="request-{pending.id}"' in page.text
    approver.post(
        f"/console/adjustments/{pending.id}/approve", data={"csrf_token": f.csrf_of(page.text)}
    )
    assert _available(app, world["member_id"]) == before + 500
    assert _latest_request(app).decided_by == f"staff:{world['support_a']}"


def test_requester_cannot_approve_their_own_adjustment(app, world):
    before = _available(app, world["member_id"])
    support = f.console_client(app, world["support_a"])
    _request(support, world["member_id"], 200)
    own = _latest_request(app)
    page = support.get("/console/adjustments")
    assert "自分の申請は承認できません" in page.text
    refused = support.post(
        f"/console/adjustments/{own.id}/approve", data={"csrf_token": f.csrf_of(page.text)}
    )
    assert refused.status_code == 403
    assert _available(app, world["member_id"]) == before
    other = f.console_client(app, world["support_b"])
    page = other.get("/console/adjustments")
    other.post(f"/console/adjustments/{own.id}/reject", data={"csrf_token": f.csrf_of(page.text)})
    assert _latest_request(app).status == "rejected"
    assert _available(app, world["member_id"]) == before


def test_store_staff_cannot_approve_at_all(app, world):
    clerk = f.console_client(app, world["clerk"])
    _request(clerk, world["member_id"], 300)
    pending = _latest_request(app)
    page = clerk.get("/console/adjustments")
    assert "承認</button>" not in page.text
    response = clerk.post(
        f"/console/adjustments/{pending.id}/approve", data={"csrf_token": f.csrf_of(page.text)}
    )
    assert response.status_code == 403
