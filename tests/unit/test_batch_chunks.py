"""Cutting a batch into chunks, and the JSON the set-based posting writes, without a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from kizuna.batches.domain import BatchRow, member_key, plan_chunks
from kizuna.db.idempotency import request_hash
from kizuna.purchases.bulk import _breakdown_json, _lines_json
from kizuna.rules.domain import BreakdownRow, PurchaseLine

keys = st.lists(st.one_of(st.none(), st.sampled_from([f"m:{n}" for n in range(12)])), max_size=80)


@given(keys, st.integers(min_value=1, max_value=20))
def test_a_members_rows_never_span_two_chunks(rows, size):
    chunks = plan_chunks(rows, size)
    where: dict[str, set[int]] = {}
    for key, chunk in zip(rows, chunks, strict=True):
        if key is not None:
            where.setdefault(key, set()).add(chunk)
    assert all(len(found) == 1 for found in where.values())


@given(keys, st.integers(min_value=1, max_value=20))
def test_chunks_are_numbered_from_zero_and_full_unless_one_member_overflows_them(rows, size):
    chunks = plan_chunks(rows, size)
    assert sorted(set(chunks)) == list(range(len(set(chunks))))
    for chunk in set(chunks):
        pairs = enumerate(zip(rows, chunks, strict=True))
        members = {key if key else n for n, (key, c) in pairs if c == chunk}
        count = chunks.count(chunk)
        assert count <= size or len(members) == 1


def test_rows_are_cut_in_order_of_first_appearance():
    rows = ["m:1", "m:2", "m:1", None, "m:3", "m:2"]
    assert plan_chunks(rows, 3) == [0, 1, 0, 1, 2, 1]


def test_a_row_names_its_member_by_id_or_identifier():
    assert member_key('{"member_id": 7, "store_id": 1}') == "m:7"
    assert member_key('{"identifier_type": "card", "identifier_value": " 12 "}') == "i:card:12"
    assert member_key("{not json") is None
    assert member_key('{"store_id": 1}') is None


lines = st.lists(
    st.builds(
        PurchaseLine,
        sku=st.text(min_size=1),
        amount=st.integers(min_value=0, max_value=10**9),
        quantity=st.integers(min_value=1, max_value=1000),
        category=st.one_of(st.none(), st.text()),
        brand=st.one_of(st.none(), st.text()),
    ),
    min_size=1,
    max_size=4,
)


@given(lines)
def test_a_receipts_lines_encode_as_their_dicts_would(receipt):
    assert _lines_json(receipt) == json.dumps([line.to_dict() for line in receipt])


moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.astimezone(timezone(timedelta(hours=9))))
rows_ = st.lists(
    st.builds(
        BreakdownRow,
        rule=st.text(),
        label=st.text(),
        points=st.integers(min_value=0, max_value=10**7),
        kind=st.sampled_from(["standard", "limited"]),
        expires_at=st.one_of(st.none(), moments),
    ),
    max_size=5,
)


@given(rows_)
def test_a_breakdown_encodes_as_its_dicts_would(rows):
    assert _breakdown_json(rows) == json.dumps([row.to_dict() for row in rows])


batch_rows = st.builds(
    BatchRow,
    store_id=st.integers(min_value=1, max_value=2**53),
    receipt_no=st.text(min_size=1),
    occurred_at=moments,
    lines=lines.map(list),
    member_id=st.one_of(st.none(), st.integers(min_value=1, max_value=2**53)),
    identifier=st.one_of(st.none(), st.tuples(st.text(), st.text())),
)


@given(batch_rows)
def test_a_rows_digest_is_the_request_hash_of_its_canonical_form(row):
    assert row.digest() == request_hash(row.canonical())
