"""Migrations up and down on SQLite and on the real PostgreSQL server; the models match the migrated schema."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from conftest import wait_for
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


async def test_concurrent_upgrades_on_postgres_take_turns(postgres_url: str) -> None:
    """Several processes starting at once with `migrate_on_start`: each upgrade waits for the one before (an
    advisory lock), then finds the schema at head, instead of failing on tables the other just created."""
    dbs = [Database(postgres_url) for _ in range(4)]
    try:
        await asyncio.wait_for(asyncio.gather(*(migrate.upgrade(db) for db in dbs)), 60)
        for db in dbs:
            assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        for db in dbs:
            await db.dispose()


async def test_an_upgrade_waits_while_another_session_changes_the_schema(postgres_url: str) -> None:
    """The lock is PostgreSQL's, so it holds across processes: here another session holds it by hand."""
    import asyncpg

    other = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    db = Database(postgres_url)
    try:
        await other.execute("SELECT pg_advisory_lock($1)", migrate.MIGRATION_LOCK_KEY)
        upgrading = asyncio.create_task(migrate.upgrade(db))
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        await wait_for(lambda: other.fetchval(waiting))
        assert not upgrading.done()
        assert await migrate.current_revision(db) is None, "nothing changed while the other session holds the lock"

        await other.execute("SELECT pg_advisory_unlock($1)", migrate.MIGRATION_LOCK_KEY)
        await asyncio.wait_for(upgrading, 60)
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await other.close()
        await db.dispose()
