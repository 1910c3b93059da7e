"""The group commit of writes (Database.write) on SQLite and PostgreSQL: concurrent writes share one
transaction, a failing write fails only its submitter, answers come after the COMMIT, and closing
writes what is still queued."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Connection, event, insert, select
from sqlmodel import Field, SQLModel

from services.common.db import Database


class BatchedItemRow(SQLModel, table=True):
    __tablename__ = "test_batched_items"

    id: str = Field(primary_key=True, max_length=64)
    value: int = 0


ITEMS = BatchedItemRow.__table__


@pytest.fixture
async def db(database_url: str):
    database = Database(database_url, [BatchedItemRow])
    await database.drop_tables()
    await database.create_tables()
    yield database
    await database.drop_tables()
    await database.close()


def add(item_id: str, value: int = 0):
    def write(conn: Connection) -> str:
        conn.execute(insert(ITEMS).values(id=item_id, value=value))
        return item_id

    return write


async def stored(db: Database) -> dict[str, int]:
    async with db.engine.connect() as conn:
        return dict((await conn.execute(select(ITEMS.c.id, ITEMS.c.value))).all())


async def test_concurrent_writes_share_one_transaction(db: Database) -> None:
    results = await asyncio.gather(*(db.write(add(f"item-{i}", i)) for i in range(50)))
    assert results == [f"item-{i}" for i in range(50)]
    assert db.writer.batches == 1 and db.writer.largest_batch == 50
    assert await stored(db) == {f"item-{i}": i for i in range(50)}
    await db.write(add("later"))  # a write alone is a batch of its own
    assert db.writer.batches == 2


async def test_a_failing_write_fails_only_its_submitter(db: Database) -> None:
    await db.write(add("taken"))

    def half_then_raise(conn: Connection) -> None:
        conn.execute(insert(ITEMS).values(id="half", value=1))
        raise ValueError("refused")

    outcomes = await asyncio.gather(db.write(add("first")), db.write(half_then_raise), db.write(add("taken")),
                                    db.write(add("last")), return_exceptions=True)
    assert outcomes[0] == "first" and outcomes[3] == "last"
    assert isinstance(outcomes[1], ValueError)
    assert "unique" in str(outcomes[2]).lower() or "duplicate" in str(outcomes[2]).lower()
    assert db.writer.largest_batch == 4
    # The failed writes' statements were rolled back to their savepoints; the others committed.
    assert set(await stored(db)) == {"taken", "first", "last"}


async def test_a_lone_failing_write_leaves_nothing(db: Database) -> None:
    def half_then_raise(conn: Connection) -> None:
        conn.execute(insert(ITEMS).values(id="half", value=1))
        raise ValueError("refused")

    with pytest.raises(ValueError):
        await db.write(half_then_raise)
    assert await stored(db) == {}
    assert await db.write(add("next")) == "next"


async def test_answers_come_after_the_commit(db: Database) -> None:
    happened: list[str] = []
    event.listen(db.writer.sync_engine, "commit", lambda conn: happened.append("commit"))

    async def submit(item_id: str) -> None:
        await db.write(add(item_id))
        happened.append(f"answered {item_id}")

    await asyncio.gather(submit("a"), submit("b"))
    assert happened == ["commit", "answered a", "answered b"]


async def test_a_failed_commit_fails_every_write_of_its_batch(db: Database) -> None:
    def refuse(conn) -> None:
        raise RuntimeError("disk full")

    event.listen(db.writer.sync_engine, "commit", refuse)
    outcomes = await asyncio.gather(db.write(add("a")), db.write(add("b")), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["disk full", "disk full"]
    event.remove(db.writer.sync_engine, "commit", refuse)
    assert await stored(db) == {}
    assert await db.write(add("c")) == "c"  # the writer recovers on a fresh connection
    assert set(await stored(db)) == {"c"}


async def test_close_writes_what_is_queued_and_a_later_write_reopens(db: Database) -> None:
    pending = [asyncio.create_task(db.write(add(f"item-{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # submitted, not yet written
    await asyncio.wait_for(db.close(), 10)
    assert all(task.done() and not task.exception() for task in pending)
    assert len(await stored(db)) == 20
    await db.write(add("after"))
    assert len(await stored(db)) == 21


calls: list[int] = []  # the item counts add_all was called with


def add_all(conn: Connection, items: list[tuple[str, int]]) -> list[str]:
    """A grouped write: every submitter's item in one INSERT."""
    calls.append(len(items))
    conn.execute(insert(ITEMS), [{"id": item_id, "value": value} for item_id, value in items])
    return [item_id for item_id, _ in items]


async def test_grouped_writes_share_one_statement_and_a_failing_item_fails_alone(db: Database) -> None:
    calls.clear()
    await db.write_grouped(add_all, ("taken", 0))
    outcomes = await asyncio.gather(*(db.write_grouped(add_all, (f"item-{i}", i)) for i in range(3)),
                                    db.write_grouped(add_all, ("taken", 9)), db.write(add("plain")),
                                    return_exceptions=True)
    assert outcomes[:3] == ["item-0", "item-1", "item-2"] and outcomes[4] == "plain"
    assert isinstance(outcomes[3], Exception)
    # One call for the lone first write; the group of four failed, then each of its items was written alone.
    assert calls == [1, 4, 1, 1, 1, 1]
    assert await stored(db) == {"taken": 0, "item-0": 0, "item-1": 1, "item-2": 2, "plain": 0}
    calls.clear()
    await asyncio.gather(*(db.write_grouped(add_all, (f"next-{i}", i)) for i in range(5)))
    assert calls == [5]
