"""Rules figures: earn evaluation throughput and the set-based rank evaluation of a million members.

1. Earn (in process, no database): 100,000 generated purchases of 10 lines each evaluated against
   50 active campaigns with mixed conditions (channels, stores, categories, amounts, weekday, hour,
   holidays, ranks, nested all/any/not) and every action type — the same steps as
   `earn_for_purchase` (base row, rank bonus, candidates, limits and exclusivity, breakdown rows)
   on a campaign book loaded once, as a long-running process holds it; the book compiles its
   evaluation functions on first use, inside the timed loop. Purchases per second of wall time
   and per second of this process's CPU time, with the load average before and after (the
   machine is shared: the wall figure is the CPU figure times the share of a core we got).
2. Quote (through the database): `earn_for_purchase(reserve=False)` on SQLite with the same 50
   campaigns, one purchase at a time, as the quote API runs it (campaigns read per purchase).
3. Ranks (PostgreSQL): a scratch database with N members (default 1,000,000) and their purchases
   over two years, generated in SQL; `tiers.evaluation.evaluate_ranks` at the year boundary:
   seconds.

The last line printed is one JSON object with at least `earn_per_s` and `ranks_1m_s`.

    python -m bench.rules [--purchases 100000] [--campaigns 50] [--members 1000000]
                          [--quotes 2000] [--skip-ranks]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.pg import machine, scratch_database, server_url
from sqlalchemy import text

from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.members import service as members
from kizuna.partners import service as partners
from kizuna.rules import manage
from kizuna.rules.book import CampaignBook
from kizuna.rules.campaigns import CampaignDefinition, CampaignRule, choose_awards
from kizuna.rules.domain import BreakdownRow, EarnPolicy, PurchaseLine, base_earn
from kizuna.rules.facts import Facts, MemberFacts, event_facts
from kizuna.rules.service import PurchaseFacts, earn_for_purchase
from kizuna.tiers import evaluation
from kizuna.tiers import service as tiers
from kizuna.tiers.domain import Metric, TierSpec, Window

TZ = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 5, 1, tzinfo=UTC) - timedelta(hours=9)  # 1 May 00:00 in Tokyo
CATEGORIES = [f"cat{n:02d}" for n in range(20)]
CHANNELS = ["pos", "ec", "app"]
RANKS = ["bronze", "silver", "gold"]
STORES = list(range(1, 41))


def campaign_definitions(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """`count` campaign definitions in force in May, with mixed scopes, conditions and actions."""
    conditions = [
        {"field": "event.amount", "op": "gte", "value": 3000},
        {"field": "event.categories", "op": "contains", "value": "cat03"},
        {"field": "event.categories", "op": "in", "value": ["cat07", "cat11"]},
        {"field": "event.weekday", "op": "in", "value": [6, 7]},
        {"field": "event.hour", "op": "between", "value": [17, 21]},
        {"field": "event.holiday", "op": "eq", "value": True},
        {"field": "event.day", "op": "in", "value": [5, 15, 25]},
        {"field": "member.rank", "op": "in", "value": ["silver", "gold"]},
        {
            "all": [
                {"field": "event.amount", "op": "gte", "value": 1500},
                {"not": {"field": "event.channel", "op": "eq", "value": "ec"}},
            ]
        },
        {
            "any": [
                {"field": "event.skus", "op": "contains", "value": "SKU0042"},
                {"field": "event.brands", "op": "in", "value": ["brand1", "brand2"]},
            ]
        },
    ]
    actions = [
        {"type": "multiply", "times": 2},
        {"type": "multiply", "times": "1.5", "categories": ["cat01", "cat02"]},
        {"type": "fixed", "points": 50},
        {"type": "per_item", "points": 5, "categories": ["cat05"]},
    ]
    found = []
    for n in range(count):
        definition: dict[str, Any] = {
            "name": f"bench {n}",
            "starts_at": START.isoformat(),
            "ends_at": (START + timedelta(days=31)).isoformat(),
            "action": actions[n % len(actions)],
            "condition": conditions[n % len(conditions)],
            "priority": rng.randint(0, 5),
            "stackable": n % 17 != 0,
        }
        if n % 3 == 0:
            definition["channels"] = [rng.choice(CHANNELS)]
        if n % 5 == 0:
            definition["stores"] = rng.sample(STORES, 5)
        if n % 7 == 0:
            definition["points_kind"], definition["limited_days"] = "limited", 30
        found.append(definition)
    return found


def generated_purchases(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """`count` purchases in May, 10 lines each."""
    purchases = []
    for _ in range(count):
        lines = [
            PurchaseLine(
                sku=f"SKU{rng.randrange(1000):04d}",
                amount=rng.randrange(100, 2000),
                quantity=rng.randint(1, 3),
                category=rng.choice(CATEGORIES),
                brand=f"brand{rng.randrange(30)}",
            )
            for _ in range(10)
        ]
        purchases.append(
            {
                "occurred_at": START + timedelta(seconds=rng.randrange(31 * 86400)),
                "channel": rng.choice(CHANNELS),
                "store": rng.choice(STORES),
                "lines": lines,
                "rank": rng.choice(RANKS),
            }
        )
    return purchases


def bench_earn(
    purchases: list[dict[str, Any]], definitions: list[dict[str, Any]]
) -> tuple[float, float]:
    """Purchases per second through the in-process earn evaluation: per second of wall time, and
    per second of this process's CPU time (what one core gives when others are busy)."""
    book = CampaignBook(
        CampaignRule(n + 1, n + 1, f"B{n}", CampaignDefinition.from_dict(d))
        for n, d in enumerate(definitions)
    )
    policy = EarnPolicy(excluded_categories=frozenset({"cat19"}))
    tiers_by_code = {
        code: TierSpec(i + 1, code, code, i, i * 10000, 100 + 25 * i)
        for i, code in enumerate(RANKS)
    }
    joined = START - timedelta(days=400)
    earned = 0
    began, cpu = time.perf_counter(), time.process_time()
    for purchase in purchases:
        at, lines = purchase["occurred_at"], purchase["lines"]
        base = base_earn(lines, 0, policy)
        rows = [base]
        tier = tiers_by_code[purchase["rank"]]
        if bonus := tier.bonus(base.points):
            rows.append(BreakdownRow("rank", tier.name, bonus))
        facts = Facts(
            as_of=at,
            tz=TZ,
            event=event_facts(
                event_type="purchase",
                occurred_at=at,
                tz=TZ,
                channel=purchase["channel"],
                store=purchase["store"],
                partner=1,
                amount=sum(line.amount for line in lines),
                lines=lines,
            ),
            member=MemberFacts(member_id=1, joined_at=joined, rank=tier.code),
        )
        candidates = book.candidates(facts, lines=lines, policy=policy, base_points=base.points)
        rows += [a.rule.row(a.points, at) for a in choose_awards(candidates, {})]
        earned += sum(row.points for row in rows)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(
        f"earn: {len(purchases):,} purchases in {elapsed:.2f} s ({cpu:.2f} s of CPU), "
        f"{earned:,} points"
    )
    return len(purchases) / elapsed, len(purchases) / cpu


