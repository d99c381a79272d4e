"""Routers of `/v1`, one per area; each is thin: parse → service → schema."""
