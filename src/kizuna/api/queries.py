"""Read-side queries the API serves: a member's journal a page at a time, and their open lots.

The journal is read newest first with a keyset cursor (the last entry id), so a page costs the same
however deep the client pages, and entries written meanwhile never shift the pages.
"""

from __future__ import annotations

import base64
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from kizuna.core.errors import Unprocessable
from kizuna.ledger.models import JournalEntry


def encode_cursor(entry_id: int) -> str:
    """An opaque cursor for the page after entry `entry_id`."""
    return base64.urlsafe_b64encode(f"j{entry_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The entry id a cursor points after; `invalid_cursor` if it was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("j"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError) as bad:
        raise Unprocessable("invalid_cursor", "the cursor is not valid") from bad


def journal_page(
    session: Session,
    *,
    member_ids: list[int],
    partner_id: int | None,
    entry_type: str | None,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
    after_cursor: str | None,
    limit: int,
) -> tuple[list[JournalEntry], str | None]:
    """One page of the journal of `member_ids` (a member and those merged into it), newest first,
    and the cursor of the next page (or None).

    `partner_id` hides entries recorded at other partners (None: hide nothing); entries of no
    partner (expiry, the operator's adjustments) are the member's own and always shown.
    """
    query = select(JournalEntry).where(JournalEntry.member_id.in_(member_ids))
    if partner_id is not None:
        query = query.where(
            or_(JournalEntry.partner_id == partner_id, JournalEntry.partner_id.is_(None))
        )
    if entry_type is not None:
        query = query.where(JournalEntry.entry_type == entry_type)
    if occurred_from is not None:
        query = query.where(JournalEntry.occurred_at >= occurred_from)
    if occurred_to is not None:
        query = query.where(JournalEntry.occurred_at < occurred_to)
    if after_cursor is not None:
        query = query.where(JournalEntry.id < decode_cursor(after_cursor))
    rows = list(session.scalars(query.order_by(JournalEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more and rows else None
