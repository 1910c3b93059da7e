"""RowInsert (services/common/db.py) stores exactly what a Core insert of the same rows stores, on SQLite
and PostgreSQL: compared as the driver reads the stored rows back, column by column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Column, LargeBinary, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from services.common.db import Database, RowInsert

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class RowInsertItem(SQLModel, table=True):
    __tablename__ = "test_row_insert_items"

    id: str = Field(primary_key=True, max_length=64)
    name: str = ""
    count: int = 0
    big: int | None = Field(default=None, sa_type=BigInteger)
    flag: bool = False
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    items: list[Any] = Field(default_factory=list, sa_column=Column(JSON))
    blob: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    at: datetime | None = None


TABLE = RowInsertItem.__table__
COLUMNS = [column.name for column in TABLE.columns]
SHARED = {"shared": [1, 2, {"x": None}]}  # one object in many rows: serialized once, stored in each


def rows(prefix: str) -> list[tuple]:
    east = timezone(timedelta(hours=5, minutes=30))
    values = [
        dict(id="1", name="plain", count=1, big=2**40, flag=True, data={"b": 1, "a": [1, "x", None]}, items=[],
             blob=b"\x00\xffbytes", at=NOW),
        dict(id="2", name="", count=0, big=None, flag=False, data=None, items=[{"n": 1.5}], blob=None, at=None),
        dict(id="3", name="ünïcode ✓", count=-7, big=-1, flag=False, data={}, items=["é"], blob=b"",
             at=NOW.astimezone(east)),  # stored in UTC, as the Core insert stores it
        dict(id="4", name="shared", count=3, big=0, flag=True, data=SHARED, items=[SHARED], blob=b"s", at=NOW),
        dict(id="5", name="shared again", count=4, big=0, flag=True, data=SHARED, items=[], blob=b"s", at=NOW),
    ]
    return [tuple(prefix + v[c] if c == "id" else v[c] for c in COLUMNS) for v in values]


@pytest.fixture(params=["copy", "executemany"])
def copy_min_rows(request, monkeypatch) -> list[str]:
    """On PostgreSQL, both ways of inserting: COPY (from one row) and executemany; answers the COPYs made."""
    import asyncpg

    monkeypatch.setattr(RowInsert, "COPY_MIN_ROWS", 1 if request.param == "copy" else 10**9)
    copies: list[str] = []
    copy = asyncpg.Connection.copy_records_to_table

    async def counted(self, table_name, **kw):
        copies.append(table_name)
        return await copy(self, table_name, **kw)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", counted)
    return copies


@pytest.fixture
async def db(database_url: str, copy_min_rows):
    database = Database(database_url, [RowInsertItem])
    await database.drop_tables()
    await database.create_tables()
    yield database
    await database.drop_tables()
    await database.close()


async def test_it_stores_what_a_core_insert_stores(db: Database, copy_min_rows: list[str], request) -> None:
    inserter = RowInsert(TABLE, COLUMNS)

    def write(conn) -> None:
        conn.execute(insert(TABLE), [dict(zip(COLUMNS, row)) for row in rows("core-")])
        inserter.execute(conn, rows("fast-"))
        inserter.execute(conn, [])  # nothing

    await db.write(write)

    def raw(conn) -> dict[str, tuple]:  # as the driver answers: no SQLAlchemy result processing
        found = conn.exec_driver_sql(f"SELECT {', '.join(COLUMNS)} FROM test_row_insert_items").all()
        return {row[0]: tuple(row[1:]) for row in found}

    stored = await db.write(raw)
    assert len(stored) == 10
    copying = db.is_postgres and request.node.callspec.params["copy_min_rows"] == "copy"
    assert copy_min_rows == (["test_row_insert_items"] if copying else [])
    for n in "12345":
        assert stored["fast-" + n] == stored["core-" + n], n
    async with db.session() as session:  # and the model reads back what was given
        for row in rows("fast-"):
            item = await session.get(RowInsertItem, row[0])
            assert tuple(getattr(item, c) for c in COLUMNS) == row


def test_it_refuses_an_unknown_column() -> None:
    with pytest.raises(ValueError):
        RowInsert(TABLE, ["id", "nope"])


async def test_a_duplicate_key_is_an_integrity_error_and_fails_only_its_write(db: Database) -> None:
    inserter = RowInsert(TABLE, COLUMNS)
    await db.write(lambda conn: inserter.execute(conn, rows("a-")))

    def duplicate(conn) -> None:
        conn.execute(insert(TABLE).values(id="other"))  # the transaction has begun (PostgreSQL: COPY)
        inserter.execute(conn, rows("a-")[:1])

    with pytest.raises(IntegrityError):
        await db.write(duplicate)

    async def fine() -> None:
        await db.write(lambda conn: inserter.execute(conn, rows("b-")))

    import asyncio

    outcomes = await asyncio.gather(db.write(duplicate), fine(), return_exceptions=True)
    assert isinstance(outcomes[0], IntegrityError) and outcomes[1] is None
    count = await db.write(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM test_row_insert_items").scalar())
    assert count == 10  # a- and b-, nothing of the failed writes
