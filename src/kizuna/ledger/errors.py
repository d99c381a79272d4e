"""Errors of the ledger: each code is stable, the API's problem `type`."""

from enum import StrEnum


class ErrorCode(StrEnum):
    INSUFFICIENT_POINTS = "insufficient_points"
    INVALID_POINTS = "invalid_points"
    MEMBER_NOT_FOUND = "member_not_found"
    MEMBER_NOT_ACTIVE = "member_not_active"
    ENTRY_NOT_FOUND = "entry_not_found"
    NOT_REVERSIBLE = "not_reversible"
    ALREADY_REVERSED = "already_reversed"
    REASON_REQUIRED = "reason_required"
    ADJUSTMENT_NOT_FOUND = "adjustment_not_found"
    ADJUSTMENT_ALREADY_DECIDED = "adjustment_already_decided"
    SELF_APPROVAL = "self_approval"
    INVALID_REASON_CODE = "invalid_reason_code"
