"""Liveness (`/health`), readiness (`/ready`: the database answers) and Prometheus `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from kizuna.api.deps import DatabaseDep
from kizuna.api.observability import metrics_payload

router = APIRouter(tags=["operations"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "the database does not answer"}})
def ready(database: DatabaseDep) -> JSONResponse:
    """The process can serve: its database answers a query."""
    try:
        with database.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as down:  # any failure to reach the database means "not ready"
        return JSONResponse(
            {"status": "unavailable", "reason": type(down).__name__}, status_code=503
        )
    return JSONResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition."""
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)
