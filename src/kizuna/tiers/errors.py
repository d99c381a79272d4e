"""Errors of ranks: each code is stable, the API's problem `type`."""

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_TIERS = "invalid_tiers"
    RANK_POLICY_NOT_FOUND = "rank_policy_not_found"
    TIER_NOT_FOUND = "tier_not_found"
