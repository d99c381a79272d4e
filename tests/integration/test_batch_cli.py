"""`kizuna batches …` as an operator runs it: upload a till's file for its API client, post it,
read the counts and the rows that failed; uploading the same file again posts nothing."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from kizuna.cli.main import app
from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind
from kizuna.core.settings import get_settings
from kizuna.purchases.models import Purchase
from tests import factories as f


@pytest.fixture
def kizuna(database, monkeypatch):
    """Run `kizuna …` in-process against the module's database."""
    monkeypatch.setenv("KIZUNA_DATABASE_URL", database.url)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, [str(arg) for arg in args])
    get_settings.cache_clear()


def test_an_uploaded_file_is_posted_with_its_bad_rows_reported_and_never_twice(
    database, kizuna, tmp_path
):
    # given a till's API client and a file of three receipts, one of them malformed
    with database.write() as session:
        program = f.program(session)
        partner = f.partner(session, program)
        store = f.store(session, partner)
        member = f.member(session, program)
        client, _ = clients.create_client(
            session,
            partner_id=partner.id,
            kind=ClientKind.STORE,
            name="till",
            as_of=f.T0,
            store_id=store.id,
        )
        client_id, store_id, member_id = client.id, store.id, member.id
    receipts = [
        {
            "store_id": store_id,
            "receipt_no": f"CLI-{n}",
            "member_id": member_id,
            "occurred_at": f.T0.isoformat(),
            "lines": [{"sku": "A", "amount": 1500}],
        }
        for n in range(2)
    ]
    file = tmp_path / "day.ndjson"
    file.write_text("\n".join([json.dumps(receipts[0]), "{oops", json.dumps(receipts[1])]))

    # when the operator uploads it twice
    first = kizuna("batches", "upload", file, "--client", client_id)
    again = kizuna("batches", "upload", file, "--client", client_id)

    # then the first posts two receipts and reports the bad line, the second posts nothing
    assert first.exit_code == 0, first.output
    assert "2 posted, 0 duplicates, 1 errors" in first.output
    assert "0 posted, 2 duplicates, 1 errors" in again.output
    batch_id = first.output.split("batch ")[1].split(":")[0].strip()
    errors = kizuna("batches", "rows", batch_id, "--status", "error")
    assert re.search(r"\b2\b.*error.*malformed_row", errors.output), errors.output
    assert "completed" in kizuna("batches", "status", batch_id).output
    with database.read() as session:
        posted = session.scalar(
            select(func.count()).select_from(Purchase).where(Purchase.member_id == member_id)
        )
    assert posted == 2


def test_a_client_without_the_batch_scope_cannot_upload(database, kizuna, tmp_path):
    with database.write() as session:
        partner = f.partner(session, f.program(session))
        client, _ = clients.create_client(
            session,
            partner_id=partner.id,
            kind=ClientKind.PARTNER,
            name="reader",
            as_of=f.T0,
            scopes=["members:read"],
        )
        client_id = client.id
    file = tmp_path / "day.ndjson"
    file.write_text("{}")

    refused = kizuna("batches", "upload", file, "--client", client_id)

    assert refused.exit_code == 1
    assert "insufficient_scope" in refused.output
