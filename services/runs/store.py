"""Runs tables and the queries on them. Queues, timers and leases are rows here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, and_, func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field, SQLModel, select

from services.common.db import Database

ACTIVE = ("delayed", "queued", "dequeued", "executing", "waiting")
ON_DEVICE = ("dequeued", "executing")
TERMINAL = ("completed", "failed", "timed_out", "crashed", "system_failed", "canceled", "expired", "dead_letter")


class RunRow(SQLModel, table=True):
    __tablename__ = "runs_runs"
    __table_args__ = (
        Index("ix_runs_queue", "status", "target_key", "priority", "created_at"),
        Index("ix_runs_tenant_created", "tenant_id", "created_at"),
        Index("ix_runs_invocation", "invocation_id"),
        Index("ix_runs_due", "status", "scheduled_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    job_id: str = Field(max_length=64)
    job_version: int
    job_version_id: str = Field(max_length=64)
    invocation_id: str = Field(max_length=64)
    # "<tenant>/<device>" for device runs, "" for endpoint runs: what the dispatcher matches on.
    target_key: str = Field(default="", max_length=256)
    device_id: str = Field(default="", max_length=128)
    status: str = Field(max_length=16)
    attempt: int = 1
    max_attempts: int = 3
    priority: int = 0
    command: str = ""
    timeout_secs: int = 300
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    metadata_: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    trace: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON))
    # The jobline.jobs.v1.Job the run executes, as of its version.
    snapshot: bytes = Field(sa_column=Column(LargeBinary))
    error: str = ""
    exit_code: int | None = None
    triggered_by: str = ""
    created_by: str = ""
    idempotency_key: str = Field(default="", max_length=256)
    created_at: datetime
    scheduled_at: datetime | None = None
    dequeued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    next_retry_at: datetime | None = None
    expires_at: datetime | None = None
    lease_owner: str = Field(default="", max_length=64)
    lease_expires_at: datetime | None = None


class LogChunkRow(SQLModel, table=True):
    __tablename__ = "runs_log_chunks"

    run_id: str = Field(primary_key=True, max_length=64)
    attempt: int = Field(primary_key=True)
    sequence: int = Field(primary_key=True)
    stream: int
    data: bytes = Field(sa_column=Column(LargeBinary))
    created_at: datetime


TABLES = [RunRow, LogChunkRow]


class RunStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_runs(self, runs: Sequence[RunRow]) -> None:
        async with self.db.session() as session:
            session.add_all(runs)

    async def get(self, tenant_id: str, run_id: str) -> RunRow | None:
        async with self.db.session() as session:
            row = await session.get(RunRow, run_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    async def get_any(self, run_id: str) -> RunRow | None:
        async with self.db.session() as session:
            return await session.get(RunRow, run_id)

    async def list(self, tenant_id: str, *, project_id: str = "", status: str = "", job_id: str = "",
                   invocation_id: str = "", triggered_by: str = "", before: datetime | None = None,
                   limit: int = 50) -> list[RunRow]:
        query = select(RunRow).where(RunRow.tenant_id == tenant_id)
        for column, value in ((RunRow.project_id, project_id), (RunRow.status, status), (RunRow.job_id, job_id),
                              (RunRow.invocation_id, invocation_id), (RunRow.triggered_by, triggered_by)):
            if value:
                query = query.where(column == value)
        if before is not None:
            query = query.where(RunRow.created_at < before)
        query = query.order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(limit)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def count_active(self, tenant_id: str, job_id: str) -> int:
        query = select(func.count()).where(RunRow.tenant_id == tenant_id, RunRow.job_id == job_id,
                                           RunRow.status.in_(ACTIVE))
        async with self.db.session() as session:
            return (await session.exec(query)).one()

    async def transition(self, run_id: str, attempt: int, from_statuses: Iterable[str], /, **values: Any) -> bool:
        """Compare-and-set: applies values only if the run is still at that attempt in one of those states."""
        statement = (
            update(RunRow)
            .where(RunRow.id == run_id, RunRow.attempt == attempt, RunRow.status.in_(list(from_statuses)))
            .values(**values)
        )
        async with self.db.session() as session:
            result = await session.exec(statement)  # type: ignore[call-overload]
            return result.rowcount == 1

    async def queued_for(self, target_keys: Sequence[str], limit: int) -> list[RunRow]:
        """Queued runs for these devices, most urgent first."""
        if not target_keys:
            return []
        query = (
            select(RunRow)
            .where(RunRow.status == "queued", RunRow.target_key.in_(list(target_keys)))
            .order_by(RunRow.priority.desc(), RunRow.created_at)
            .limit(limit)
        )
        if self.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def claim(self, run_ids: Sequence[str], owner: str, now: datetime, lease_until: datetime) -> set[str]:
        """Leases queued runs to this replica; answers the ids it got (others were claimed elsewhere)."""
        if not run_ids:
            return set()
        statement = (
            update(RunRow)
            .where(RunRow.id.in_(list(run_ids)), RunRow.status == "queued")
            .values(status="dequeued", lease_owner=owner, lease_expires_at=lease_until, dequeued_at=now)
            .returning(RunRow.id)
        )
        async with self.db.session() as session:
            return set((await session.exec(statement)).scalars().all())  # type: ignore[call-overload]

    async def due_delayed(self, now: datetime, limit: int = 1000) -> list[RunRow]:
        query = (
            select(RunRow)
            .where(RunRow.status == "delayed", RunRow.scheduled_at <= now)
            .order_by(RunRow.scheduled_at)
            .limit(limit)
        )
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def promote(self, run_ids: Sequence[str]) -> None:
        statement = update(RunRow).where(RunRow.id.in_(list(run_ids)), RunRow.status == "delayed").values(status="queued")
        async with self.db.session() as session:
            await session.exec(statement)  # type: ignore[call-overload]

    async def stale(self, now: datetime, heartbeat_before: datetime, limit: int = 1000) -> list[RunRow]:
        """Runs on devices whose lease ran out without acceptance, or whose heartbeat went silent."""
        query = (
            select(RunRow)
            .where(
                or_(
                    and_(RunRow.status == "dequeued", RunRow.lease_expires_at < now),
                    and_(RunRow.status == "executing", RunRow.heartbeat_at < heartbeat_before),
                )
            )
            .limit(limit)
        )
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def on_device(self, target_key: str) -> list[RunRow]:
        query = select(RunRow).where(RunRow.target_key == target_key, RunRow.status.in_(ON_DEVICE))
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def touch_heartbeats(self, run_ids: Sequence[str], at: datetime) -> None:
        statement = (
            update(RunRow).where(RunRow.id.in_(list(run_ids)), RunRow.status == "executing").values(heartbeat_at=at)
        )
        async with self.db.session() as session:
            await session.exec(statement)  # type: ignore[call-overload]

    async def add_chunks(self, chunks: Sequence[dict[str, Any]]) -> None:
        """Stores output chunks; a chunk already stored (same run, attempt, sequence) is ignored."""
        if not chunks:
            return
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        statement = insert(LogChunkRow).values(list(chunks)).on_conflict_do_nothing()
        async with self.db.session() as session:
            await session.exec(statement)  # type: ignore[call-overload]

    async def highest_contiguous(self, run_id: str, attempt: int) -> int:
        """The highest sequence n such that chunks 1..n are all stored."""
        query = select(func.count(), func.max(LogChunkRow.sequence)).where(
            LogChunkRow.run_id == run_id, LogChunkRow.attempt == attempt
        )
        async with self.db.session() as session:
            count, highest = (await session.exec(query)).one()
        if not count:
            return 0
        if count == highest:
            return highest
        rows = await self.chunks(run_id, attempt)
        expected = 0
        for row in rows:
            if row.sequence != expected + 1:
                break
            expected = row.sequence
        return expected

    async def chunks(self, run_id: str, attempt: int | None = None, after: int = 0) -> list[LogChunkRow]:
        query = select(LogChunkRow).where(LogChunkRow.run_id == run_id, LogChunkRow.sequence > after)
        if attempt is not None:
            query = query.where(LogChunkRow.attempt == attempt)
        query = query.order_by(LogChunkRow.attempt, LogChunkRow.sequence)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())
