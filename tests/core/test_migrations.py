"""Migrations up and down on SQLite and on the real PostgreSQL server; the models match the migrated schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from core import migrate
from core.db import Base, Database
from migrations import load_models


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        assert {"users", "auth_tokens", "therapist_profiles", "client_profiles", "outbox", "audit_events"} <= await table_names(db)

        await migrate.downgrade(db, "base")
        assert await migrate.current_revision(db) is None
        assert await table_names(db) <= {"alembic_version"}

        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.dispose()


async def test_models_and_migrations_agree(database_url: str) -> None:
    """A model change without a migration fails here."""
    load_models()
    db = Database(database_url)
    try:
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
            )
        assert diff == []
    finally:
        await db.dispose()
