"""Pydantic shapes of the `/v1` API (requests validated at the edge, responses documented)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Points = Annotated[int, Field(ge=0, le=100_000_000)]
Yen = Annotated[int, Field(ge=0, le=1_000_000_000)]
Id = Annotated[int, Field(ge=1, le=2**62)]
IdentifierType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,15}$")]
IdentifierValue = Annotated[str, Field(min_length=1, max_length=200)]
ReceiptNo = Annotated[str, Field(min_length=1, max_length=100)]
Channel = Literal["pos", "ec", "app", "line", "batch", "other"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifierIn(Strict):
    type: IdentifierType
    value: IdentifierValue


class MemberCreate(Strict):
    """Sign-up with the fewest fields: identifiers, and where the member joined."""

    identifiers: list[IdentifierIn] = Field(default_factory=list, max_length=10)
    join_store_id: Id | None = None
    join_channel: Channel | None = None


class MemberRead(BaseModel):
    id: int
    status: str
    joined_at: datetime
    join_store_id: int | None
    join_channel: str | None
    merged_into_id: int | None = Field(description="the surviving member, once merged")


class ExpiringRead(BaseModel):
    date: date
    points: int


class BalanceRead(BaseModel):
    member_id: int
    available: int
    pending: int
    debt: int
    total: int
    by_kind: dict[str, int]
    next_expiring: list[ExpiringRead]


class JournalEntryRead(BaseModel):
    id: int
    type: str
    amount: int
    debt_change: int
    occurred_at: datetime
    recorded_at: datetime
    partner_id: int | None
    store_id: int | None
    channel: str | None
    external_ref: str | None
    reason_code: str | None
    reverses_entry_id: int | None
    breakdown: list[dict[str, Any]] | None


class JournalPage(BaseModel):
    items: list[JournalEntryRead]
    next_cursor: str | None


class LotRead(BaseModel):
    id: int
    kind: str
    amount: int
    remaining: int
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    state: Literal["available", "pending"]


class QrTokenRead(BaseModel):
    token: str
    expires_at: datetime


class QrResolve(Strict):
    token: Annotated[str, Field(min_length=1, max_length=100)]


class EventCreate(Strict):
    """Something the member did: a visit, a log-in, opening the app, or a custom event type."""

    type: Annotated[str, Field(pattern=r"^(visit|login|app_open|custom\.[a-z0-9_]{1,40})$")]
    occurred_at: AwareDatetime | None = None
    store_id: Id | None = None
    attributes: dict[str, str | int | bool | None] = Field(default_factory=dict, max_length=20)


class BreakdownRead(BaseModel):
    rule: str
    label: str
    points: int
    kind: str
    expires_at: datetime | None


class EventRead(BaseModel):
    member_id: int
    type: str
    occurred_at: datetime
    earned: int
    breakdown: list[BreakdownRead]


class LineIn(Strict):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    amount: Yen
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1
    category: Annotated[str, Field(max_length=64)] | None = None
    brand: Annotated[str, Field(max_length=64)] | None = None


class PurchaseIn(Strict):
    """A receipt as the till or the EC site sends it."""

    member_id: Id
    store_id: Id
    receipt_no: ReceiptNo
    occurred_at: AwareDatetime | None = None
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    redeem_points: Points = 0
    channel: Channel = "pos"


class EcPurchaseIn(PurchaseIn):
    """An EC order: its points stay pending until `available_at` or confirmation."""

    channel: Channel = "ec"
    available_at: AwareDatetime


class QuoteRead(BaseModel):
    earned: int
    breakdown: list[BreakdownRead]
    redeemable: bool
    balance: BalanceRead


class PurchaseRead(BaseModel):
    purchase_id: int
    member_id: int
    earned: int
    redeemed: int
    pending: bool
    breakdown: list[BreakdownRead]
    balance: BalanceRead


class ReturnLineIn(Strict):
    line_no: Annotated[int, Field(ge=0, le=499)]
    quantity: Annotated[int, Field(ge=1, le=100_000)]


class ReturnIn(Strict):
    """A return: `lines` omitted means everything still kept; `restore_points` overrides the
    proportional restoration of redeemed points."""

    store_id: Id
    receipt_no: ReceiptNo
    lines: list[ReturnLineIn] | None = Field(default=None, max_length=500)
    restore_points: Points | None = None


class ReturnRead(BaseModel):
    purchase_id: int
    member_id: int
    refunded_amount: int
    points_restored: int
    points_reversed: int
    debt_added: int
    status: str
    balance: BalanceRead


class PurchaseDetail(BaseModel):
    purchase_id: int
    member_id: int
    store_id: int
    receipt_no: str
    channel: str
    status: str
    occurred_at: datetime
    total_amount: int
    refunded_amount: int
    points_used: int
    points_restored: int
    lines: list[dict[str, Any]]
    returned_quantities: list[int]


class ConfirmIn(Strict):
    store_id: Id
    receipt_no: ReceiptNo


class ConfirmRead(BaseModel):
    store_id: int
    receipt_no: str
    points_confirmed: int


def balance_read(member_id: int, balance: Any) -> BalanceRead:
    """The API shape of a ledger `Balance`."""
    return BalanceRead(
        member_id=member_id,
        available=balance.available,
        pending=balance.pending,
        debt=balance.debt,
        total=balance.total,
        by_kind=dict(balance.by_kind),
        next_expiring=[
            ExpiringRead(date=item.day, points=item.points) for item in balance.next_expiring
        ],
    )


def breakdown_read(rows: Any) -> list[BreakdownRead]:
    """The API shape of an earn breakdown."""
    return [BreakdownRead(**row.to_dict()) for row in rows]
