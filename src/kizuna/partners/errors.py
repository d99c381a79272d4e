"""Errors of programmes, partners and stores."""

from enum import StrEnum


class ErrorCode(StrEnum):
    PROGRAM_NOT_FOUND = "program_not_found"
    PARTNER_NOT_FOUND = "partner_not_found"
    STORE_NOT_FOUND = "store_not_found"
