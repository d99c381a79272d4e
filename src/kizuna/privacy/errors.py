"""Errors of field encryption: stable codes, never carrying the value itself."""

from enum import StrEnum


class ErrorCode(StrEnum):
    UNKNOWN_KEY_VERSION = "unknown_key_version"
    UNREADABLE_VALUE = "unreadable_value"
    INVALID_KEY = "invalid_key"
