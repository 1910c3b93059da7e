"""The additive schema migrator (Database.create_tables) on SQLite and PostgreSQL: a database made by
an older release keeps its rows and gains the new tables, columns and indexes; nothing is dropped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, UniqueConstraint, inspect, text
from sqlmodel import Field, SQLModel, select

from services.auth.store import TABLES as AUTH_TABLES
from services.common.db import Database


class MigrationWidgetRow(SQLModel, table=True):
    """Release 2 of a table whose release 1 had only id, tenant_id, name and legacy."""

    __tablename__ = "test_migration_widgets"
    __table_args__ = (
        Index("ix_test_migration_widgets_name", "name"),
        UniqueConstraint("tenant_id", "name", name="uq_test_migration_widgets"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    name: str = Field(max_length=128)
    legacy: int = 0
    # Added in release 2:
    count: int = 7
    enabled: bool = True
    label: str = Field(default="none", max_length=32)
    note: str | None = Field(default=None, max_length=64)
    stamped_at: datetime | None = None
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    required_later: str = Field(max_length=16)  # no default: added as a nullable column


class MigrationExtraRow(SQLModel, table=True):
    """A table release 1 did not have at all."""

    __tablename__ = "test_migration_extras"
    id: str = Field(primary_key=True, max_length=64)


NEW = [MigrationWidgetRow, MigrationExtraRow]


def release_one() -> Table:
    return Table("test_migration_widgets", MetaData(),
                 Column("id", String(64), primary_key=True), Column("tenant_id", String(64), nullable=False),
                 Column("name", String(128), nullable=False), Column("legacy", Integer, nullable=False),
                 Column("gone_in_release_two", String(16)))


async def reset(db: Database) -> None:
    async with db.engine.begin() as conn:
        for name in ("test_migration_widgets", "test_migration_extras"):
            await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


async def create_release_one(url: str) -> None:
    db = Database(url, [])
    await reset(db)
    old = release_one()
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda sync: old.metadata.create_all(sync))
        await conn.execute(old.insert(), [
            {"id": "w1", "tenant_id": "t1", "name": "first", "legacy": 1, "gone_in_release_two": "kept"},
            {"id": "w2", "tenant_id": "t1", "name": "second", "legacy": 2, "gone_in_release_two": None},
        ])
    await db.close()


def schema(sync) -> dict[str, Any]:
    inspector = inspect(sync)
    return {
        "tables": set(inspector.get_table_names()),
        "columns": {c["name"]: c for c in inspector.get_columns("test_migration_widgets")},
        "indexes": {i["name"]: i for i in inspector.get_indexes("test_migration_widgets")}
        | {u["name"]: u for u in inspector.get_unique_constraints("test_migration_widgets")},
    }


async def test_an_older_table_keeps_its_rows_and_gains_columns_and_indexes(database_url: str) -> None:
    await create_release_one(database_url)
    db = Database(database_url, NEW)
    try:
        changes = await db.create_tables()
        assert set(changes) == {
            "create table test_migration_extras",
            *(f"add column test_migration_widgets.{name}" for name in
              ("count", "enabled", "label", "note", "stamped_at", "settings", "required_later")),
            "create index ix_test_migration_widgets_name",
            "create unique index uq_test_migration_widgets",
        }
        async with db.engine.connect() as conn:
            found = await conn.run_sync(schema)
        assert {"test_migration_widgets", "test_migration_extras"} <= found["tables"]
        assert "gone_in_release_two" in found["columns"]  # never dropped
        assert found["columns"]["required_later"]["nullable"]
        assert not found["columns"]["count"]["nullable"]  # NOT NULL with its default
        assert {"ix_test_migration_widgets_name", "uq_test_migration_widgets"} <= set(found["indexes"])

        async with db.session() as session:
            rows = {row.id: row for row in (await session.exec(select(MigrationWidgetRow))).all()}
        assert set(rows) == {"w1", "w2"}
        first = rows["w1"]
        assert (first.name, first.legacy, first.count, first.enabled, first.label, first.note,
                first.stamped_at, first.settings, first.required_later) == (
            "first", 1, 7, True, "none", None, None, {}, None)

        # New rows round-trip; the new unique index is enforced.
        async with db.session() as session:
            session.add(MigrationWidgetRow(id="w3", tenant_id="t1", name="third", required_later="x",
                                           stamped_at=datetime(2026, 1, 1, tzinfo=UTC), settings={"a": 1}))
        async with db.session() as session:
            third = (await session.exec(select(MigrationWidgetRow).where(MigrationWidgetRow.id == "w3"))).one()
        assert third.settings == {"a": 1} and third.count == 7
        try:
            async with db.session() as session:
                session.add(MigrationWidgetRow(id="w4", tenant_id="t1", name="third", required_later="y"))
        except Exception as error:  # IntegrityError
            assert "unique" in str(error).lower() or "duplicate" in str(error).lower()
        else:
            raise AssertionError("the added unique index was not enforced")

        assert await db.create_tables() == []  # idempotent
    finally:
        await reset(db)
        await db.close()


async def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    await create_release_one(database_url)
    replicas = [Database(database_url, NEW) for _ in range(3)]
    try:
        results = await asyncio.gather(*(db.create_tables() for db in replicas))
        assert sorted(len(changes) for changes in results) == [0, 0, 10]
        async with replicas[0].session() as session:
            assert len((await session.exec(select(MigrationWidgetRow))).all()) == 2
    finally:
        await reset(replicas[0])
        for db in replicas:
            await db.close()


async def test_auth_keys_from_the_first_release_gain_the_later_columns(database_url: str) -> None:
    """What AuthStore.upgrade did by hand before there was a migrator."""
    db = Database(database_url, AUTH_TABLES)
    try:
        await db.create_tables()
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO auth_api_keys (id, tenant_id, project_id, user_id, name, prefix, key_hash, scopes,"
                " created_at) VALUES ('k1', 't1', 'p1', 'u1', 'old', 'jl_live_ab', 'h1', 'READ', CURRENT_TIMESTAMP)"))
            await conn.execute(text("DROP INDEX IF EXISTS ix_auth_api_keys_tenant"))
            for column in ("kind", "subject_type", "replaced_by_key_id", "grace_expires_at"):
                await conn.execute(text(f"ALTER TABLE auth_api_keys DROP COLUMN {column}"))
        changes = await db.create_tables()
        assert set(changes) == {"add column auth_api_keys.kind", "add column auth_api_keys.subject_type",
                                "add column auth_api_keys.replaced_by_key_id",
                                "add column auth_api_keys.grace_expires_at", "create index ix_auth_api_keys_tenant"}
        async with db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT name, kind, grace_expires_at FROM auth_api_keys"))).one()
        assert tuple(row) == ("old", None, None)
    finally:
        await db.drop_tables()
        await db.close()
