"""The REST API `/v1` (FastAPI; routers are thin)."""
