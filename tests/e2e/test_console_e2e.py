"""The console end to end in a real headless Chromium against a real Kizuna server.

A store clerk finds a member by a full-width phone number, reissues their lost card and asks for
an adjustment above the approval threshold; a second staff member approves it; a marketer builds
a campaign with a nested condition in the visual builder and activates it; then a purchase posted
through the API earns the campaign's bonus. Every screen is saved under test-artifacts/e2e/.
The browser is Debian's /usr/bin/chromium (never a downloaded one).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn

from kizuna.api.app import create_app
from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.members import cards
from kizuna.members import service as members
from kizuna.members.domain import Profile
from kizuna.rules.domain import BreakdownRow
from tests import factories as f

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
TOKYO = ZoneInfo("Asia/Tokyo")


@dataclass
class Shop:
    base_url: str
    database: Database
    member_id: int
    store_id: int
    api_key: str
    clerk: str
    approver: str
    marketer: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _seed(database: Database) -> dict[str, object]:
    now = utcnow()
    with database.write() as session:
        program = f.program(session, ledger=LedgerPolicy(approval_threshold=100))
        partner = f.partner(session, program)
        store = f.store(session, partner)
        member = members.create_member(
            session,
            program_id=program.id,
            joined_at=now - timedelta(days=40),
            join_store_id=store.id,
            identifiers={"phone": "090-1234-5678"},
            profile=Profile(name_kanji="山田 花子", name_kana="ヤマダ ハナコ"),
        )
        cards.issue_card(session, member_id=member.id, as_of=now - timedelta(days=40))
        ledger.earn(
            session,
            member_id=member.id,
            rows=[BreakdownRow("base", "base", 1200)],
            policy=LedgerPolicy(),
            occurred_at=now - timedelta(days=3),
            as_of=now - timedelta(days=3),
        )
        _, key = clients.create_client(
            session,
            partner_id=partner.id,
            kind=ClientKind.STORE,
            name="till 1",
            store_id=store.id,
            as_of=now,
        )
        return {
            "member_id": member.id,
            "store_id": store.id,
            "api_key": key,
            "clerk": f.staff(session, role="store_staff", store=store).username,
            "approver": f.staff(session, role="support").username,
            "marketer": f.staff(session, role="marketer").username,
        }


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """Kizuna served by uvicorn on 127.0.0.1 (a thread of this process) on a fresh SQLite file."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    url = f"sqlite:///{tmp_path_factory.mktemp('e2e')}/kizuna.db"
    upgrade(url)
    database = Database(url)
    seeded = _seed(database)
    port = _free_port()
    app = create_app(Settings(database_url=url, log_json=True), database=database)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield Shop(base_url=f"http://127.0.0.1:{port}", database=database, **seeded)  # type: ignore[arg-type]
    server.should_exit = True
    thread.join(timeout=10)
    database.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


