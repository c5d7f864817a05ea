"""The database engine: SQLAlchemy 2 async, SQLite (aiosqlite) by default, PostgreSQL (asyncpg) by URL."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table; domains define their models on it."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout so concurrent writers wait, not fail."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30}, json_serializer=json.dumps, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 5)
    kwargs.setdefault("pool_pre_ping", True)
    if _loopback_host(url) and "ssl" not in url:
        # asyncpg's default `ssl=prefer` builds an SSL context for every new connection; on loopback it is waste.
        kwargs.setdefault("connect_args", {"ssl": False})
    return create_async_engine(url, **kwargs)


def _loopback_host(url: str) -> bool:
    from sqlalchemy.engine import make_url

    return make_url(url).host in ("127.0.0.1", "localhost", "::1")


class Database:
    """Holds the engine and hands out sessions; one per process."""

    def __init__(self, url: str, *, pool_size: int | None = None, max_overflow: int | None = None, **engine_kwargs: Any) -> None:
        self.url = url
        if not is_sqlite(url):
            if pool_size is not None:
                engine_kwargs["pool_size"] = pool_size
            if max_overflow is not None:
                engine_kwargs["max_overflow"] = max_overflow
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; call `commit()` yourself for writes, or use `transaction()`."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error. Rows read with
        `with_for_update` stay locked until it ends (on SQLite the whole database is write-locked from the start)."""
        async with self.sessions() as session, session.begin():
            if self.dialect == "sqlite":
                # SQLite ignores SELECT ... FOR UPDATE: take the write lock up front instead, so a read-then-write
                # here is as safe as with PostgreSQL's row locks.
                await session.execute(text("BEGIN IMMEDIATE"))
            yield session

    async def ping(self) -> None:
        """Raise if the database cannot answer `SELECT 1`."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
