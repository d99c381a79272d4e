"""Pydantic shapes of the identity API: profile, identifiers, cards, consents, merge, withdrawal."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from kizuna.members.domain import ConsentChannel, Gender

Text = Annotated[str, Field(min_length=1, max_length=200)]


class ProfileFields(BaseModel):
    """Personal fields; every one optional (sign-up asks only for what is needed)."""

    model_config = ConfigDict(extra="forbid")

    name_kanji: Text | None = None
    name_kana: Text | None = None
    birth_date: date | None = None
    gender: Gender | None = None
    postal_code: Annotated[str, Field(max_length=20)] | None = None
    address: Annotated[str, Field(max_length=300)] | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    email: Annotated[str, Field(max_length=254)] | None = None


class ProfileRead(ProfileFields):
    member_id: int


class IdentifierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,15}$")]
    value: Text


class IdentifierRead(BaseModel):
    id: int
    type: str
    masked: str
    created_at: datetime


class CardIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activate: bool = True


class CardBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(pattern=r"^(lost|stolen|damaged)$")] = "lost"


class CardRead(BaseModel):
    id: int
    member_id: int
    masked_number: str
    status: str
    origin: str
    issued_at: datetime
    activated_at: datetime | None
    blocked_at: datetime | None
    block_reason: str | None
    replaced_by_id: int | None


class CardIssued(CardRead):
    """A new card: its full number is shown this once (print it, hand it over)."""

    number: str


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: ConsentChannel
    granted: bool
    source: Annotated[str, Field(min_length=1, max_length=40)]


class ConsentRead(BaseModel):
    channel: str
    granted: bool
    source: str | None
    recorded_at: datetime | None


class ConsentList(BaseModel):
    consents: list[ConsentRead]


class CandidateRead(BaseModel):
    member_id: int
    other_id: int
    score: float
    reasons: list[str]


class CandidateList(BaseModel):
    candidates: list[CandidateRead]


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merged_id: Annotated[int, Field(ge=1)]


class MergeRead(BaseModel):
    id: int
    survivor_id: int
    merged_id: int
    score: float | None
    reasons: list[str]
    merged_at: datetime
    out_entry_id: int | None
    in_entry_id: int | None
    moved: dict[str, object]


class WithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500)] | None = None


class WithdrawalRead(BaseModel):
    member_id: int
    forfeited_points: int
    forfeit_entry_id: int | None
    identifiers_released: int
    cards_blocked: int


class Removed(BaseModel):
    id: int
