"""API clients (keys shown once, rotation, revocation) and their webhook endpoints and
deliveries. Partner managers see only their partner's clients."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind, Scope
from kizuna.clients.models import ApiClient
from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.partners.models import Partner, Store
from kizuna.security import audit
from kizuna.security.domain import Permission
from kizuna.webhooks import service as webhooks
from kizuna.webhooks.domain import ALL_EVENTS, EVENT_TYPES

router = APIRouter()
Reader = Annotated[Viewer, Depends(require(Permission.CLIENTS_READ))]
Writer = Annotated[Viewer, Depends(require(Permission.CLIENTS_WRITE))]


def _visible(viewer: Viewer, client: ApiClient | None) -> bool:
    partner = viewer.staff.scope.partner_id
    return client is not None and (partner is None or client.partner_id == partner)


def _forget_key(request: Request, client_id: int) -> None:
    # The API caches authenticated keys for a few seconds; this process forgets at once.
    cache = getattr(request.app.state, "key_cache", None)
    if cache is not None:
        cache.forget_client(client_id)


def _list_page(
    request: Request,
    db: DatabaseDep,
    viewer: Viewer,
    *,
    new_key: tuple[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    with db.read() as session:
        rows = clients.list_clients(session, partner_id=viewer.staff.scope.partner_id)
        partners = {p.id: p for p in session.scalars(select(Partner).order_by(Partner.id))}
        stores = {s.id: s for s in session.scalars(select(Store).order_by(Store.id))}
    return render(
        request,
        "clients.html",
        viewer=viewer,
        rows=rows,
        partners=partners,
        stores=stores,
        kinds=list(ClientKind),
        scopes=list(Scope),
        new_key=new_key,
        error=error,
        status_code=status_code,
    )


@router.get("/clients")
def client_list(request: Request, db: DatabaseDep, viewer: Reader) -> Response:
    """Every API client the viewer may see."""
    return _list_page(request, db, viewer)


def _record(session: Session, viewer: Viewer, action: str, client_id: int, **details: Any) -> None:
    audit.record(
        session,
        actor=viewer.staff.actor,
        action=action,
        target=f"client:{client_id}",
        details=details,
        as_of=utcnow(),
    )


@router.post("/clients")
async def create_client(
    request: Request,
    db: DatabaseDep,
    viewer: Writer,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    partner_id: Annotated[int, Form()],
    kind: Annotated[ClientKind, Form()],
    store_id: Annotated[str, Form()] = "",
) -> Response:
    """A new client; its key is shown once, here."""
    form = await request.form()
    scopes = [str(value) for value in form.getlist("scopes")]
    try:
        with db.write() as session:
            client, key = clients.create_client(
                session,
                partner_id=partner_id,
                kind=kind,
                name=name,
                scopes=scopes or None,
                store_id=int(store_id) if store_id.isdigit() else None,
                as_of=utcnow(),
            )
            _record(session, viewer, "client.create", client.id, scopes=client.scopes)
    except KizunaError as refused:
        return _list_page(request, db, viewer, error=refused.message, status_code=422)
    return _list_page(request, db, viewer, new_key=(name, key))


def _detail(
    request: Request,
    db: DatabaseDep,
    viewer: Viewer,
    client_id: int,
    *,
    new_key: str = "",
    new_secret: tuple[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    with db.read() as session:
        client = session.get(ApiClient, client_id)
        if not _visible(viewer, client):
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        endpoints = webhooks.list_endpoints(session, client_id=client_id)
        deliveries = webhooks.list_deliveries(session, client_id=client_id, limit=30)
    return render(
        request,
        "client.html",
        viewer=viewer,
        client=client,
        endpoints=endpoints,
        deliveries=deliveries,
        event_types=[ALL_EVENTS, *sorted(EVENT_TYPES)],
        new_key=new_key,
        new_secret=new_secret,
        error=error,
        status_code=status_code,
    )


@router.get("/clients/{client_id}")
def client_detail(request: Request, db: DatabaseDep, viewer: Reader, client_id: int) -> Response:
    """One client: its webhook endpoints and recent deliveries."""
    return _detail(request, db, viewer, client_id)


def _owned(session: Session, viewer: Viewer, client_id: int) -> ApiClient | None:
    client = session.get(ApiClient, client_id)
    return client if _visible(viewer, client) else None


@router.post("/clients/{client_id}/rotate")
def rotate(request: Request, db: DatabaseDep, viewer: Writer, client_id: int) -> Response:
    """A new key; the old one stops working at once."""
    try:
        with db.write() as session:
            if _owned(session, viewer, client_id) is None:
                return render(request, "not_found.html", viewer=viewer, status_code=404)
            key = clients.rotate_key(session, client_id=client_id, as_of=utcnow())
            _record(session, viewer, "client.rotate_key", client_id)
    except KizunaError as refused:
        return _detail(request, db, viewer, client_id, error=refused.message, status_code=422)
    _forget_key(request, client_id)
    return _detail(request, db, viewer, client_id, new_key=key)


@router.post("/clients/{client_id}/revoke")
def revoke(request: Request, db: DatabaseDep, viewer: Writer, client_id: int) -> Response:
    """Revoke the client for good."""
    with db.write() as session:
        if _owned(session, viewer, client_id) is None:
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        clients.revoke(session, client_id=client_id, as_of=utcnow())
        _record(session, viewer, "client.revoke", client_id)
    _forget_key(request, client_id)
    return redirect(f"{CONSOLE}/clients/{client_id}")


@router.post("/clients/{client_id}/endpoints")
async def add_endpoint(
    request: Request,
    db: DatabaseDep,
    viewer: Writer,
    client_id: int,
    url: Annotated[str, Form(max_length=500)],
) -> Response:
    """Register a webhook URL; its signing secret is shown once."""
    form = await request.form()
    event_types = [str(value) for value in form.getlist("event_types")]
    try:
        with db.write() as session:
            if _owned(session, viewer, client_id) is None:
                return render(request, "not_found.html", viewer=viewer, status_code=404)
            endpoint = webhooks.create_endpoint(
                session, client_id=client_id, url=url, event_types=event_types, as_of=utcnow()
            )
            _record(
                session,
                viewer,
                "webhook.create",
                client_id,
                endpoint=endpoint.id,
                events=event_types,
            )
            secret = (endpoint.url, endpoint.secret)
    except KizunaError as refused:
        return _detail(request, db, viewer, client_id, error=refused.message, status_code=422)
    return _detail(request, db, viewer, client_id, new_secret=secret)


@router.post("/clients/{client_id}/endpoints/{endpoint_id}/deactivate")
def deactivate_endpoint(
    request: Request, db: DatabaseDep, viewer: Writer, client_id: int, endpoint_id: int
) -> Response:
    """Stop sending to an endpoint."""
    try:
        with db.write() as session:
            if _owned(session, viewer, client_id) is None:
                return render(request, "not_found.html", viewer=viewer, status_code=404)
            webhooks.deactivate_endpoint(session, endpoint_id=endpoint_id, client_id=client_id)
            _record(session, viewer, "webhook.deactivate", client_id, endpoint=endpoint_id)
    except KizunaError:
        return render(request, "not_found.html", viewer=viewer, status_code=404)
    return redirect(f"{CONSOLE}/clients/{client_id}")


@router.post("/clients/{client_id}/deliveries/{delivery_id}/redeliver")
def redeliver(
    request: Request, db: DatabaseDep, viewer: Writer, client_id: int, delivery_id: int
) -> Response:
    """Send a delivery again now."""
    try:
        with db.write() as session:
            if _owned(session, viewer, client_id) is None:
                return render(request, "not_found.html", viewer=viewer, status_code=404)
            webhooks.redeliver(
                session, delivery_id=delivery_id, client_id=client_id, as_of=utcnow()
            )
            _record(session, viewer, "webhook.redeliver", client_id, delivery=delivery_id)
    except KizunaError:
        return render(request, "not_found.html", viewer=viewer, status_code=404)
    return redirect(f"{CONSOLE}/clients/{client_id}")
