"""Identity figures: matching quality, legacy-card import, identifier lookups, duplicate candidates.

1. Quality (no database): a labelled set of generated Japanese customers, some registered twice
   with the variations real data has (kana spelling, 旧字体, typos, moved address, changed e-mail,
   phone written differently) and hard negatives (namesakes, family members sharing an address
   and a landline); precision and recall of the candidate pairs at several thresholds.
2. Import: `kizuna import cards` on a generated CSV into a scratch PostgreSQL database (rows/s).
3. Lookup: find a member by phone, written a different way each time, among N members
   (p50 / p99 ms, each lookup its own read transaction as an API request has).
4. Candidates: `merge.find_candidates` over M stored, encrypted profiles (seconds).

The last line printed is one JSON object.

    python -m bench.identity [--import-rows 1000000] [--lookup-members 1000000]
                             [--candidate-members 100000] [--quality-people 20000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.pg import machine, scratch_database, server_url
from faker import Faker
from sqlalchemy import create_engine, insert, text

from kizuna.core.clock import utcnow
from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.members import importer, merge, service
from kizuna.members.domain import (
    CANDIDATE_THRESHOLD,
    IdentifierKind,
    MemberStatus,
    Profile,
    candidate_pairs,
    match_record,
    normalise_profile,
)
from kizuna.members.identity import IDENTIFIER_FIELD, stored_value
from kizuna.members.models import Member, MemberIdentifier, MemberProfile
from kizuna.partners import service as partners
from kizuna.privacy import crypto
from kizuna.privacy.keys import keyring

# Generation -----------------------------------------------------------------------------------

OLD_FORMS = {"高": "髙", "崎": "﨑", "辺": "邊", "斎": "齋", "沢": "澤", "浜": "濱", "島": "嶋"}
KANA_VARIANTS = [("ウ", "ー"), ("オウ", "オー"), ("ヅ", "ズ"), ("ヂ", "ジ"), ("イ", "ー")]
TYPO_KANA = (
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"
)


@dataclass(frozen=True)
class Person:
    """A generated customer record and the person it really is."""

    person: int
    profile: Profile


class Generator:
    """Realistic Japanese customers from pools drawn once from Faker (fast for a million)."""

    def __init__(self, seed: int = 7) -> None:
        fake = Faker("ja_JP")
        fake.seed_instance(seed)
        self.rng = random.Random(seed)
        self.last = [fake.last_name_pair() for _ in range(400)]
        self.first = [fake.first_name_pair() for _ in range(600)]
        self.places = [
            (fake.zipcode(), f"{fake.prefecture()}{fake.city()}{fake.town()}") for _ in range(3000)
        ]
        self.domains = ["example.jp", "example.co.jp", "example.ne.jp", "example.com"]

    def _address(self) -> tuple[str, str]:
        postal, place = self.rng.choice(self.places)
        r = self.rng
        return postal, f"{place}{r.randint(1, 9)}丁目{r.randint(1, 30)}番{r.randint(1, 20)}号"

    def _phone(self, n: int) -> str:
        return f"0{self.rng.choice('789')}0-{1000 + n // 10000 % 9000:04d}-{n % 10000:04d}"

    def person(self, n: int) -> Profile:
        """Customer number `n` (phones are unique by construction)."""
        (last, last_kana, last_roman), (first, first_kana, first_roman) = (
            self.rng.choice(self.last),
            self.rng.choice(self.first),
        )
        postal, address = self._address()
        born = date(1940, 1, 1) + timedelta(days=self.rng.randrange(365 * 65))
        return Profile(
            name_kanji=f"{last} {first}",
            name_kana=f"{last_kana} {first_kana}",
            birth_date=born,
            gender=self.rng.choice(["female", "male"]),
            postal_code=postal,
            address=address,
            phone=self._phone(n),
            email=f"{first_roman.lower()}.{last_roman.lower()}{n}@{self.rng.choice(self.domains)}",
        )

    def variant(self, profile: Profile, n: int) -> Profile:
        """The same person registered again, with one to three realistic differences."""
        r = self.rng
        changes: dict[str, Any] = {}
        for kind in r.sample(
            ["kana", "kanji", "typo", "birth", "moved", "email", "phone", "missing"],
            r.randint(1, 3),
        ):
            kana, kanji = profile.name_kana or "", profile.name_kanji or ""
            if kind == "kana":  # hiragana, half-width or another spelling
                pick = r.random()
                if pick < 0.4:
                    changes["name_kana"] = "".join(
                        chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in kana
                    )
                elif pick < 0.7:
                    changes["name_kana"] = kana.replace(" ", "")
                else:
                    for old, new in KANA_VARIANTS:
                        if old in kana[1:]:
                            changes["name_kana"] = kana[0] + kana[1:].replace(old, new, 1)
                            break
            elif kind == "kanji":  # 旧字体, or spaces differently
                changed = "".join(OLD_FORMS.get(c, c) for c in kanji)
                changes["name_kanji"] = changed if changed != kanji else kanji.replace(" ", "　")
            elif kind == "typo" and len(kana) > 3:
                i = r.randrange(1, len(kana))
                if kana[i] != " ":
                    changes["name_kana"] = kana[:i] + r.choice(TYPO_KANA) + kana[i + 1 :]
            elif kind == "birth" and profile.birth_date:
                born = profile.birth_date
                if born.day <= 12 and born.day != born.month and r.random() < 0.5:
                    changes["birth_date"] = born.replace(month=born.day, day=born.month)
                else:
                    changes["birth_date"] = born + timedelta(days=r.choice([-10, 1, 10]))
            elif kind == "moved":
                changes["postal_code"], changes["address"] = self._address()
            elif kind == "email":
                changes["email"] = f"new{n}@{r.choice(self.domains)}"
            elif kind == "phone":
                if r.random() < 0.5 and profile.phone:
                    changes["phone"] = profile.phone.translate(
                        str.maketrans("0123456789-", "０１２３４５６７８９－")
                    )
                else:
                    changes["phone"] = self._phone(n)
            elif kind == "missing":
                for field in r.sample(["birth_date", "address", "postal_code", "email"], 2):
                    changes[field] = None
        return replace(profile, **changes)

    def namesake(self, profile: Profile, n: int) -> Profile:
        """Another person with the same name (a hard negative)."""
        other = self.person(n)
        return replace(other, name_kanji=profile.name_kanji, name_kana=profile.name_kana)

    def family(self, profile: Profile, n: int) -> Profile:
        """A family member: same surname, address and often the landline; another given name."""
        other = self.person(n)
        last_kanji = (profile.name_kanji or " ").split(" ")[0]
        last_kana = (profile.name_kana or " ").split(" ")[0]
        return replace(
            other,
            name_kanji=f"{last_kanji} {(other.name_kanji or ' ').split(' ')[-1]}",
            name_kana=f"{last_kana} {(other.name_kana or ' ').split(' ')[-1]}",
            postal_code=profile.postal_code,
            address=profile.address,
            phone=profile.phone if self.rng.random() < 0.3 else other.phone,
        )


def labelled_set(
    people: int, seed: int = 7, duplicates: float = 0.12, negatives: float = 0.06
) -> tuple[list[Person], set[tuple[int, int]]]:
    """Records (index = record id) and the set of record-id pairs that are one person."""
    gen = Generator(seed)
    records: list[Person] = []
    for n in range(people):
        records.append(Person(n, gen.person(n)))
    truth: set[tuple[int, int]] = set()
    extra = people
    for n in range(people):
        roll = gen.rng.random()
        if roll < duplicates:
            records.append(Person(n, gen.variant(records[n].profile, extra)))
            truth.add((n, len(records) - 1))
        elif roll < duplicates + negatives / 2:
            records.append(Person(extra, gen.namesake(records[n].profile, extra)))
        elif roll < duplicates + negatives:
            records.append(Person(extra, gen.family(records[n].profile, extra)))
        extra += 1
    return records, truth


# 1. Quality -----------------------------------------------------------------------------------


def quality(people: int, seed: int = 7) -> dict[str, Any]:
    """Precision and recall of candidate pairs on a generated labelled set."""
    records, truth = labelled_set(people, seed=seed)
    matchable = [match_record(i, normalise_profile(rec.profile)) for i, rec in enumerate(records)]
    pairs = candidate_pairs(matchable, threshold=-100.0)
    rows = []
    for threshold in (6.0, 8.0, 10.0, CANDIDATE_THRESHOLD, 14.0, 18.0):
        found = {(p.member_id, p.other_id) for p in pairs if p.score >= threshold}
        hits = len(found & truth)
        rows.append(
            {
                "threshold": threshold,
                "candidates": len(found),
                "precision": round(hits / len(found), 4) if found else 1.0,
                "recall": round(hits / len(truth), 4) if truth else 1.0,
            }
        )
    return {"records": len(records), "true_pairs": len(truth), "by_threshold": rows}


# 2. Import ------------------------------------------------------------------------------------


CSV_HEADER = [
    "card_number",
    "points",
    "expires_on",
    "name_kanji",
    "name_kana",
    "phone",
    "email",
    "birth_date",
]


def card_rows(count: int, gen: Generator) -> Iterator[list[str]]:
    for n in range(count):
        profile = gen.person(n)
        yield [
            f"7{n:011d}",
            str(gen.rng.randint(0, 20000)),
            "2027-12-31" if n % 3 == 0 else "",
            profile.name_kanji or "",
            profile.name_kana or "",
            profile.phone or "",
            profile.email or "",
            profile.birth_date.isoformat() if profile.birth_date else "",
        ]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _backend_cpu(db: Database) -> tuple[int, float | None]:
    """The pid of the connection's server process and its CPU seconds so far (None when the
    server is not on this machine)."""
    with db.read() as session:
        pid = int(session.scalar(text("SELECT pg_backend_pid()")))
    return pid, _process_cpu(pid)


def _process_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_import(url: str, program_id: int, rows: int, batch: int, workers: int) -> dict[str, Any]:
    # One pooled connection: the writer's server process is the one whose CPU is read.
    db = Database(url, pool_size=1, max_overflow=0)
    gen = Generator(11)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "legacy.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_HEADER)
            writer.writerows(card_rows(rows, gen))
        backend, backend_before = _backend_cpu(db)
        load_before = _load()
        start, cpu, children = time.perf_counter(), time.process_time(), os.times()
        report = importer.run_import(
            db, path, program_id=program_id, as_of=utcnow(), batch_size=batch, workers=workers
        )
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        after = os.times()
        worker_seconds = (after.children_user + after.children_system) - (
            children.children_user + children.children_system
        )
        backend_after = _process_cpu(backend)
    db.dispose()
    server_us = (
        round((backend_after - backend_before) / rows * 1e6)
        if backend_after is not None and backend_before is not None
        else None
    )
    return {
        "rows": rows,
        "batch": batch,
        "workers": workers,
        "imported": report.imported,
        "errors": len(report.errors),
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        # CPU per row, whatever the load: the importer (reading, writing), its worker processes
        # (parsing, encrypting) and the PostgreSQL server process that loaded the rows.
        "cpu_us_per_row": {
            "importer": round(cpu_seconds / rows * 1e6),
            "workers": round(worker_seconds / rows * 1e6),
            "server": server_us,
        },
        "load_average_before": load_before,
        "load_average_after": _load(),
    }


# 3. Lookups -----------------------------------------------------------------------------------


def fill_members(db: Database, program_id: int, count: int, chunk: int = 10_000) -> None:
    """`count` members with a phone identifier each, written in bulk (setup, not measured)."""
    ring = keyring()
    now = utcnow()
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        with db.write() as session:
            ids = session.scalars(
                insert(Member).returning(Member.id, sort_by_parameter_order=True),
                [
                    {"program_id": program_id, "status": str(MemberStatus.ACTIVE), "joined_at": now}
                    for _ in range(size)
                ],
            ).all()
            rows = []
            for member_id, n in zip(ids, range(start, start + size), strict=True):
                e164 = f"+8190{10_000_000 + n:08d}"
                rows.append(
                    {
                        "member_id": member_id,
                        "type": str(IdentifierKind.PHONE),
                        "value": stored_value(IdentifierKind.PHONE, e164),
                        "value_enc": crypto.encrypt(e164, field=IDENTIFIER_FIELD, ring=ring),
                        "key_version": ring.current,
                        "created_at": now,
                    }
                )
            session.execute(insert(MemberIdentifier), rows)


def _writing(n: int, style: int) -> str:
    digits = f"090{10_000_000 + n:08d}"
    if style == 0:
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    if style == 1:
        return digits.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    return f"+81 {digits[1:3]} {digits[3:7]} {digits[7:]}"


def _percentiles(timings: list[float]) -> tuple[float, float]:
    timings = sorted(timings)
    return round(statistics.median(timings), 3), round(timings[int(len(timings) * 0.99) - 1], 3)


def bench_lookup(db: Database, members: int, samples: int) -> dict[str, Any]:
    """Lookups by phone in varying writings, each its own transaction, several ways in turn
    (each sample runs every way, so that all see the same load):

    * lean: `service.member_id_by_identifier` — one prebuilt Core statement on a pooled
      connection in autocommit, so the SELECT is its own transaction: the pool's pre-ping and
      the SELECT, two round trips. What a till resolving who pays needs;
    * lean_in_transaction: the same inside BEGIN … ROLLBACK (four round trips);
    * orm: `service.find_by_identifier` in a `Database.read()` session (the API's lookup, which
      returns the member: pre-ping, BEGIN, SELECT, COMMIT and the ORM);
    * lean_without_pre_ping: the lean way on an engine without `pool_pre_ping` (a diagnostic:
      what the pre-ping round trip costs);
    * empty_session: `Database.read()` running `SELECT 1`, the yardstick of what the
      environment costs a transaction.
    """
    rng = random.Random(3)
    select_one = text("SELECT 1")
    autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    unpinged = create_engine(db.url, isolation_level="AUTOCOMMIT")

    def lean(value: str) -> None:
        with autocommit.connect() as connection:
            service.member_id_by_identifier(connection, kind="phone", value=value)

    def lean_in_transaction(value: str) -> None:
        with db.engine.connect() as connection:
            service.member_id_by_identifier(connection, kind="phone", value=value)

    def orm(value: str) -> None:
        with db.read() as session:
            service.find_by_identifier(session, kind="phone", value=value)

    def lean_without_pre_ping(value: str) -> None:
        with unpinged.connect() as connection:
            service.member_id_by_identifier(connection, kind="phone", value=value)

    def empty_session(value: str) -> None:
        with db.read() as session:
            session.execute(select_one)

    runs = {
        run.__name__: run
        for run in (lean, lean_in_transaction, orm, lean_without_pre_ping, empty_session)
    }
    timings: dict[str, list[float]] = {kind: [] for kind in runs}
    cpu = dict.fromkeys(runs, 0.0)
    warm_up = min(100, samples)
    load_before = _load()
    for i in range(warm_up + samples):
        value = _writing(rng.randrange(members), i % 3)
        for kind, run in runs.items():
            start, started_cpu = time.perf_counter(), time.process_time()
            run(value)
            if i >= warm_up:
                timings[kind].append((time.perf_counter() - start) * 1000)
                cpu[kind] += time.process_time() - started_cpu
    unpinged.dispose()
    figures: dict[str, Any] = {"members": members, "samples": samples}
    for kind in runs:
        p50, p99 = _percentiles(timings[kind])
        figures[kind] = {
            "p50_ms": p50,
            "p99_ms": p99,
            "client_cpu_us": round(cpu[kind] / samples * 1e6),
        }
    return figures | {"load_average_before": load_before, "load_average_after": _load()}


# 4. Candidates --------------------------------------------------------------------------------


def fill_profiles(db: Database, program_id: int, people: int, chunk: int = 5_000) -> int:
    """Stored, encrypted profiles of a labelled set of about `people` people; returns records."""
    records, _ = labelled_set(people, seed=5)
    ring = keyring()
    now = utcnow()
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        with db.write() as session:
            ids = session.scalars(
                insert(Member).returning(Member.id, sort_by_parameter_order=True),
                [
                    {"program_id": program_id, "status": str(MemberStatus.ACTIVE), "joined_at": now}
                    for _ in part
                ],
            ).all()
            session.execute(
                insert(MemberProfile),
                [
                    {
                        "member_id": member_id,
                        "updated_at": now,
                        **service.profile_columns(normalise_profile(rec.profile), ring),
                    }
                    for member_id, rec in zip(ids, part, strict=True)
                ],
            )
    return len(records)


def bench_candidates(db: Database, program_id: int) -> dict[str, Any]:
    load_before = _load()
    start = time.perf_counter()
    with db.read() as session:
        found = merge.find_candidates(session, program_id=program_id)
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "candidates": len(found),
        "load_average_before": load_before,
        "load_average_after": _load(),
    }


# Main -----------------------------------------------------------------------------------------


def _program(db: Database) -> int:
    with db.write() as session:
        return partners.create_program(session, code="BENCH", name="bench").id


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=None, help="PostgreSQL server URL")
    parser.add_argument("--quality-people", type=int, default=20_000)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--import-batch", type=int, default=importer.DEFAULT_CHUNK)
    parser.add_argument("--import-workers", type=int, default=2)
    parser.add_argument("--lookup-members", type=int, default=1_000_000)
    parser.add_argument("--lookup-samples", type=int, default=5_000)
    parser.add_argument("--candidate-members", type=int, default=100_000)
    args = parser.parse_args(argv)
    server = server_url(args.server)
    result: dict[str, Any] = {
        "benchmark": "identity",
        "machine": machine(server.render_as_string(hide_password=False)),
    }
    if args.quality_people:
        # Seed 7 is the set the weights were tuned on; seed 13 is held out.
        result["quality"] = quality(args.quality_people, seed=13)
        result["quality_tuning_set"] = quality(args.quality_people, seed=7)
        print(json.dumps(result["quality"], ensure_ascii=False), file=sys.stderr)
    if args.import_rows:
        with scratch_database(server, "kizuna_bench_import") as url:
            upgrade(url)
            db = Database(url)
            program_id = _program(db)
            db.dispose()
            result["import"] = bench_import(
                url, program_id, args.import_rows, args.import_batch, args.import_workers
            )
        print(json.dumps(result["import"]), file=sys.stderr)
    if args.lookup_members:
        with scratch_database(server, "kizuna_bench_lookup") as url:
            upgrade(url)
            db = Database(url)
            fill_members(db, _program(db), args.lookup_members)
            # Statistics and visibility as autovacuum would leave them on a database in service.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as vacuum:
                vacuum.execute(text("VACUUM ANALYZE member_identifiers, members"))
            result["lookup"] = bench_lookup(db, args.lookup_members, args.lookup_samples)
            db.dispose()
        print(json.dumps(result["lookup"]), file=sys.stderr)
    if args.candidate_members:
        with scratch_database(server, "kizuna_bench_candidates") as url:
            upgrade(url)
            db = Database(url)
            program_id = _program(db)
            stored = fill_profiles(db, program_id, int(args.candidate_members / 1.15))
            result["candidates"] = {"members": stored, **bench_candidates(db, program_id)}
            db.dispose()
    at: dict[str, Any] = next(
        (
            row
            for row in result.get("quality", {}).get("by_threshold", [])
            if row["threshold"] == CANDIDATE_THRESHOLD
        ),
        {},
    )
    result |= {
        "import_rows_per_s": result.get("import", {}).get("rows_per_s"),
        "lookup_p50_ms": result.get("lookup", {}).get("lean", {}).get("p50_ms"),
        "lookup_p99_ms": result.get("lookup", {}).get("lean", {}).get("p99_ms"),
        "lookup_orm_p99_ms": result.get("lookup", {}).get("orm", {}).get("p99_ms"),
        "candidates_100k_s": result.get("candidates", {}).get("seconds"),
        "precision": at.get("precision"),
        "recall": at.get("recall"),
    }
    print(json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
