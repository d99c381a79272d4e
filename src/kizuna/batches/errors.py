"""Errors of offline batches and their rows."""

from enum import StrEnum


class ErrorCode(StrEnum):
    BATCH_NOT_FOUND = "batch_not_found"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_LARGE = "batch_too_large"
    UNSUPPORTED_FORMAT = "unsupported_format"
    MALFORMED_ROW = "malformed_row"
