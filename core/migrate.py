"""Schema migrations (Alembic) run from code: on start-up in the embedded mode, or from the CLI in production.

On PostgreSQL every upgrade and downgrade first takes a transaction-level advisory lock, so processes that start
at the same time take turns: the second finds the schema already at head instead of failing halfway through.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: The `pg_advisory_xact_lock` key that schema changes hold (any fixed 64-bit number: b"therapy" read as one).
MIGRATION_LOCK_KEY = int.from_bytes(b"therapy", "big")


async def take_migration_lock(conn: AsyncConnection) -> None:
    """On PostgreSQL, wait until no other session is changing the schema; held until `conn`'s transaction ends.
    Taken before Alembic starts, so Alembic only ever sees the schema as the previous change left it."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def alembic_config(url: str = "") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(db: Database, revision: str = "head") -> None:
    def run(conn: Connection) -> None:
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await take_migration_lock(conn)
        await conn.run_sync(run)


async def downgrade(db: Database, revision: str) -> None:
    def run(conn: Connection) -> None:
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await take_migration_lock(conn)
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
