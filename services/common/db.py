"""The database engine: SQLite (WAL) files by default, PostgreSQL given a URL, and the one additive
schema migrator every service runs at start (`Database.create_tables`)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, UniqueConstraint, event, inspect, literal, text
from sqlalchemy.exc import CompileError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.schema import CreateColumn, DefaultClause
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """Maps a plain database URL to the async driver SQLAlchemy should use."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def create_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - driver callback
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _model_default(model: type[SQLModel] | None, column: Column) -> tuple[bool, Any]:
    """The constant a new row of `model` gets in `column`, if it has one: the column's scalar default,
    else the model field's default, else a default factory that answers the same value every time
    (`dict`, `list`; never a uuid or a clock)."""
    if column.default is not None and getattr(column.default, "is_scalar", False):
        return True, column.default.arg
    if model is None:
        return False, None
    mapped = inspect(model).columns  # by attribute name
    for name, info in model.model_fields.items():
        if name not in mapped or mapped[name] is not column:
            continue
        if info.default_factory is not None:
            first, second = info.default_factory(), info.default_factory()  # type: ignore[call-arg]
            return (True, first) if first == second else (False, None)
        if info.is_required() or info.default is None:
            return False, None
        return True, info.default
    return False, None


def _literal(conn: Connection, column: Column, value: Any) -> str | None:
    """`value` as a SQL literal of the column's type (JSON values as their text), or None if it has none."""
    try:
        if isinstance(value, (dict, list)):
            return str(literal(json.dumps(value)).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        return str(literal(value, column.type).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    except (CompileError, NotImplementedError, TypeError, ValueError):
        return None


def _added_column_ddl(conn: Connection, table: Table, column: Column, model: type[SQLModel] | None) -> str:
    """`ALTER TABLE ... ADD COLUMN` for a column an existing table lacks: with the model's default as its
    server default (so existing rows get it), else nullable (existing rows hold NULL)."""
    if column.primary_key:
        raise RuntimeError(f"cannot add primary key column {table.name}.{column.name} to an existing table")
    spec = column._copy()
    if spec.server_default is None:
        has_default, value = _model_default(model, column)
        sql = _literal(conn, column, value) if has_default and value is not None else None
        if sql is not None:
            spec.server_default = DefaultClause(text(sql))
        else:
            spec.nullable = True
    spec.unique = None
    spec.index = None
    Table(table.name, MetaData(), spec)
    preparer = conn.dialect.identifier_preparer
    return f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {CreateColumn(spec).compile(dialect=conn.dialect)}"


def migrate(conn: Connection, tables: Sequence[Table], models: dict[str, type[SQLModel]] | None = None) -> list[str]:
    """Brings the database up to `tables`, additively: creates missing tables (with their indexes),
    adds missing columns and missing indexes / unique constraints (as unique indexes) to existing
    tables. Never drops, renames or retypes anything. Idempotent; answers what it did."""
    models = models or {}
    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    done: list[str] = []
    missing = [table for table in tables if table.name not in present]
    if missing:
        SQLModel.metadata.create_all(conn, tables=missing, checkfirst=True)
        done += [f"create table {table.name}" for table in missing]
    preparer = conn.dialect.identifier_preparer
    for table in tables:
        if table.name not in present:
            continue
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in columns:
                continue
            try:
                conn.execute(text(_added_column_ddl(conn, table, column, models.get(table.name))))
            except OperationalError as error:  # another SQLite process added it first
                if "duplicate column" not in str(error).lower():
                    raise
            done.append(f"add column {table.name}.{column.name}")
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        indexes |= {constraint["name"] for constraint in inspector.get_unique_constraints(table.name)}
        for index in table.indexes:
            only = index._ddl_if.dialect if index._ddl_if is not None else None  # e.g. a GIN index: PostgreSQL only
            if index.name not in indexes and (only is None or only == conn.dialect.name):
                index.create(conn, checkfirst=True)
                done.append(f"create index {index.name}")
        for constraint in table.constraints:
            if not isinstance(constraint, UniqueConstraint) or constraint.name is None or constraint.name in indexes:
                continue
            cols = ", ".join(preparer.quote(column.name) for column in constraint.columns)
            conn.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS {preparer.quote(constraint.name)} "
                              f"ON {preparer.format_table(table)} ({cols})"))
            done.append(f"create unique index {constraint.name}")
    for change in done:
        log.info("schema: %s", change)
    return done


class Database:
    """One service's database: its engine, its tables and a session factory."""

    def __init__(self, url: str, tables: Sequence[type[SQLModel]]) -> None:
        self.engine = create_engine(url)
        self.tables: list[Table] = [model.__table__ for model in tables]  # type: ignore[attr-defined]
        self.models: dict[str, type[SQLModel]] = {model.__tablename__: model for model in tables}  # type: ignore[misc]
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.engine)

    async def create_tables(self) -> list[str]:
        """Creates or additively migrates this service's tables (see `migrate`); answers what changed.
        It runs in one transaction: on PostgreSQL under an advisory lock, so replicas starting together
        take turns; on SQLite under the database's write lock (BEGIN IMMEDIATE)."""
        async with self.engine.begin() as conn:
            if self.is_postgres:
                await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('jobline.create_tables'))"))
            else:  # SQLite: take the write lock first, so the DDL is one transaction and processes take turns
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            return await conn.run_sync(lambda sync: migrate(sync, self.tables, self.models))

    async def drop_tables(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(lambda sync: SQLModel.metadata.drop_all(sync, tables=self.tables))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends without error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