def bench_quote(quotes: int, definitions: list[dict[str, Any]], rng: random.Random) -> float:
    """Purchases per second through `earn_for_purchase` on SQLite (the quote path)."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/quote.db"
        upgrade(url)
        database = Database(url)
        with database.write() as session:
            program = partners.create_program(session, code="Q", name="quote bench")
            partner = partners.create_partner(session, program_id=program.id, code="P", name="P")
            store = partners.create_store(session, partner_id=partner.id, code="S", name="S")
            member = members.create_member(session, program_id=program.id, joined_at=START)
            for n, definition in enumerate(definitions):
                view = manage.create_campaign(
                    session,
                    program_id=program.id,
                    code=f"B{n}",
                    definition=definition,
                    as_of=START - timedelta(days=2),
                )
                manage.activate_campaign(
                    session, campaign_id=view.campaign.id, as_of=START - timedelta(days=1)
                )
            ids = (program.id, partner.id, store.id, member.id)
        sample = generated_purchases(quotes, rng)
        began = time.perf_counter()
        with database.read() as session:
            policies = partners.policies(session, ids[0])
            for purchase in sample:
                earn_for_purchase(
                    session,
                    policies=policies,
                    purchase=PurchaseFacts(
                        member_id=ids[3],
                        lines=purchase["lines"],
                        points_used=0,
                        occurred_at=purchase["occurred_at"],
                        partner_id=ids[1],
                        store_id=ids[2],
                        channel=purchase["channel"],
                    ),
                    reserve=False,
                )
        elapsed = time.perf_counter() - began
        database.dispose()
    print(f"quote: {quotes:,} purchases through earn_for_purchase on SQLite in {elapsed:.2f} s")
    return quotes / elapsed


GENERATE = """
INSERT INTO members (id, program_id, status, joined_at)
SELECT g, :program, 'active', TIMESTAMPTZ '2024-01-01 00:00+09' FROM generate_series(1, :n) g;
SELECT setval(pg_get_serial_sequence('members', 'id'), :n);
INSERT INTO purchases (member_id, partner_id, store_id, receipt_no, channel, occurred_at,
                       recorded_at, total_amount, lines, returned_quantities, refunded_amount,
                       points_used, points_restored, status)
