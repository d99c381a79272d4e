"""Webhook signing secrets at rest (both engines): stored sealed, never in clear; deliveries to a
real local receiver still verify with the secret shown at creation; a clear secret from before
migration 0414 keeps signing and is sealed by `kizuna rotate-keys`; rotating to a new key
re-encrypts it and deliveries still verify."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Boolean, Integer, String, column, insert, table, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from kizuna.api.app import create_app
from kizuna.cli.main import app as cli
from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.core.settings import Settings, get_settings
from kizuna.db.base import Json, UtcDateTime
from kizuna.db.database import Database
from kizuna.db.migrate import downgrade, upgrade
from kizuna.outbox.service import publish
from kizuna.privacy import crypto, keys
from kizuna.privacy.keys import Keyring, write_key_file
from kizuna.webhooks import service as webhooks
from kizuna.webhooks.domain import verify
from kizuna.webhooks.rotation import legacy_count
from kizuna.webhooks.secret_store import SECRET_FIELD
from kizuna.webhooks.sender import Sender
from tests import factories as f
from tests.conftest import ENGINES, fresh_database_url
from tests.webhook_receiver import Receiver

BEFORE_SEALING = "0413_batch_chunks"  # the webhooks branch before migration 0414
OLD_ENDPOINTS = table(  # webhook_endpoints as migration 0411 made it: the secret in clear
    "webhook_endpoints",
    column("id", Integer),
    column("client_id", Integer),
    column("url", String),
    column("secret", String),
    column("event_types", Json),
    column("active", Boolean),
    column("created_at", UtcDateTime),
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The process's keyring written to a key file named by the environment (as `kizuna
    rotate-keys` reads it); the previous keyring comes back afterwards."""
    previous = keys.keyring()
    path = tmp_path / "keys.toml"
    write_key_file(path, previous)
    monkeypatch.setenv("KIZUNA_KEY_FILE", str(path))
    get_settings.cache_clear()
    keys.configure(Settings(key_file=path))
    yield path
    get_settings.cache_clear()
    keys.configure(previous)


def rotate_keys(database: Database, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """`kizuna rotate-keys …` as an operator runs it, then the new key file for this process."""
    monkeypatch.setenv("KIZUNA_DATABASE_URL", database.url)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["rotate-keys", *args])
    assert result.exit_code == 0, result.output
    keys.configure(get_settings())


def client_of_new_partner(database: Database) -> tuple[int, int]:
    """A partner of its own (so no other test's endpoint gets its events) and its API client."""
    with database.write() as session:
        partner = f.partner(session, f.program(session))
        client, _ = clients.create_client(
            session,
            partner_id=partner.id,
            kind=ClientKind.PARTNER,
            name="webhook secrets",
            scopes=["webhooks:manage"],
            as_of=utcnow(),
        )
        return partner.id, client.id


def register(database: Database, client_id: int, url: str) -> tuple[int, str]:
    """Register an endpoint: its id and the secret shown at creation."""
    with database.write() as session:
        endpoint = webhooks.create_endpoint(
            session, client_id=client_id, url=url, event_types=["*"], as_of=utcnow()
        )
        return endpoint.id, endpoint.secret


def stored(database: Database, endpoint_id: int) -> Any:
    with database.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT secret_enc, secret_legacy, key_version FROM webhook_endpoints"
                " WHERE id = :id"
            ),
            {"id": endpoint_id},
        ).one()


