"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

`database` is parametrised by engine. PostgreSQL comes from `KIZUNA_TEST_DATABASE_URL` (default: the
local server); each test session creates its own fresh database there and drops it at the end, so
parallel runs never share state. Without a reachable server the PostgreSQL half is skipped — unless
`KIZUNA_REQUIRE_POSTGRES=1` (set by CI), which turns that skip into a failure.

`session` wraps a test in a transaction rolled back at the end (fast, isolated). Tests of
concurrency use `database` directly, commit for real, and get a fresh schema per test module.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from kizuna.db.database import Database, normalise_url
from kizuna.db.migrate import upgrade

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ENGINES = ["sqlite", "postgresql"]


def _require_postgres() -> bool:
    return os.environ.get("KIZUNA_REQUIRE_POSTGRES", "") not in ("", "0", "false")


def _pg_server_url() -> str:
    return normalise_url(os.environ.get("KIZUNA_TEST_DATABASE_URL", DEFAULT_PG))


def _create_pg_database() -> str | None:
    """A fresh database on the test server; None if the server cannot be reached."""
    server = make_url(_pg_server_url())
    name = f"kizuna_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if _require_postgres():
            raise RuntimeError(f"PostgreSQL is required but unreachable: {exc}") from exc
        return None
    finally:
        admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    admin.dispose()


def fresh_database_url(engine: str, tmp_dir: os.PathLike[str] | str) -> str:
    """A URL of a new, empty database of `engine` (skips when PostgreSQL is unavailable)."""
    if engine == "sqlite":
        return f"sqlite:///{tmp_dir}/kizuna-{uuid.uuid4().hex[:8]}.db"
    url = _create_pg_database()
    if url is None:
        pytest.skip("PostgreSQL not reachable (set KIZUNA_TEST_DATABASE_URL)")
    _CREATED.append(url)
    return url


_CREATED: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Clones first: a template cannot be dropped while it is being copied from.
    for url in reversed(_CREATED):
        _drop_pg_database(url)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test that needs PostgreSQL's row locks is only meaningful there.
    for item in items:
        if item.get_closest_marker("postgres_only") and "[sqlite" in item.nodeid:
            item.add_marker(pytest.mark.skip(reason="PostgreSQL only"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (`KIZUNA_REQUIRE_POSTGRES=1`) a skipped PostgreSQL test fails instead of passing."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if _require_postgres() and report.skipped and "postgresql" in item.nodeid:
        report.outcome = "failed"
        report.longrepr = f"PostgreSQL test skipped while PostgreSQL is required: {report.longrepr}"


_TEMPLATES: dict[str, str] = {}


def _template(engine: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of `engine` migrated once per test process, the template of every other."""
    if engine not in _TEMPLATES:
        url = fresh_database_url(engine, tmp_path_factory.mktemp("template"))
        upgrade(url)
        _TEMPLATES[engine] = url
    return _TEMPLATES[engine]


def _clone(engine: str, template: str, tmp_dir: os.PathLike[str] | str) -> str:
    """A new database with the template's schema: a file copy, or CREATE DATABASE … TEMPLATE."""
    if engine == "sqlite":
        target = f"{tmp_dir}/kizuna-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(str(make_url(template).database), target)
        return f"sqlite:///{target}"
    source = make_url(template)
    name = f"kizuna_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(source.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source.database}"'))
    admin.dispose()
    url = source.set(database=name).render_as_string(hide_password=False)
    _CREATED.append(url)
    return url


def _module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    engine = request.param
    url = _clone(engine, _template(engine, tmp_path_factory), tmp_path_factory.mktemp("db"))
    db = Database(url)
    yield db
    db.dispose()


@pytest.fixture(scope="module", params=ENGINES)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A migrated database of each engine, its own for each test module (no data leaks between
    modules whose tests commit)."""
    yield from _module_database(request, tmp_path_factory)


@pytest.fixture(scope="module", params=ENGINES)
def fresh_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """Another migrated database of each engine for one module whose tests commit."""
    yield from _module_database(request, tmp_path_factory)


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    connection = database.engine.connect()
    outer = connection.begin()
    db_session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield db_session
    db_session.close()
    outer.rollback()
    connection.close()
