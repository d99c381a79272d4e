"""Errors of webhook endpoints and deliveries."""

from enum import StrEnum


class ErrorCode(StrEnum):
    ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    DELIVERY_NOT_FOUND = "webhook_delivery_not_found"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    INVALID_URL = "invalid_webhook_url"
