"""Errors of staff accounts, access control and the audit log."""

from enum import StrEnum

from kizuna.core.errors import KizunaError


class ErrorCode(StrEnum):
    STAFF_NOT_FOUND = "staff_not_found"
    USERNAME_TAKEN = "username_taken"
    WEAK_PASSWORD = "weak_password"  # noqa: S105 - an error code, not a password
    INVALID_ROLE_SCOPE = "invalid_role_scope"
    ROLE_NOT_ASSIGNABLE = "role_not_assignable"
    INVALID_TOTP = "invalid_totp"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - an error code, not a password
    NOT_AUTHENTICATED = "not_authenticated"
    FORBIDDEN = "forbidden"
    CSRF_FAILED = "csrf_failed"
    PASSWORD_CHANGE_REQUIRED = "password_change_required"  # noqa: S105 - an error code
    PROGRAM_REQUIRED = "program_required"  # staff with several programmes named none
    CLIENT_REQUIRED = "client_required"  # staff named no API client for its webhooks
    LOGIN_THROTTLED = "login_throttled"  # too many failed log-ins from one address


class Forbidden(KizunaError):
    status = 403
