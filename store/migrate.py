"""Alembic, driven from code: ``parcelhook migrate`` and the test fixtures call ``upgrade``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from store.vault import Vault

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str, *, vault: Vault | None = None) -> Config:
    """``vault``: for migrations that convert stored secrets (0004); not needed on an empty database."""
    cfg = Config(attributes={"vault": vault})
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", *, vault: Vault | None = None) -> None:
    command.upgrade(alembic_config(url, vault=vault), revision)
    _checkpoint(url)


def _checkpoint(url: str) -> None:
    """SQLite: copy what the migration wrote from the WAL into the database file now and empty the
    WAL, so values a migration replaced (0004: plain secrets; their pages are zeroed with
    ``secure_delete``) do not linger in either file. Best effort while other processes read."""
    if not url.startswith("sqlite"):
        return
    from store.database import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    finally:
        engine.dispose()


def downgrade(url: str, revision: str, *, vault: Vault | None = None) -> None:
    command.downgrade(alembic_config(url, vault=vault), revision)
