"""Tables of members, their identifiers, profiles, consents, cards, merges and card imports.

Personal values never sit in clear: `*_enc` columns hold AES-GCM ciphertexts tagged with their key
version (`kizuna.privacy.crypto`), `*_index` columns keyed HMACs of the normalised value for exact
lookups. `key_version` on a row is the version its ciphertexts use, so rotation finds what is left.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime


class Member(Base):
    """One customer: the master customer id every channel's identifier resolves to."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)
    join_store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    join_channel: Mapped[str | None] = mapped_column(String(16))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    merged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class MemberIdentifier(Base):
    """A way to find a member: (type, value); each maps to at most one member.

    For personal kinds (card, phone, e-mail) `value` is the blind index and `value_enc` the
    encrypted normalised value; other kinds (LINE, app, EC ids) are stored as they are.
    """

    __tablename__ = "member_identifiers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    value_enc: Mapped[str | None] = mapped_column(Text)
    key_version: Mapped[int | None]

    __table_args__ = (UniqueConstraint("type", "value"),)


class MemberProfile(Base):
    """A member's personal data, each field encrypted; erased as a whole at withdrawal."""

    __tablename__ = "member_profiles"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    key_version: Mapped[int] = mapped_column(index=True)
    name_kanji_enc: Mapped[str | None] = mapped_column(Text)
    name_kana_enc: Mapped[str | None] = mapped_column(Text)
    birth_date_enc: Mapped[str | None] = mapped_column(Text)
    gender_enc: Mapped[str | None] = mapped_column(Text)
    postal_code_enc: Mapped[str | None] = mapped_column(Text)
    address_enc: Mapped[str | None] = mapped_column(Text)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    email_enc: Mapped[str | None] = mapped_column(Text)
    # Blind indexes of normalised values: duplicate detection finds equal ones without decrypting.
    kana_index: Mapped[str | None] = mapped_column(String(64), index=True)
    birth_index: Mapped[str | None] = mapped_column(String(64), index=True)
    postal_index: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    email_index: Mapped[str | None] = mapped_column(String(64), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Consent(Base):
    """One consent decision for a channel; the latest per channel is in force (history kept)."""

    __tablename__ = "member_consents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(40))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_member_consents_member_channel", "member_id", "channel", "id"),)


class CardSeries(Base):
    """A programme's card numbers: its prefix and the next serial to issue."""

    __tablename__ = "card_series"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(8), unique=True)
    next_serial: Mapped[int] = mapped_column(BigId)


class Card(Base):
    """A membership card. The balance belongs to the member, so a card only points at them."""

    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    number_index: Mapped[str] = mapped_column(String(64), unique=True)
    number_enc: Mapped[str | None] = mapped_column(Text)
    key_version: Mapped[int | None] = mapped_column(index=True)
    last4: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    blocked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    block_reason: Mapped[str | None] = mapped_column(String(16))
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"))


class MemberMerge(Base):
    """A confirmed merge (名寄せ): who survived, who was merged, why, and the journal entries."""

    __tablename__ = "member_merges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    merged_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    score: Mapped[float | None]
    reasons: Mapped[list[str]] = mapped_column(Json)
    actor: Mapped[str] = mapped_column(String(100))
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime)
    out_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    in_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    moved: Mapped[dict[str, Any]] = mapped_column(Json)


class CardImport(Base):
    """A legacy-card import file and how far it got: a rerun resumes after `last_line`."""

    __tablename__ = "card_imports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    file_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(300))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    last_line: Mapped[int]
    imported: Mapped[int]
    skipped: Mapped[int]
    failed: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
