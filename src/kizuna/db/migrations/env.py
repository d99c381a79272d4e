"""Alembic environment: one metadata, batch mode so that SQLite can alter tables."""

from alembic import context
from sqlalchemy import pool

from kizuna.db.database import make_engine
from kizuna.db.registry import metadata

config = context.config


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
