"""Named sequences: numbers unique across a service, increasing, never reused (the numeric ids of
runs, devices, jobs, job invocations and schedules that some surfaces show).

Each service keeps its counters in a table of its own (table names are unique across services): a
model with a `name` primary key and a `value`. `reserve` takes a block of numbers in the caller's
transaction: its UPDATE holds the counter row's lock until that transaction ends (SQLite: the write
lock), so concurrent reservations get disjoint blocks. The row is created by the first reservation.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlmodel import SQLModel


def reserve(session: Session | Connection, counters: type[SQLModel], name: str, count: int) -> int:
    """Reserves `count` numbers of sequence `name` in the transaction of the session (or connection);
    answers the highest.

    Synchronous; from an AsyncSession: `await session.run_sync(reserve, counters, name, count)`; in a
    write of `Database.write`, on its Connection."""
    table: Any = counters.__table__  # type: ignore[attr-defined]
    bump = update(table).where(table.c.name == name).values(value=table.c.value + count).returning(table.c.value)
    last = session.execute(bump).scalar()
    if last is None:
        dialect = session.dialect if isinstance(session, Connection) else session.get_bind().dialect
        insert_: Any = pg_insert if dialect.name == "postgresql" else sqlite_insert
        session.execute(insert_(table).values(name=name, value=0).on_conflict_do_nothing())
        last = session.execute(bump).scalar()
    return int(last)