SELECT m, :partner, :store, 'R' || m || '-' || k, 'pos', t, t, amount, '[]', '[]',
       CASE WHEN k = 1 AND m % 10 = 0 THEN amount / 2 ELSE 0 END, 0, 0, 'completed'
FROM (
    SELECT m, k,
           TIMESTAMPTZ '2025-01-01 00:00+09' + (random() * 730) * INTERVAL '1 day' AS t,
           (500 + random() * 15000)::int AS amount
    FROM generate_series(1, :n) m, generate_series(1, 1 + (m % 4)) k
) p;
INSERT INTO member_ranks (member_id, program_id, tier_id, since)
SELECT g, :program, :gold, TIMESTAMPTZ '2026-01-01 00:00+09'
FROM generate_series(1, :n, 7) g;
ANALYZE members; ANALYZE purchases; ANALYZE member_ranks;
"""


def bench_ranks(members: int, server: str | None) -> tuple[float, dict[str, Any]]:
    """Seconds of one set-based rank evaluation over `members` members on PostgreSQL."""
    with scratch_database(server_url(server), "kizuna_bench_rules") as url:
        upgrade(url)
        database = Database(url)
        with database.write() as session:
            program = partners.create_program(session, code="R", name="rank bench")
            partner = partners.create_partner(session, program_id=program.id, code="P", name="P")
            store = partners.create_store(session, partner_id=partner.id, code="S", name="S")
            rules = tiers.configure(
                session,
                program_id=program.id,
                metric=Metric.SPEND,
                window=Window.CALENDAR_YEAR,
                tiers=[
                    tiers.TierInput("bronze", "ブロンズ", 0),
                    tiers.TierInput("silver", "シルバー", 20000, 125),
                    tiers.TierInput("gold", "ゴールド", 50000, 150),
                ],
            )
            ids = {
                "program": program.id,
                "partner": partner.id,
                "store": store.id,
                "gold": rules.tiers[-1].id,
                "n": members,
            }
        began = time.perf_counter()
        with database.engine.begin() as conn:
            for statement in filter(str.strip, GENERATE.split(";")):
                names = {k: v for k, v in ids.items() if f":{k}" in statement}
                conn.execute(text(statement), names)
        with database.read() as session:
            count = session.scalar(text("SELECT count(*) FROM purchases"))
        print(
            f"ranks: generated {members:,} members, {count:,} purchases in "
            f"{time.perf_counter() - began:.0f} s"
        )
        as_of = datetime(2027, 1, 1, tzinfo=UTC) - timedelta(hours=9)
        began = time.perf_counter()
        with database.write() as session:
            changed = evaluation.evaluate_ranks(session, program_id=ids["program"], as_of=as_of)
        elapsed = time.perf_counter() - began
        print(f"ranks: evaluated {members:,} members in {elapsed:.1f} s, {changed:,} changed")
        facts = machine(url)
        database.dispose()
    return elapsed, {"ranks_changed": changed, "ranks_purchases": count, **facts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--quotes", type=int, default=2_000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--server", default=None, help="PostgreSQL server URL")
    parser.add_argument("--skip-ranks", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(5)
    definitions = campaign_definitions(args.campaigns, rng)
    sample = generated_purchases(args.purchases, rng)
    load = os.getloadavg()[0]
    earn_per_s, earn_per_cpu_s = bench_earn(sample, definitions)
    load_end = os.getloadavg()[0]
    print(
        f"earn: {earn_per_s:,.0f} purchases/s against {args.campaigns} campaigns "
        f"({earn_per_cpu_s:,.0f} per CPU-second; load average {load:.1f} before, "
        f"{load_end:.1f} after)"
    )
    quote_per_s = bench_quote(args.quotes, definitions, rng)
    print(f"quote: {quote_per_s:,.0f} purchases/s")
    result: dict[str, Any] = {
        "earn_per_s": round(earn_per_s),
        "earn_per_cpu_s": round(earn_per_cpu_s),
        # (the machine facts of the rank run add their own `load_average`, taken at its end)
        "earn_load_average": round(load, 1),
        "earn_load_average_end": round(load_end, 1),
        "quote_sqlite_per_s": round(quote_per_s),
        "campaigns": args.campaigns,
        "purchases": args.purchases,
    }
    if not args.skip_ranks:
        seconds, facts = bench_ranks(args.members, args.server)
        result |= {
            "ranks_1m_s": round(seconds * 1_000_000 / args.members, 1),
            "ranks_members": args.members,
            "ranks_s": round(seconds, 1),
            **facts,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
