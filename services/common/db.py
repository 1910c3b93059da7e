"""The database engine: SQLite (WAL) files by default, PostgreSQL given a URL, the one additive
schema migrator every service runs at start (`Database.create_tables`), and the group commit of
writes (`WriteBatcher`, `Database.write`)."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (Column, Connection, Dialect, Engine, MetaData, Table, UniqueConstraint, event, insert, inspect,
                        literal, text)
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import CompileError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateColumn, DefaultClause
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

T = TypeVar("T")
# A write: runs on the writer's sync Connection, inside the batch's transaction; answers its result.
Write = Callable[[Connection], Any]
# A grouped write: the items of every submitter of a batch that named it, written at once; answers one
# result per item, in order.
GroupWrite = Callable[[Connection, list[Any]], list[Any]]
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=30000")


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
            _apply_pragmas(dbapi_connection)

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _apply_pragmas(dbapi_connection: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def sqlite_writer_engine(url: str) -> Engine:
    """The plain (pysqlite) engine of a SQLite database's one writer connection. The driver's own
    transaction handling is off, so SAVEPOINTs work; each transaction starts with BEGIN IMMEDIATE
    (it takes the write lock at once: never a failed upgrade from a read lock)."""
    engine = create_sync_engine(make_url(url).set(drivername="sqlite"), poolclass=NullPool,
                                connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # pragma: no cover - driver callback
        dbapi_connection.isolation_level = None
        _apply_pragmas(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:  # pragma: no cover - driver callback
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


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


class RowInsert:
    """An INSERT of many whole rows given as plain tuples (values in `columns` order), for hot bulk paths.

    It stores what `conn.execute(insert(table), [dict, ...])` stores: the statement is that Core insert,
    compiled once per dialect, and each value goes through its column type's bind processor (the same
    processors, e.g. JSON serialization, UTC datetimes, SQLite's datetime text). What it saves is
    SQLAlchemy's per-row parameter building (a dict per row, every bind name looked up and processed
    one by one). A processed value that several rows share (the same object) is processed once per
    call; a None is left alone by a processor that maps None to None. Then one executemany."""

    COPY_MIN_ROWS = 50  # fewer go in an executemany: COPY takes one more round trip

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        unknown = [name for name in self.columns if name not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column {unknown[0]!r}")
        self._plans: weakref.WeakKeyDictionary[Dialect, tuple[str, tuple]] = weakref.WeakKeyDictionary()

    def _plan(self, dialect: Dialect) -> tuple[str, Callable[[Sequence[Sequence[Any]]], list[tuple]]]:
        plan = self._plans.get(dialect)
        if plan is None:
            compiled = insert(self.table).compile(dialect=dialect, column_keys=list(self.columns))
            order = compiled.positiontup or []
            if [compiled.binds[name].key for name in order] != list(self.columns):  # pragma: no cover - a new dialect
                raise RuntimeError(f"the INSERT into {self.table.name} binds {order}, not {self.columns}")
            processors = []
            for index, name in enumerate(self.columns):
                type_ = self.table.c[name].type
                process = type_.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((index, process, process(None) is None))
            plan = self._plans[dialect] = (compiled.string, _binder(len(self.columns), processors))
        return plan

    def bind(self, dialect: Dialect, rows: Sequence[Sequence[Any]]) -> tuple[str, list[tuple]]:
        """The statement and the driver's parameters for `rows`."""
        sql, binder = self._plan(dialect)
        return sql, binder(rows)

    def execute(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Inserts `rows` in the connection's transaction (nothing for no rows). On PostgreSQL (asyncpg),
        COPY_MIN_ROWS rows or more, inside a transaction that has begun, with COPY (binary): the same
        values through the same codecs, a unique violation an IntegrityError as from the INSERT."""
        if not rows:
            return
        sql, parameters = self.bind(conn.dialect, rows)
        many = len(parameters) >= self.COPY_MIN_ROWS and conn.dialect.driver == "asyncpg"
        driver = conn.connection.driver_connection if many else None
        if driver is None or not driver.is_in_transaction():
            conn.exec_driver_sql(sql, parameters)
            return
        import asyncpg
        from sqlalchemy.exc import IntegrityError
        from sqlalchemy.util import await_only

        try:
            await_only(driver.copy_records_to_table(self.table.name, schema_name=self.table.schema,
                                                    columns=self.columns, records=parameters))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise IntegrityError(f"COPY {self.table.name}", None, error) from error


def _binder(width: int, processors: Sequence[tuple[int, Callable[[Any], Any], bool]]
            ) -> Callable[[Sequence[Sequence[Any]]], list[tuple]]:
    """The function that binds rows of `width` values: each value of a column with a processor goes
    through it, once per distinct object of a call (id -> (object, processed): holding the object keeps
    its id from being reused), not at all for None when the processor maps None to None. Generated as
    straight-line code (a loop over the processors cost more than the processing)."""
    if not processors:
        return lambda rows: [tuple(row) for row in rows]
    lines = ["def bind(rows):"]
    lines += [f"    m{k} = {{}}" for k in range(len(processors))]
    lines += ["    bound = []", "    append = bound.append", "    for r in rows:"]
    values = [f"r[{i}]" for i in range(width)]
    for k, (index, _process, keeps_none) in enumerate(processors):
        body = [f"v{k} = r[{index}]", f"if v{k} is not None:" if keeps_none else "if True:",
                f"    h = m{k}.get(id(v{k}))", "    if h is None:", f"        h = m{k}[id(v{k})] = (v{k}, p{k}(v{k}))",
                f"    v{k} = h[1]"]
        lines += ["        " + line for line in body]
        values[index] = f"v{k}"
    lines.append(f"        append(({', '.join(values)},))")
    lines.append("    return bound")
    scope: dict[str, Any] = {f"p{k}": process for k, (_i, process, _n) in enumerate(processors)}
    exec(compile("\n".join(lines), "<RowInsert binder>", "exec"), scope)  # noqa: S102 - code made here only
    return scope["bind"]


@dataclass(frozen=True)
class _Failed:
    """A write's outcome when it raised: its error, for its submitter."""

    error: BaseException


@dataclass
class _Submitted:
    handler: GroupWrite
    item: Any
    future: asyncio.Future = field(repr=False)


def each(conn: Connection, writes: list[Write]) -> list[Any]:
    """The grouped write of plain writes: one after the other."""
    return [write(conn) for write in writes]


def apply_batch(conn: Connection, batch: Sequence[tuple[GroupWrite, Any]]) -> list[Any]:
    """Writes a batch of (handler, item) in one transaction and commits it; answers each item's result
    or `_Failed`.

    The items of one handler are written by one call of it, in a SAVEPOINT (a lone item of a lone
    handler needs none: its failure rolls back the transaction). When that call fails, its group is
    rolled back and each of its items is written alone, in a savepoint of its own: only the items that
    fail again fail, for their submitters. An error of the transaction itself (BEGIN, COMMIT) is
    raised: then nothing of the batch was committed."""
    groups: dict[GroupWrite, list[int]] = {}
    for index, (handler, _item) in enumerate(batch):
        groups.setdefault(handler, []).append(index)
    outcomes: list[Any] = [None] * len(batch)
    with conn.begin() as transaction:
        if len(batch) == 1:
            handler, item = batch[0]
            try:
                return _results(handler(conn, [item]), 1)
            except Exception as error:  # noqa: BLE001 - any error is the submitter's
                transaction.rollback()
                return [_Failed(error)]
        for handler, indexes in groups.items():
            try:
                with conn.begin_nested():
                    results = _results(handler(conn, [batch[i][1] for i in indexes]), len(indexes))
            except Exception as error:  # noqa: BLE001 - one item's, or the group's: each alone tells
                results = [_Failed(error)] if len(indexes) == 1 else \
                    [_alone(conn, handler, batch[i][1]) for i in indexes]
            for index, result in zip(indexes, results):
                outcomes[index] = result
    return outcomes


def _alone(conn: Connection, handler: GroupWrite, item: Any) -> Any:
    try:
        with conn.begin_nested():
            return _results(handler(conn, [item]), 1)[0]
    except Exception as error:  # noqa: BLE001 - any error is the submitter's
        return _Failed(error)


def _results(results: list[Any], count: int) -> list[Any]:
    if len(results) != count:
        raise RuntimeError(f"a grouped write answered {len(results)} results for {count} items")
    return results


class WriteBatcher:
    """Group commit of one database's writes. A write is a sync function of a SQLAlchemy Connection
    (`write`), or an item for a grouped write (`write_grouped`: a handler that writes every item its
    submitters gave in one go, e.g. one INSERT for the runs of every trigger of the batch). Every write
    submitted while a batch is being written goes into the next batch: one transaction, one COMMIT (see
    `apply_batch` for how a failing write is isolated). Submitters are answered only after the COMMIT;
    when it fails, every write of its batch fails with its error.

    SQLite: one writer connection (pysqlite) on a thread of its own, so writers never wait on each
    other's write lock and the event loop never blocks; readers keep the async engine. PostgreSQL: one
    connection of the async engine, held while the database is open (writes run in `run_sync`). So a
    write may run on another thread than its submitter's: it touches its connection and its own values,
    never the event loop. A broken connection fails its batch; the next batch opens a new one."""

    MAX_BATCH = 1000  # writes in one transaction at most

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = None if is_postgres(engine) else sqlite_writer_engine(engine.url.render_as_string(False))
        self._thread: ThreadPoolExecutor | None = None
        self._sqlite_conn: Connection | None = None
        self._pg_conn: AsyncConnection | None = None
        self._queue: list[_Submitted] = []
        self._flusher: asyncio.Task | None = None
        self.batches = 0  # transactions written (for tests and metrics)
        self.largest_batch = 0

    @property
    def sync_engine(self) -> Engine:
        """The engine the writer's connection comes from (for its events)."""
        return self._sqlite if self._sqlite is not None else self._engine.sync_engine

    async def write(self, write: Callable[[Connection], T]) -> T:
        """Runs `write` in the next batch; answers its result once that batch is committed. It may run
        a second time (after its first run was rolled back) when another write of its batch fails."""
        return await self.write_grouped(each, write)

    async def write_grouped(self, handler: GroupWrite, item: Any) -> Any:
        """Has `handler` write `item` (with the items other submitters give it) in the next batch;
        answers the item's result once that batch is committed. `handler` must be one object for all
        of them (a function, not a new closure per call), and may be called again with fewer items."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(_Submitted(handler, item, future))
        if self._flusher is None or self._flusher.get_loop() is not loop:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        batch: list[_Submitted] = []
        try:
            while self._queue:
                batch = [s for s in self._queue[:self.MAX_BATCH] if not s.future.done()]  # not canceled
                del self._queue[:self.MAX_BATCH]
                if batch:
                    await self._commit(batch)
                batch = []
        finally:
            self._flusher = None
            stranded, self._queue = [*batch, *self._queue], []  # none, unless this task was canceled
            for submitted in stranded:
                if not submitted.future.done():
                    submitted.future.set_exception(RuntimeError("the database writer stopped"))

    async def _commit(self, batch: list[_Submitted]) -> None:
        try:
            outcomes = await self._run([(submitted.handler, submitted.item) for submitted in batch])
        except Exception as error:  # noqa: BLE001 - the transaction failed: nothing of it was committed
            outcomes = [_Failed(error)] * len(batch)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        for submitted, outcome in zip(batch, outcomes):
            if submitted.future.done():
                continue
            if isinstance(outcome, _Failed):
                submitted.future.set_exception(outcome.error)
            else:
                submitted.future.set_result(outcome)

    async def _run(self, writes: list[tuple[GroupWrite, Any]]) -> list[Any]:
        if self._sqlite is None:
            return await self._run_on_postgres(writes)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_on_sqlite, writes)

    def _run_on_sqlite(self, writes: list[tuple[GroupWrite, Any]]) -> list[Any]:
        """On the writer thread."""
        assert self._sqlite is not None
        if self._sqlite_conn is None:
            self._sqlite_conn = self._sqlite.connect()
        try:
            return apply_batch(self._sqlite_conn, writes)
        except Exception:
            self._close_sqlite()  # the next batch starts on a fresh connection
            raise

    def _close_sqlite(self) -> None:
        conn, self._sqlite_conn = self._sqlite_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # pragma: no cover - a broken connection
                log.exception("closing the SQLite writer connection failed")

    async def _run_on_postgres(self, writes: list[tuple[GroupWrite, Any]]) -> list[Any]:
        if self._pg_conn is None:
            self._pg_conn = await self._engine.connect()
        try:
            return await self._pg_conn.run_sync(apply_batch, writes)
        except Exception:
            await self._close_postgres()  # the next batch starts on a fresh connection
            raise

    async def _close_postgres(self) -> None:
        conn, self._pg_conn = self._pg_conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # pragma: no cover - a broken connection
                log.exception("closing the PostgreSQL writer connection failed")

    async def close(self) -> None:
        """Writes what is still queued, then lets go of the writer connection (and thread). A later
        write opens them again."""
        while self._flusher is not None and self._flusher.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(self._flusher)
        await self._close_postgres()
        if self._thread is not None:
            thread, self._thread = self._thread, None
            await asyncio.get_running_loop().run_in_executor(thread, self._close_sqlite)
            thread.shutdown(wait=True)
        if self._sqlite is not None:
            self._sqlite.dispose()


class Database:
    """One service's database: its engine, its tables, a session factory and the group commit of writes."""

    def __init__(self, url: str, tables: Sequence[type[SQLModel]]) -> None:
        self.engine = create_engine(url)
        self.writer = WriteBatcher(self.engine)
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

    async def write(self, write: Callable[[Connection], T]) -> T:
        """Runs `write(connection)` in the next group commit (see `WriteBatcher`); answers its result
        once it is committed."""
        return await self.writer.write(write)

    async def write_grouped(self, handler: GroupWrite, item: Any) -> Any:
        """Has `handler` write `item` with the items of the other submitters of the same group commit
        (see `WriteBatcher.write_grouped`); answers the item's result once it is committed."""
        return await self.writer.write_grouped(handler, item)

    async def close(self) -> None:
        await self.writer.close()
        await self.engine.dispose()
