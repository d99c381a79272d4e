"""Errors of earning rules and campaigns: each code is stable, the API's problem `type`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from kizuna.core.errors import Unprocessable


class ErrorCode(StrEnum):
    INVALID_CONDITION = "invalid_condition"
    INVALID_CAMPAIGN = "invalid_campaign"
    CAMPAIGN_NOT_FOUND = "campaign_not_found"
    CAMPAIGN_NOT_EDITABLE = "campaign_not_editable"
    CAMPAIGN_STATE = "campaign_state"
    PURCHASE_ID_REQUIRED = "purchase_id_required"


class ConditionError(Unprocessable):
    """A condition tree that cannot be used; `path` points at the bad node (`$.all[1].value`)."""

    def __init__(self, path: str, message: str, **details: Any) -> None:
        super().__init__(ErrorCode.INVALID_CONDITION, f"{path}: {message}", path=path, **details)
        self.path = path


def invalid_campaign(path: str, message: str) -> Unprocessable:
    """The error of a campaign definition whose field at `path` (`$.action.times`) is bad."""
    return Unprocessable(ErrorCode.INVALID_CAMPAIGN, f"{path}: {message}", path=path)
