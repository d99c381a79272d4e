"""Pure rules of the integration layer: API keys, the rate limit's token bucket, webhook
signatures and back-off, and reading offline batch rows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kizuna.batches.domain import BatchFormat, parse_row, split_rows
from kizuna.clients.domain import TokenBuckets, generate_key, key_matches, prefix_of
from kizuna.core.errors import KizunaError
from kizuna.webhooks.domain import MAX_ATTEMPTS, backoff, signature_header, verify


def test_a_key_is_found_by_its_prefix_and_checked_against_its_hash():
    new = generate_key()

    assert prefix_of(new.key) == new.prefix
    assert key_matches(new.key, new.digest)
    assert not key_matches(new.key + "x", new.digest)
    assert prefix_of("kz_short_x") is None


def test_token_bucket_allows_the_burst_then_says_when_to_retry():
    buckets = TokenBuckets()

    allowed = [buckets.retry_after(1, 3, now=100.0) for _ in range(3)]
    refused = buckets.retry_after(1, 3, now=100.0)
    later = buckets.retry_after(1, 3, now=100.0 + refused)

    assert allowed == [0.0, 0.0, 0.0]
    assert refused == pytest.approx(20.0)  # 3 a minute: one token every 20 s
    assert later == 0.0
    assert buckets.retry_after(2, 3, now=100.0) == 0.0  # another client has its own bucket


def test_signature_verifies_only_with_the_secret_the_body_and_a_fresh_timestamp():
    body = b'{"id":1}'
    header = signature_header("whsec_a", 1_700_000_000, body)

    assert verify("whsec_a", header, body, now=1_700_000_010)
    assert not verify("whsec_b", header, body, now=1_700_000_010)
    assert not verify("whsec_a", header, body + b" ", now=1_700_000_010)
    assert not verify("whsec_a", header, body, now=1_700_000_000 + 3600)
    assert not verify("whsec_a", "garbage", body, now=1_700_000_000)


def test_backoff_doubles_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3)] == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
    ]
    assert backoff(MAX_ATTEMPTS) == timedelta(hours=6)


def test_batch_row_names_the_field_at_fault():
    good = {
        "store_id": 1,
        "receipt_no": "R1",
        "member_id": 5,
        "occurred_at": "2026-11-20T10:00:00+09:00",
        "lines": [{"sku": "A", "amount": 100}],
    }

    assert parse_row(json.dumps(good)).lines[0].amount == 100
    for broken, field in (
        ({**good, "occurred_at": "2026-11-20T10:00:00"}, "occurred_at"),
        ({**good, "lines": [{"sku": "A", "amount": "x"}]}, "amount"),
        ({k: v for k, v in good.items() if k != "member_id"}, "identifier_type"),
        ({**good, "store_id": 0}, "store_id"),
    ):
        with pytest.raises(KizunaError) as refused:
            parse_row(json.dumps(broken))
        assert field in refused.value.message


def test_csv_rows_become_objects_keyed_by_the_header():
    rows = split_rows(b"store_id,receipt_no\n1,R1\n1,R2\n", BatchFormat.CSV)

    assert [json.loads(row)["receipt_no"] for row in rows] == ["R1", "R2"]
    with pytest.raises(KizunaError):
        split_rows(b"\n\n", BatchFormat.NDJSON)
