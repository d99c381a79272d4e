"""Every area's migrations: they go up, down and up again on both engines, and the schema they
build is exactly the one the models describe (so no table, column, index or constraint is missing
from a migration or left over in one)."""

from __future__ import annotations

import pprint

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from kizuna.db.database import make_engine
from kizuna.db.migrate import downgrade, upgrade
from kizuna.db.registry import metadata
from tests.conftest import ENGINES, fresh_database_url


def schema_differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_as_batch": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("engine", ENGINES)
def test_migrations_go_up_down_and_up_again_and_match_the_models(engine, tmp_path):
    url = fresh_database_url(engine, tmp_path)

    upgrade(url)
    assert tables(url) == set(metadata.tables)

    downgrade(url, "base")
    assert tables(url) == set(), "downgrade to base left tables behind"

    upgrade(url)
    differences = schema_differences(url)
    assert not differences, (
        "the migrated schema differs from the models (add or fix a migration):\n"
        + pprint.pformat(differences, width=100)
    )
