"""Operations: health, readiness, Prometheus metrics, OpenAPI docs, JSON logs without personal
data, and `kizuna clients create` printing a working key once."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys


def test_health_ready_and_docs_answer(world):
    assert world.http.get("/health").json() == {"status": "ok"}
    assert world.http.get("/ready").json() == {"status": "ready"}
    docs = world.http.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs  # closed networks: every asset is served by Kizuna itself
    assert world.http.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/v1/purchases" in world.http.get("/openapi.json").json()["paths"]


def test_metrics_count_requests_by_route_and_ledger_operations(world):
    member_id = world.member()
    world.a.post(
        "/v1/purchases",
        {
            "member_id": member_id,
            "store_id": world.store_a.id,
            "receipt_no": "M-1",
            "lines": [{"sku": "A", "amount": 1000}],
        },
    )

    text = world.http.get("/metrics").text

    assert 'kizuna_http_requests_total{method="POST",route="/v1/purchases",status="201"}' in text
    assert 'kizuna_ledger_operations_total{operation="purchase",outcome="ok"}' in text
    assert "kizuna_http_request_duration_seconds_bucket" in text


def test_access_log_is_json_and_carries_no_personal_data(world, caplog):
    phone = "+819055501234"  # unique in the session (+819012345678 = 090-1234-5678, used elsewhere)
    world.a.post("/v1/members", {"identifiers": [{"type": "phone", "value": phone}]})
    handler = logging.getLogger("kizuna").handlers[0]

    with caplog.at_level(logging.INFO, logger="kizuna.access"):
        found = world.a.get("/v1/members/lookup", params={"type": "phone", "value": phone})

    assert found.status_code == 200
    lines = [handler.format(record) for record in caplog.records]
    entry = json.loads(lines[-1])
    assert entry["route"] == "/v1/members/lookup"
    assert entry["client_id"] == world.a.client_id
    assert all(phone not in line and "9012345678" not in line for line in lines)


def test_cli_creates_a_client_and_prints_its_key_once(world):
    env = os.environ | {"KIZUNA_DATABASE_URL": world.database.url}
    command = [sys.executable, "-m", "kizuna", "clients", "create"]
    command += ["--partner", str(world.partner_a.id), "--kind", "terminal", "--name", "Till 9"]

    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    key = output.strip().splitlines()[-1]
    member_id = world.member()

    answer = world.http.get(f"/v1/members/{member_id}", headers={"Authorization": f"Bearer {key}"})

    assert key.startswith("kz_")
    assert answer.status_code == 200
