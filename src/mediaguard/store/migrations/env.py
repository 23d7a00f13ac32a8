"""Alembic environment: run by ``Store.upgrade`` (engine passed in) or the ``alembic`` CLI."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from mediaguard.store.db import begin_migration, create_engine, end_migration
from mediaguard.store.models import metadata, outside_models

config = context.config
if config.config_file_name is not None:  # the alembic CLI; Store.upgrade leaves logging alone
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    if os.environ.get("MEDIAGUARD_DATABASE_URL"):
        return os.environ["MEDIAGUARD_DATABASE_URL"]
    from mediaguard.config import load_settings

    return load_settings().database_url


def _modelled(_object: object, name: str | None, type_: str, *_: object) -> bool:
    return not outside_models(name, type_)


def run_offline() -> None:
    context.configure(url=_database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = config.attributes.get("engine")
    owned = engine is None
    if engine is None:
        engine = create_engine(_database_url())
    try:
        with engine.connect() as connection:
            begin_migration(connection)
            # The transaction is ours, so Alembic runs inside it and every migration commits
            # or rolls back together, on SQLite too.
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=True,
                include_object=_modelled,
            )
            with context.begin_transaction():
                context.run_migrations()
            end_migration(connection)
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
