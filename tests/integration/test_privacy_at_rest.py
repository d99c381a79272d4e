"""Personal data at rest: after sign-ups with known values, the database files hold none of them."""

import subprocess
from datetime import date
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from kizuna.members import cards, service
from kizuna.members.domain import Profile
from tests import factories as f

PEOPLE = [
    ("hanako.yamada@example.jp", "090-1234-5678", "+819012345678", "山田花子", "ヤマダハナコ"),
    ("ichiro.suzuki@example.co.jp", "080-2345-6789", "+818023456789", "鈴木一郎", "スズキイチロウ"),
    ("k.sato+kizuna@example.com", "03-3456-7890", "+81334567890", "佐藤健", "サトウケン"),
]


def _plain_values(numbers):
    values = []
    for email, phone, e164, kanji, kana in PEOPLE:
        values += [email, phone, phone.replace("-", ""), e164, kanji, kana]
    values += numbers
    values += ["東京都渋谷区神宮前", "1500001"]
    return values


def _dump(database, tmp_path) -> bytes:
    if database.dialect == "sqlite":
        with database.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        path = Path(make_url(database.url).database)
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(p.read_bytes() for p in files if p.exists())
    url = make_url(database.url).set(drivername="postgresql")
    dumped = subprocess.run(
        ["pg_dump", "--no-owner", url.render_as_string(hide_password=False)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return dumped.stdout


def test_neither_the_database_file_nor_a_dump_contains_personal_values(fresh_database, tmp_path):
    numbers = []
    with fresh_database.write() as session:
        program = f.program(session)
        for email, phone, _, kanji, kana in PEOPLE:
            member = service.create_member(
                session,
                program_id=program.id,
                joined_at=f.T0,
                identifiers={"email": email, "phone": phone, "line": f"U-visible-{len(numbers)}"},
                profile=Profile(
                    name_kanji=kanji,
                    name_kana=kana,
                    birth_date=date(1980, 1, 2),
                    postal_code="150-0001",
                    address="東京都渋谷区神宮前1-2-3",
                ),
            )
            _, number = cards.issue_card(session, member_id=member.id, as_of=f.T0)
            numbers.append(number)
    with fresh_database.read() as session:  # the data is there and readable through the service
        found = service.find_by_identifier(session, kind="email", value=PEOPLE[0][0].upper())
        assert service.get_profile(session, found.id).name_kanji == "山田花子"

    dump = _dump(fresh_database, tmp_path)

    # The search can see what is stored in clear (a LINE id is not personal) and the ciphertexts.
    assert b"U-visible-0" in dump
    assert b"k1:" in dump
    leaked = [value for value in _plain_values(numbers) if value.encode() in dump]
    assert leaked == []