def _page(browser, shop: Shop):
    # A store tablet in landscape, in Japanese.
    context = browser.new_context(
        base_url=shop.base_url, viewport={"width": 1180, "height": 820}, locale="ja-JP"
    )
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _login(page, username: str, shot: str | None = None) -> None:
    page.goto("/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f.STAFF_PASSWORD)
    if shot:
        _shot(page, shot)
    page.click("button.primary")
    page.wait_for_load_state()


def _logout(page) -> None:
    page.click("form[action='/console/logout'] button")
    page.wait_for_url("**/console/login")


def test_clerk_approver_and_marketer_work_through_the_console_and_the_api_pays_the_bonus(
    browser, shop: Shop
):
    page = _page(browser, shop)
    member_url = f"**/console/members/{shop.member_id}"

    # A store clerk logs in and finds the member by a phone number typed in full width.
    _login(page, shop.clerk, shot="01-login")
    page.fill("input[name=q]", "０９０－１２３４－５６７８")
    _shot(page, "02-member-search")
    page.click("form.search button.primary")
    page.wait_for_url(member_url)
    assert page.inner_text("#available").startswith("1,200")
    assert "山田 花子" not in page.content()  # store staff see personal data masked
    _shot(page, "03-member-page-masked")

    # The card was lost: block it and issue a new one in one step.
    page.select_option("form[action$='/reissue'] select[name=reason]", "lost")
    page.click("form[action$='/reissue'] button.danger")
    page.wait_for_selector("#new-card-number")
    new_number = page.inner_text("#new-card-number").replace(" ", "")
    assert len(new_number) == 16
    _shot(page, "04-card-reissued")
    page.click("a.button.primary")
    page.wait_for_url(member_url)
    assert page.locator(".badge", has_text="停止").count() == 1

    # 500 points of goodwill exceed the threshold (100): the request waits for approval.
    page.goto(f"/console/members/{shop.member_id}/adjust")
    page.fill("input[name=points]", "500")
    page.select_option("select[name=reason_code]", "goodwill")
    page.fill("textarea[name=reason]", "カード紛失のお詫び")
    _shot(page, "05-adjustment-form")
    page.click("button.primary")
    page.wait_for_url("**/console/adjustments?filed=*")
    assert "承認後に反映されます" in page.content()
    _shot(page, "06-adjustment-waiting")
    _logout(page)

    # A second staff member approves it.
    _login(page, shop.approver)
    page.goto("/console/adjustments")
    page.click("form[action$='/approve'] button")
    page.wait_for_url("**/console/adjustments?decided=*")
    _shot(page, "07-adjustment-approved")
    page.goto(f"/console/members/{shop.member_id}")
    assert page.inner_text("#available").startswith("1,700")
    assert "山田 花子" in page.content()  # support sees the profile in full
    _shot(page, "08-member-page-support")
    _logout(page)

    # A marketer looks at the dashboard, then builds a campaign with a nested condition:
    # amount >= 1,000 AND (categories contain "bakery" OR weekday is Sat/Sun), 2x points.
    _login(page, shop.marketer)
    page.goto("/console/dashboard")
    page.wait_for_function(
        "document.querySelector('#chart-points').getBoundingClientRect().height > 50"
    )
    _shot(page, "09-dashboard")
    page.goto("/console/campaigns/new")
    code = f"BREAD{uuid.uuid4().hex[:4].upper()}"
    now_local = datetime.now(TOKYO)
    page.fill("input[name=code]", code)
    page.fill("input[name=name]", "パンの日 ポイント2倍")
    page.fill("input[name=starts_at]", (now_local - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("input[name=ends_at]", (now_local + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"))
    root = "#builder > .group"
    page.click(f"{root} > .group-head > .add-condition")
    first = f"{root} > .children > .cmp >> nth=0"
    page.select_option(f"{first} >> select.field", "event.amount")
    page.select_option(f"{first} >> select.op", "gte")
    page.fill(f"{first} >> input.value", "1000")
    page.click(f"{root} > .group-head > .add-group")
    nested = f"{root} > .children > .group"
    page.click(f"{nested} > .group-head > .add-condition")
    page.select_option(f"{nested} > .children > .cmp >> nth=0 >> select.field", "event.categories")
    page.select_option(f"{nested} > .children > .cmp >> nth=0 >> select.op", "contains")
    page.fill(f"{nested} > .children > .cmp >> nth=0 >> input.value", "bakery")
    # A third condition added at the top level is dragged into the nested group.
    page.click(f"{root} > .group-head > .add-condition")
    page.select_option(f"{root} > .children > .cmp >> nth=1 >> select.field", "event.weekday")
    page.select_option(f"{root} > .children > .cmp >> nth=1 >> select.op", "in")
    page.fill(f"{root} > .children > .cmp >> nth=1 >> input.value", "6, 7")
    page.drag_and_drop(f"{root} > .children > .cmp >> nth=1 >> .drag", f"{nested} > .children")
    condition = json.loads(page.input_value("#condition-json"))
    # (where in the group it lands depends on the drop point; the order does not matter)
    condition["all"][1]["any"].sort(key=lambda node: node["field"])
    assert condition == {
        "all": [
            {"field": "event.amount", "op": "gte", "value": 1000},
            {
                "any": [
                    {"field": "event.categories", "op": "contains", "value": "bakery"},
                    {"field": "event.weekday", "op": "in", "value": [6, 7]},
                ]
            },
        ]
    }
    _shot(page, "10-campaign-builder")
    page.click("#save")
    page.wait_for_selector("#activate")
    page.click("#activate")
    page.wait_for_selector("text=実施中")
    _shot(page, "11-campaign-active")

    # The till posts a 2,000 yen bakery purchase: 20 base points and 20 more from the campaign.
    response = httpx.post(
        f"{shop.base_url}/v1/purchases",
        json={
            "member_id": shop.member_id,
            "store_id": shop.store_id,
            "receipt_no": f"R-{uuid.uuid4().hex[:8]}",
            "lines": [{"sku": "BREAD-01", "amount": 2000, "category": "bakery"}],
        },
        headers={"Authorization": f"Bearer {shop.api_key}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    body = response.json()
    bonus = [row for row in body["breakdown"] if code in row["rule"]]
    assert body["earned"] == 40
    assert [row["points"] for row in bonus] == [20]
    _logout(page)

    # The member page shows the purchase with the campaign's bonus.
    _login(page, shop.approver)
    page.goto(f"/console/members/{shop.member_id}")
    assert page.inner_text("#available").startswith("1,740")
    _shot(page, "12-member-after-purchase")

    # On a tablet held upright, in English.
    page.set_viewport_size({"width": 768, "height": 1024})
    page.click("a.lang")
    page.wait_for_url(member_url)
    assert "Balance" in page.content()
    _shot(page, "13-member-tablet-english")
    page.context.close()
