"""Errors of members and identifiers."""

from enum import StrEnum


class ErrorCode(StrEnum):
    MEMBER_NOT_FOUND = "member_not_found"
    IDENTIFIER_TAKEN = "identifier_taken"
    INVALID_IDENTIFIER = "invalid_identifier"
