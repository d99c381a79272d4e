"""Key rotation while the service keeps reading and writing: nothing is lost (both engines)."""

import os
import random
import threading

import pytest
from sqlalchemy import func, select

from kizuna.members import cards, service
from kizuna.members.domain import Profile
from kizuna.members.models import Card, MemberIdentifier, MemberProfile
from kizuna.privacy import keys, rotation
from kizuna.privacy.keys import Keyring
from tests import factories as f

START = 120


@pytest.fixture
def old_ring():
    previous = keys.keyring()
    ring = keys.configure(Keyring({1: os.urandom(32)}, 1, os.urandom(32)))
    yield ring
    keys.configure(previous)


def _sign_up(session, program_id, n):
    member = service.create_member(
        session,
        program_id=program_id,
        joined_at=f.T0,
        identifiers={"email": f"Rotate{n}@Example.JP", "phone": f"090-5{n:03d}-{n:04d}"},
        profile=Profile(name_kana=f"テスト{n}", address=f"大阪府大阪市北区{n}"),
    )
    cards.issue_card(session, member_id=member.id, as_of=f.T0)
    return member.id


def test_rotation_under_concurrent_reads_and_writes_loses_nothing(fresh_database, old_ring):
    db = fresh_database
    with db.write() as session:
        program_id = f.program(session).id
        expected = {
            n: (_sign_up(session, program_id, n), f"大阪府大阪市北区{n}") for n in range(START)
        }
    written = {n: {address} for n, (_, address) in expected.items()}
    new_ring = keys.configure(old_ring.with_new_version(os.urandom(32)))
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def reader():
        rng = random.Random(1)
        while not stop.is_set():
            n = rng.randrange(START)
            try:
                with db.read() as session:
                    member = service.find_by_identifier(
                        session, kind="email", value=f"rotate{n}@example.jp"
                    )
                    with lock:
                        member_id, seen = expected[n][0], set(written[n])
                    assert member.id == member_id
                    # Any value ever written (a concurrent update may be committed or not yet).
                    assert service.get_profile(session, member_id).address in seen
            except BaseException as failure:
                errors.append(failure)
                return

    def writer():
        rng = random.Random(2)
        n = START
        while not stop.is_set():
            try:
                with db.write() as session:
                    if rng.random() < 0.5:
                        member_id = _sign_up(session, program_id, n)
                        new = (n, member_id, f"大阪府大阪市北区{n}")
                        n += 1
                    else:
                        k = rng.randrange(START)
                        new = (k, expected[k][0], f"福岡県福岡市{rng.randrange(10**6)}")
                        with lock:
                            written[k].add(new[2])
                        service.update_profile(
                            session, member_id=new[1], changes={"address": new[2]}, as_of=f.T0
                        )
                with lock:  # committed: from now on this is the value
                    expected[new[0]] = (new[1], new[2])
            except BaseException as failure:
                errors.append(failure)
                return

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    try:
        rewritten = rotation.rotate(db, service.encrypted_tables(), new_ring, batch_size=15)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert errors == []
    assert rewritten > 0
    assert rotation.pending(db, service.encrypted_tables(), new_ring) == 0
    # Only the new key is needed from now on: read everything with a keyring that lacks version 1.
    keys.configure(Keyring({2: new_ring.data_keys[2]}, 2, new_ring.index_key))
    with db.read() as session:
        for n, (member_id, address) in expected.items():
            assert service.get_profile(session, member_id).address == address
            found = service.find_by_identifier(session, kind="phone", value=f"0905{n:03d}{n:04d}")
            assert found.id == member_id
            assert {v.type for v in service.identifiers_of(session, member_id)} >= {"email"}
        versions = {
            model.__name__: set(
                session.scalars(select(func.distinct(model.key_version)).select_from(model))
            )
            for model in (MemberProfile, MemberIdentifier, Card)
        }
    assert versions == {
        "MemberProfile": {2},
        "MemberIdentifier": {2},
        "Card": {2},
    }
