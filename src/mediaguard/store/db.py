"""Engines with the per-backend settings mediaguard relies on, and the migration runner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Any constant works; it only has to be the same in every process migrating one database.
_PG_MIGRATION_LOCK = 0x6D67_6D69_6772  # "mgmigr"
BUSY_TIMEOUT_MS = 5000
# A migration may rebuild tables; processes starting together wait for it rather than fail.
MIGRATION_BUSY_TIMEOUT_MS = 120_000
# Alembic's ``context`` is module-global state, so one process migrates one database at a time.
_ALEMBIC_LOCK = threading.Lock()


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_engine(database_url: str | sa.URL) -> sa.Engine:
    """An engine for ``database_url``: SQLite gets WAL, a busy timeout and foreign keys on every
    connection; PostgreSQL gets pre-ping so connections dropped by a restart are replaced."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def reader(engine: sa.Engine) -> sa.Engine:
    """The engine to run single reads on: on PostgreSQL in autocommit, which saves the BEGIN and
    ROLLBACK round trips around every lookup; SQLite opens no transaction for a read anyway."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first, so that switching a new file to WAL waits for other processes.
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


@contextmanager
def serialised(engine: sa.Engine, key: str) -> Iterator[sa.Connection]:
    """A transaction that runs alone among those serialised on ``key``, for a check followed by
    a write (a rate limit, a lock): SQLite takes its write lock up front with ``BEGIN
    IMMEDIATE``; PostgreSQL takes a transaction-level advisory lock on the key's hash."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def begin_migration(connection: sa.Connection) -> None:
    """Open the migration transaction holding a lock that serialises concurrent migrators.

    Two processes starting at once must not both create the tables: on SQLite ``BEGIN
    IMMEDIATE`` takes the write lock up front; on PostgreSQL a transaction-level advisory lock
    does the same. The caller commits.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {MIGRATION_BUSY_TIMEOUT_MS}")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))


def end_migration(connection: sa.Connection) -> None:
    """Commit, and give the connection back its usual busy timeout."""
    connection.commit()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def alembic_config(engine: sa.Engine | None = None, database_url: str | None = None) -> Config:
    """An Alembic config built in code: the scripts ship inside the package, no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        config.attributes["engine"] = engine
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(engine), revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
