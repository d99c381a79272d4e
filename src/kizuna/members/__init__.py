"""Members and the identifiers that find them (統一ID)."""
