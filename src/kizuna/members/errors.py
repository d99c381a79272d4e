"""Errors of members, identifiers, cards, merges and withdrawals: stable codes for the API."""

from enum import StrEnum


class ErrorCode(StrEnum):
    MEMBER_NOT_FOUND = "member_not_found"
    MEMBER_NOT_ACTIVE = "member_not_active"
    IDENTIFIER_TAKEN = "identifier_taken"
    IDENTIFIER_NOT_FOUND = "identifier_not_found"
    INVALID_IDENTIFIER = "invalid_identifier"
    CARD_NOT_FOUND = "card_not_found"
    CARD_BLOCKED = "card_blocked"
    CARD_NOT_ACTIVE = "card_not_active"
    CARD_ALREADY_ACTIVE = "card_already_active"
    MERGE_NOT_ALLOWED = "merge_not_allowed"
    ALREADY_WITHDRAWN = "already_withdrawn"
