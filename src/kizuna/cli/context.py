"""What every command needs: the settings and the database they point at."""

from __future__ import annotations

from kizuna.core.settings import Settings, get_settings
from kizuna.db.database import Database


def database(settings: Settings | None = None) -> Database:
    """The database named by the settings (`KIZUNA_DATABASE_URL`)."""
    return Database((settings or get_settings()).database_url)