def table_text(database: Database, table: str = "webhook_endpoints") -> str:
    """Every row of `table` as text, the way a dump or a replica shows it."""
    with database.engine.connect() as conn:
        if database.dialect == "postgresql":
            rows = conn.execute(text(f"SELECT t::text FROM {table} AS t")).scalars()
            return "\n".join(rows)
        return "\n".join(repr(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}")))


def sqlite_bytes(database: Database) -> bytes:
    with database.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    path = Path(str(make_url(database.url).database))
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(p.read_bytes() for p in files if p.exists())


def assert_not_in_clear(database: Database, secret: str, table: str = "webhook_endpoints") -> None:
    token = secret.removeprefix("whsec_")
    assert token not in table_text(database, table)
    if database.dialect == "sqlite":
        assert token.encode() not in sqlite_bytes(database)


def deliver(database: Database, receiver: Receiver, partner_id: int, secret: str) -> None:
    """Publish an event of the partner, run one round of a sender, and check the signature."""
    marker = uuid.uuid4().hex
    with database.write() as session:
        publish(
            session,
            event_type="points.earned",
            payload={"marker": marker},
            as_of=utcnow(),
            partner_id=partner_id,
        )
    before = len(receiver.requests)
    sender = Sender(database, lease=timedelta(seconds=10))
    try:
        sender.run_once(utcnow())
    finally:
        sender.close()
    arrived = receiver.requests[before:]
    assert len(arrived) == 1
    headers, body = arrived[0]
    assert json.loads(body)["data"]["marker"] == marker
    assert verify(secret, headers["Kizuna-Signature"], body, int(time.time()))


def test_a_registered_secret_is_stored_sealed_and_nowhere_in_clear(fresh_database):
    _, client_id = client_of_new_partner(fresh_database)

    endpoint_id, secret = register(fresh_database, client_id, "http://127.0.0.1:9/unused")

    assert secret.startswith("whsec_")
    assert len(secret) > 40
    sealed, legacy, version = stored(fresh_database, endpoint_id)
    ring = keys.keyring()
    assert legacy is None
    assert version == ring.current
    assert sealed.startswith(f"k{ring.current}:")
    assert crypto.decrypt(sealed, field=SECRET_FIELD) == secret
    with pytest.raises(KizunaError):  # bound to its field: not interchangeable with others
        crypto.decrypt(sealed, field="member_profiles.address")
    assert_not_in_clear(fresh_database, secret)
    with fresh_database.write() as session:
        webhooks.deactivate_endpoint(session, endpoint_id=endpoint_id, client_id=client_id)


def test_the_api_shows_the_secret_once_and_the_listing_never(fresh_database):
    _, client_id = client_of_new_partner(fresh_database)
    with fresh_database.write() as session:
        partner_id = session.scalar(
            text("SELECT partner_id FROM api_clients WHERE id = :id"), {"id": client_id}
        )
        _, api_key = clients.create_client(
            session,
            partner_id=partner_id,
            kind=ClientKind.PARTNER,
            name="webhook secrets API",
            scopes=["webhooks:manage"],
            as_of=utcnow(),
        )
    app = create_app(Settings(database_url=fresh_database.url), database=fresh_database)
    auth = {"Authorization": f"Bearer {api_key}"}
    creation = {
        "json": {"url": "http://127.0.0.1:9/api", "event_types": ["*"]},
        "headers": auth | {"Idempotency-Key": uuid.uuid4().hex},
    }
    with TestClient(app) as http:
        created = http.post("/v1/webhooks/endpoints", **creation)
        listed = http.get("/v1/webhooks/endpoints", headers=auth)
        replayed = http.post("/v1/webhooks/endpoints", **creation)

    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()] == [created.json()["id"]]
    assert "secret" not in listed.text
    assert secret not in listed.text
    assert secret.removeprefix("whsec_") not in table_text(fresh_database)
    # A retry of the creation replays the same secret, which its stored answer holds sealed.
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == created.json()
    assert_not_in_clear(fresh_database, secret, table="idempotency_keys")


def test_a_delivery_verifies_with_the_secret_shown_at_creation(fresh_database, receiver):
    partner_id, client_id = client_of_new_partner(fresh_database)
    _, secret = register(fresh_database, client_id, receiver.url)

    deliver(fresh_database, receiver, partner_id, secret)

    headers, body = receiver.requests[-1]
    assert not verify("whsec_wrong", headers["Kizuna-Signature"], body, int(time.time()))


def test_rotation_reencrypts_the_secret_and_deliveries_still_verify(
    fresh_database, receiver, key_file, monkeypatch
):
    partner_id, client_id = client_of_new_partner(fresh_database)
    endpoint_id, secret = register(fresh_database, client_id, receiver.url)
    before, _, version = stored(fresh_database, endpoint_id)
    assert version == 1

    rotate_keys(fresh_database, monkeypatch, "--new-key")

    after, legacy, version = stored(fresh_database, endpoint_id)
    assert (version, legacy) == (2, None)
    assert after.startswith("k2:")
    assert after != before
    # Only the new key from now on: the worker needs no other to sign.
    ring = keys.keyring()
    keys.configure(Keyring({2: ring.data_keys[2]}, 2, ring.index_key))
    deliver(fresh_database, receiver, partner_id, secret)
    assert_not_in_clear(fresh_database, secret)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_secret_stored_in_clear_before_the_migration_signs_and_is_sealed_by_rotate_keys(
    engine, tmp_path, receiver, key_file, monkeypatch
):
    url = fresh_database_url(engine, tmp_path)
    upgrade(url)
    database = Database(url)
    try:
        partner_id, client_id = client_of_new_partner(database)
        sealed_id, sealed_secret = register(database, client_id, receiver.url)
        # Back to the schema of clear secrets: the sealed one is decrypted into it.
        downgrade(url, BEFORE_SEALING)
        database.engine.dispose()
        with database.engine.begin() as conn:
            assert (
                conn.execute(
                    text("SELECT secret FROM webhook_endpoints WHERE id = :id"), {"id": sealed_id}
                ).scalar_one()
                == sealed_secret
            )
            conn.execute(text("UPDATE webhook_endpoints SET active = :no"), {"no": False})
            old_secret = "whsec_" + uuid.uuid4().hex + "LegacyClearSecret"
            old_id = conn.execute(
                insert(OLD_ENDPOINTS)
                .values(
                    client_id=client_id,
                    url=receiver.url,
                    secret=old_secret,
                    event_types=["points.earned"],
                    active=True,
                    created_at=utcnow(),
                )
                .returning(OLD_ENDPOINTS.c.id)
            ).scalar_one()

        upgrade(url)
        database.engine.dispose()

        assert tuple(stored(database, old_id)) == (None, old_secret, 0)
        deliver(database, receiver, partner_id, old_secret)
        assert legacy_count(database) == 2

        rotate_keys(database, monkeypatch)

        assert legacy_count(database) == 0
        sealed, legacy, version = stored(database, old_id)
        assert (legacy, version) == (None, 1)
        assert sealed.startswith("k1:")
        assert crypto.decrypt(sealed, field=SECRET_FIELD) == old_secret
        for secret in (old_secret, sealed_secret):
            assert secret.removeprefix("whsec_") not in table_text(database)
        deliver(database, receiver, partner_id, old_secret)
    finally:
        database.dispose()
