"""The base of every error a caller can cause.

Each area has an `ErrorCode` enum in its own `errors.py`; the API turns a `KizunaError` into
RFC 9457 problem+json whose `type` is the code, so codes are stable and never renamed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class KizunaError(Exception):
    """A refused request: a stable code, an HTTP status, a message for people, optional details."""

    status: int = 400

    def __init__(
        self, code: StrEnum | str, message: str, *, status: int | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        if status is not None:
            self.status = status
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The problem as plain data, the shape stored for idempotent replay."""
        return {"code": self.code, "message": self.message, "status": self.status, **self.details}


class NotFound(KizunaError):
    status = 404


class Conflict(KizunaError):
    status = 409


class Unprocessable(KizunaError):
    status = 422
