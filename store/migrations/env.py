from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from store.database import create_engine
from store.schema import metadata
from store.types import render_item

config = context.config


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no sqlalchemy.url: run migrations through store.migrate")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()  # also after a failed migration: no connection left open on the database


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite batch migrations rebuild a table (copy, drop, rename): with foreign keys enforced
        # the DROP fails once other tables reference it. Off for the migration (only outside a
        # transaction does the pragma take effect), checked before the commit, on again after.
        _sqlite_pragma(connection, "foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
        render_item=render_item,
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                raise RuntimeError("the migration left rows whose foreign keys point nowhere; rolled back")
    finally:
        if sqlite:
            _sqlite_pragma(connection, "foreign_keys=ON")


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    """On the driver's own connection, outside SQLAlchemy's transaction handling."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the migration's database connection is closed")
    driver.execute(f"PRAGMA {pragma}")


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
