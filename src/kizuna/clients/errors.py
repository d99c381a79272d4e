"""Errors of API clients, keys, scopes and rate limits."""

from enum import StrEnum


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    CLIENT_NOT_FOUND = "client_not_found"
    UNKNOWN_SCOPE = "unknown_scope"
    INVALID_CLIENT = "invalid_client"
    QR_TOKEN_INVALID = "qr_token_invalid"  # noqa: S105 (an error code, not a secret)
