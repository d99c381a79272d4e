"""Campaigns in the console: the form and the builder's JSON become a validated, versioned
campaign; errors name the bad node; simulation writes nothing; only marketers and up edit."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kizuna.core.clock import utcnow
from kizuna.rules import manage
from kizuna.rules.models import Campaign
from tests import factories as f

NESTED = {
    "all": [
        {"field": "event.amount", "op": "gte", "value": 1000},
        {
            "any": [
                {"field": "event.categories", "op": "contains", "value": "bakery"},
                {"not": {"all": [{"field": "event.weekday", "op": "in", "value": [6, 7]}]}},
            ]
        },
    ]
}


@pytest.fixture(scope="module")
def world(app):
    with app.state.database.write() as session:
        program = f.program(session)
        return {
            "program_id": program.id,
            "marketer": f.staff(session, role="marketer").username,
            "auditor": f.staff(session, role="auditor").username,
        }


def _form(token, program_id, code, condition, **extra):
    start = utcnow() + timedelta(days=1)
    return {
        "csrf_token": token,
        "program": program_id,
        "code": code,
        "name": "パン祭り",
        "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
        "action_type": "multiply",
        "times": "3",
        "event_types": ["purchase"],
        "points_kind": "standard",
        "stackable": "on",
        "condition": json.dumps(condition),
        "intent": "save",
        **extra,
    }


def test_marketer_creates_a_campaign_with_a_nested_condition(app, world):
    client = f.console_client(app, world["marketer"])
    page = client.get(f"/console/campaigns/new?program={world['program_id']}")
    assert 'id="builder"' in page.text
    assert "/console/static/builder.js" in page.text
    saved = client.post(
        "/console/campaigns", data=_form(f.csrf_of(page.text), world["program_id"], "BREAD", NESTED)
    )
    assert saved.status_code == 200
    assert "保存しました" in saved.text
    with app.state.database.read() as session:
        campaign = session.scalars(select(Campaign).where(Campaign.code == "BREAD")).one()
        view = manage.get_campaign(session, campaign.id)
    assert view.campaign.status == "draft"
    assert view.current.definition["condition"]["all"][1]["any"][1] == {
        "not": {"all": [{"field": "event.weekday", "op": "in", "value": [6, 7]}]}
    }
    activated = client.post(
        f"/console/campaigns/{campaign.id}/activate", data={"csrf_token": f.csrf_of(saved.text)}
    )
    assert "実施中" in activated.text


def test_invalid_condition_is_refused_with_the_path_of_the_bad_node(app, world):
    client = f.console_client(app, world["marketer"])
    page = client.get("/console/campaigns/new")
    bad = {"all": [{"field": "event.amount", "op": "gte", "value": "many"}]}
    response = client.post(
        "/console/campaigns", data=_form(f.csrf_of(page.text), world["program_id"], "BAD", bad)
    )
    assert response.status_code == 422
    assert "$.condition.all[0].value" in response.text
    with app.state.database.read() as session:
        assert session.scalar(select(func.count()).where(Campaign.code == "BAD")) == 0


def test_simulation_reports_and_saves_nothing(app, world):
    client = f.console_client(app, world["marketer"])
    page = client.get("/console/campaigns/new")
    form = _form(f.csrf_of(page.text), world["program_id"], "SIM", NESTED, intent="simulate")
    form |= {"sim_start": "2026-01-01", "sim_end": "2026-02-01"}
    response = client.post("/console/campaigns", data=form)
    assert response.status_code == 200
    assert 'id="simulation-result"' in response.text
    with app.state.database.read() as session:
        assert session.scalar(select(func.count()).where(Campaign.code == "SIM")) == 0


def test_auditor_reads_campaigns_but_cannot_change_them(app, world):
    client = f.console_client(app, world["auditor"])
    listing = client.get(f"/console/campaigns?program={world['program_id']}")
    assert listing.status_code == 200
    assert "新規キャンペーン" not in listing.text
    assert client.get("/console/campaigns/new").status_code == 403
    token = f.csrf_of(client.get("/console/account").text)
    refused = client.post(
        "/console/campaigns", data=_form(token, world["program_id"], "NOPE", NESTED)
    )
    assert refused.status_code == 403
