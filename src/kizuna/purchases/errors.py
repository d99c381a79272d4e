"""Errors of purchases and returns."""

from enum import StrEnum


class ErrorCode(StrEnum):
    PURCHASE_NOT_FOUND = "purchase_not_found"
    DUPLICATE_RECEIPT = "duplicate_receipt"
    INVALID_PURCHASE = "invalid_purchase"
    INVALID_RETURN = "invalid_return"
    RETURN_EXCEEDS_PURCHASE = "return_exceeds_purchase"
    OFFLINE_REDEMPTION_REFUSED = "offline_redemption_refused"
    NOT_PENDING = "not_pending"
    MEMBER_NOT_ACTIVE = "member_not_active"
