"""Jobs tables and the queries on them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, LargeBinary, UniqueConstraint, and_, case, delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession as _SqlAlchemySession
from sqlmodel import Field, SQLModel, select

from services.common.counters import reserve
from services.common.db import Database
from services.common.errors import AlreadyExists
from services.common.secrets import scrub_log, scrubbing


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs_jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "project_id", "slug", name="uq_jobs_slug"),
        Index("ix_jobs_tenant_project", "tenant_id", "project_id"),
        Index("ix_jobs_missions", "tenant_id", "is_mission", "created_at"),
        Index("ux_jobs_number", "number", unique=True),
        Index("ix_jobs_templates", "tenant_id", "is_template", "number"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    slug: str = Field(max_length=128)
    version: int
    version_id: str = Field(max_length=64)
    enabled: bool = True
    # The definition has a `mission` (surface E lists these, newest first).
    is_mission: bool = False
    # The current definition: the jobline.jobs.v1.Job message, serialized.
    definition: bytes
    created_at: datetime
    updated_at: datetime
    # Unique across the service, increasing, never reused (Job.number); None for jobs made before numbers.
    number: int | None = Field(default=None, sa_type=BigInteger)
    # A job template (Job.job_template is set): what ListJobs(job_templates_only) lists.
    is_template: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


class JobVersionRow(SQLModel, table=True):
    __tablename__ = "jobs_versions"
    __table_args__ = (UniqueConstraint("job_id", "version", name="uq_job_versions"),)

    id: str = Field(primary_key=True, max_length=64)
    job_id: str = Field(max_length=64, index=True)
    tenant_id: str = Field(max_length=64)
    version: int
    definition: bytes
    created_at: datetime


class DependencyRow(SQLModel, table=True):
    """job_id runs only after depends_on_job_id (the runs service reads these)."""

    __tablename__ = "jobs_dependencies"
    __table_args__ = (UniqueConstraint("job_id", "depends_on_job_id", name="uq_jobs_dependency"),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64, index=True)
    job_id: str = Field(max_length=64, index=True)
    depends_on_job_id: str = Field(max_length=64, index=True)
    condition: str = Field(max_length=32)
    created_at: datetime


class ScheduleRow(SQLModel, table=True):
    """One row per enabled job with a cron: when it fires next, and who holds the lease to fire it.

    A row may instead carry its own trigger request (a JobSchedule, e.g. a recurring job invocation):
    then `job_id` is the schedule's own id, `trigger_job_id` the job it triggers, and the row counts its
    iterations up to `max_iteration` / `end_time`, after which its state is "finished"."""

    __tablename__ = "jobs_schedules"
    __table_args__ = (Index("ix_jobs_schedules_due", "next_fire_at"),)

    job_id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    cron: str = Field(max_length=256)
    timezone: str = Field(max_length=64)
    next_fire_at: datetime
    lease_owner: str = Field(default="", max_length=64)
    lease_until: datetime | None = None
    last_fired_at: datetime | None = None
    # Schedules with their own trigger request (JobSchedule); a job's cron leaves these at their defaults.
    trigger_job_id: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    number: int | None = Field(default=None, sa_type=BigInteger)
    trigger_request: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    max_iteration: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    end_time: datetime | None = None
    iteration: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # active | finished | cancelled: only active rows fire.
    state: str = Field(default="active", max_length=16, sa_column_kwargs={"server_default": "active"})
    purpose: str = Field(default="", max_length=256, sa_column_kwargs={"server_default": ""})
    created_at: datetime | None = None


class JobCounterRow(SQLModel, table=True):
    """Named sequences: `job_number` (JobRow.number) and `schedule_number` (ScheduleRow.number)."""

    __tablename__ = "jobs_counters"

    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(default=0, sa_type=BigInteger)


JOB_NUMBER, SCHEDULE_NUMBER = "job_number", "schedule_number"

TABLES = [JobRow, JobVersionRow, DependencyRow, ScheduleRow, JobCounterRow]


@dataclass(frozen=True)
class FireDone:
    """A fired (or skipped) tick of a leased schedule: move it from `due_at` to `next_fire_at`, with `values`."""

    job_id: str
    due_at: datetime  # the next_fire_at it was leased at: the compare-and-set
    fired_at: datetime
    next_fire_at: datetime
    values: tuple[tuple[str, int | str], ...] = ()


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._schedule_listeners: list[Callable[[], None]] = []

    def on_schedules_added(self, listener: Callable[[], None]) -> None:
        """Calls `listener` after every commit that may have brought a tick closer (a schedule inserted or its
        cron changed) in this process; other replicas' changes are not told."""
        self._schedule_listeners.append(listener)

    def _schedules_added(self) -> None:
        for listener in self._schedule_listeners:
            listener()

    @staticmethod
    async def _sync_schedule(session, job_id: str, schedule: ScheduleRow | None) -> None:
        """Makes the job's schedule row match `schedule` (None: no row). A row whose cron and
        timezone are unchanged keeps its next_fire_at and lease, so an edit never drops a due tick."""
        existing = await session.get(ScheduleRow, job_id)
        if schedule is None:
            if existing is not None:
                await session.delete(existing)
        elif existing is None:
            session.add(schedule)
        elif (existing.cron, existing.timezone) == (schedule.cron, schedule.timezone):
            existing.project_id = schedule.project_id
        else:
            existing.cron, existing.timezone = schedule.cron, schedule.timezone
            existing.next_fire_at, existing.lease_owner, existing.lease_until = schedule.next_fire_at, "", None

    async def insert_many(self, items: list[tuple[JobRow, JobVersionRow, ScheduleRow | None]]) -> None:
        """Inserts jobs with their first versions and schedules in one transaction."""
        try:
            async with self.db.session() as session:
                for job, version, schedule in items:
                    session.add(job)
                    session.add(version)
                    if schedule is not None:
                        session.add(schedule)
        except IntegrityError:
            raise AlreadyExists("a job with that slug already exists in the project") from None
        if any(schedule is not None for _, _, schedule in items):
            self._schedules_added()

    async def insert(self, job: JobRow, version: JobVersionRow, schedule: ScheduleRow | None = None) -> None:
        await self.insert_many([(job, version, schedule)])

    async def get(self, tenant_id: str, job_id: str) -> JobRow | None:
        async with self.db.session() as session:
            row = await session.get(JobRow, job_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    async def get_by_number(self, tenant_id: str, number: int) -> JobRow | None:
        query = select(JobRow).where(JobRow.tenant_id == tenant_id, JobRow.number == number)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def take_numbers(self, count: int, name: str = JOB_NUMBER) -> int:
        """Reserves `count` numbers of the named sequence (in their own transaction: a number is never
        reused, even when what it was for is not stored); answers the highest."""
        async with self.db.session() as session:
            return await session.run_sync(reserve, JobCounterRow, name, count)

    async def templates(self, tenant_id: str) -> list[JobRow]:
        """The tenant's job templates, by number."""
        query = select(JobRow).where(JobRow.tenant_id == tenant_id, JobRow.is_template == True)  # noqa: E712
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(JobRow.number))).all())

    async def get_many(self, tenant_id: str, job_ids: list[str]) -> list[JobRow]:
        query = select(JobRow).where(JobRow.tenant_id == tenant_id, JobRow.id.in_(job_ids))
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def slug_taken(self, tenant_id: str, project_id: str, slug: str, except_id: str = "") -> bool:
        query = select(JobRow.id).where(
            JobRow.tenant_id == tenant_id, JobRow.project_id == project_id, JobRow.slug == slug
        )
        async with self.db.session() as session:
            ids = (await session.exec(query)).all()
        return any(found != except_id for found in ids)

    async def slugs_like(self, tenant_id: str, project_id: str, prefix: str) -> set[str]:
        query = select(JobRow.slug).where(
            JobRow.tenant_id == tenant_id, JobRow.project_id == project_id, JobRow.slug.startswith(prefix)
        )
        async with self.db.session() as session:
            return set((await session.exec(query)).all())

    async def list(self, tenant_id: str, project_id: str, after_id: str, limit: int,
                   missions_only: bool = False) -> list[JobRow]:
        """A page of the tenant's jobs by id, after `after_id`; mission jobs only: newest first, after the
        job `after_id`."""
        query = select(JobRow).where(JobRow.tenant_id == tenant_id)
        if project_id:
            query = query.where(JobRow.project_id == project_id)
        async with self.db.session() as session:
            if not missions_only:
                if after_id:
                    query = query.where(JobRow.id > after_id)
                return list((await session.exec(query.order_by(JobRow.id).limit(limit))).all())
            query = query.where(JobRow.is_mission == True)  # noqa: E712
            if after_id:
                anchor = await session.get(JobRow, after_id)
                if anchor is None or anchor.tenant_id != tenant_id:
                    return []
                query = query.where(or_(JobRow.created_at < anchor.created_at,
                                        and_(JobRow.created_at == anchor.created_at, JobRow.id < anchor.id)))
            query = query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
            return list((await session.exec(query)).all())

    async def save_versions(self, items: list[tuple[JobRow, JobVersionRow, ScheduleRow | None]]) -> None:
        """Stores new current definitions, their immutable versions and schedules in one transaction."""
        try:
            async with self.db.session() as session:
                for job, version, schedule in items:
                    await session.merge(job)
                    session.add(version)
                    await self._sync_schedule(session, job.id, schedule)
        except IntegrityError:
            raise AlreadyExists("a job with that slug already exists in the project") from None
        if any(schedule is not None for _, _, schedule in items):
            self._schedules_added()

    async def save_version(self, job: JobRow, version: JobVersionRow, schedule: ScheduleRow | None = None) -> None:
        await self.save_versions([(job, version, schedule)])

    async def delete(self, job: JobRow) -> None:
        """Deletes the job, its schedule and every dependency from or to it (versions stay)."""
        async with self.db.session() as session:
            await session.exec(delete(DependencyRow).where(
                DependencyRow.tenant_id == job.tenant_id,
                or_(DependencyRow.job_id == job.id, DependencyRow.depends_on_job_id == job.id),
            ))
            await session.exec(delete(ScheduleRow).where(ScheduleRow.job_id == job.id))
            await session.exec(update(ScheduleRow).where(ScheduleRow.trigger_job_id == job.id,  # its schedules end
                                                         ScheduleRow.state == "active").values(state="cancelled"))
            stored = await session.get(JobRow, job.id)
            if stored is not None:
                await session.delete(stored)

    async def versions(self, tenant_id: str, job_id: str) -> list[JobVersionRow]:
        query = (
            select(JobVersionRow)
            .where(JobVersionRow.tenant_id == tenant_id, JobVersionRow.job_id == job_id)
            .order_by(JobVersionRow.version)
        )
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def version_by_id(self, tenant_id: str, version_id: str) -> JobVersionRow | None:
        async with self.db.session() as session:
            row = await session.get(JobVersionRow, version_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    async def rewrite_definitions(self, rewrite, batch: int = 500) -> int:
        """Replaces each stored definition (jobs and versions) by rewrite(definition) unless that is None,
        a batch per transaction; answers how many changed."""
        changed = 0
        for model in (JobRow, JobVersionRow):
            after = ""
            while True:
                async with self.db.session() as session:
                    await scrubbing(session, self.db.is_postgres)
                    query = select(model).where(model.id > after).order_by(model.id).limit(batch)
                    rows = list((await session.exec(query)).all())
                    for row in rows:
                        replacement = rewrite(row.definition)
                        if replacement is not None:
                            row.definition = replacement
                            session.add(row)
                            changed += 1
                if len(rows) < batch:
                    break
                after = rows[-1].id
        if changed:
            await scrub_log(self.db.engine, self.db.is_postgres)
        return changed

    # -- dependencies ---------------------------------------------------------------------

    async def dependencies(self, tenant_id: str, job_id: str) -> list[DependencyRow]:
        query = (
            select(DependencyRow)
            .where(DependencyRow.tenant_id == tenant_id, DependencyRow.job_id == job_id)
            .order_by(DependencyRow.created_at, DependencyRow.id)
        )
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def dependencies_of(self, tenant_id: str, job_ids: list[str]) -> list[DependencyRow]:
        """What each of these jobs depends on, in one query (per job in `dependencies`' order)."""
        if not job_ids:
            return []
        query = (
            select(DependencyRow)
            .where(DependencyRow.tenant_id == tenant_id, DependencyRow.job_id.in_(job_ids))
            .order_by(DependencyRow.job_id, DependencyRow.created_at, DependencyRow.id)
        )
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def dependency_edges(self, tenant_id: str) -> list[tuple[str, str]]:
        """Every (job_id, depends_on_job_id) of the tenant: the graph a cycle check walks."""
        query = select(DependencyRow.job_id, DependencyRow.depends_on_job_id).where(
            DependencyRow.tenant_id == tenant_id
        )
        async with self.db.session() as session:
            return [(a, b) for a, b in (await session.exec(query)).all()]

    async def insert_dependency(self, row: DependencyRow) -> None:
        try:
            async with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            raise AlreadyExists(f"job {row.job_id} already depends on job {row.depends_on_job_id}") from None

    async def delete_dependency(self, tenant_id: str, job_id: str, dep_id: str) -> bool:
        statement = delete(DependencyRow).where(
            DependencyRow.tenant_id == tenant_id, DependencyRow.job_id == job_id, DependencyRow.id == dep_id
        )
        async with self.db.session() as session:
            return (await session.exec(statement)).rowcount == 1

    # -- schedules ------------------------------------------------------------------------

    async def schedule(self, job_id: str) -> ScheduleRow | None:
        async with self.db.session() as session:
            return await session.get(ScheduleRow, job_id)

    async def claim_due(self, now: datetime, owner: str, lease_until: datetime, limit: int,
                        due_by: datetime | None = None) -> list[ScheduleRow]:
        """Leases up to `limit` schedules due by `due_by` (default: now) to `owner` in one UPDATE ... RETURNING.
        The update re-checks that the lease is free, and on PostgreSQL the candidates are read FOR UPDATE SKIP
        LOCKED, so two replicas never hold the same tick."""
        free = or_(ScheduleRow.lease_until.is_(None), ScheduleRow.lease_until <= now)
        due = (
            select(ScheduleRow.job_id).where(ScheduleRow.next_fire_at <= (due_by or now), free,
                                             ScheduleRow.state == "active")
            .order_by(ScheduleRow.next_fire_at).limit(limit)
        )
        if self.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        statement = (
            update(ScheduleRow).where(ScheduleRow.job_id.in_(due.scalar_subquery()), free)
            .values(lease_owner=owner, lease_until=lease_until).returning(ScheduleRow)
            .execution_options(synchronize_session=False)
        )
        async with self.db.session() as session:
            return list((await _execute(session, statement)).scalars().all())

    async def next_due(self) -> datetime | None:
        """When the earliest active schedule can next be claimed: its next_fire_at, or the end of its lease
        (a tick being fired, or a failed one backing off) if that is later; None without any."""
        claimable = case((ScheduleRow.lease_until > ScheduleRow.next_fire_at, ScheduleRow.lease_until),
                         else_=ScheduleRow.next_fire_at)
        query = select(func.min(claimable)).where(ScheduleRow.state == "active")
        async with self.db.session() as session:
            return (await _execute(session, query)).scalar()

    async def next_claimable(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """The earliest tick of the active schedules whose lease is free at `now`, and the earliest moment one
        leased at `now` (a tick being fired, or a failed one backing off) can be claimed again (the end of its
        lease, or its tick if later); None for either without any."""
        free = or_(ScheduleRow.lease_until.is_(None), ScheduleRow.lease_until <= now)
        claimable = case((ScheduleRow.lease_until > ScheduleRow.next_fire_at, ScheduleRow.lease_until),
                         else_=ScheduleRow.next_fire_at)
        query = select(func.min(case((free, ScheduleRow.next_fire_at), else_=None)),
                       func.min(case((free, None), else_=claimable))).where(ScheduleRow.state == "active")
        async with self.db.session() as session:
            return tuple((await _execute(session, query)).one())  # type: ignore[return-value]

    async def finish_fires(self, owner: str, done: Iterable[FireDone], retry_ids: list[str],
                           retry_at: datetime) -> None:
        """In one transaction: moves the fired schedules still leased to `owner` on to their next ticks
        (unless the job changed them meanwhile: compare-and-set on the tick they were leased at), one UPDATE
        per distinct outcome; and keeps those of `retry_ids` due but left alone until `retry_at` (a failed
        fire's backoff)."""
        outcomes: dict[tuple, list[str]] = {}
        for item in done:
            outcomes.setdefault((item.due_at, item.fired_at, item.next_fire_at, item.values), []).append(item.job_id)
        async with self.db.session() as session:
            for (due_at, fired_at, next_fire_at, values), job_ids in outcomes.items():
                await session.exec(
                    update(ScheduleRow)
                    .where(ScheduleRow.job_id.in_(job_ids), ScheduleRow.lease_owner == owner,
                           ScheduleRow.next_fire_at == due_at)
                    .values(next_fire_at=next_fire_at, last_fired_at=fired_at, lease_owner="", lease_until=None,
                            **dict(values))
                )
            if retry_ids:
                await session.exec(
                    update(ScheduleRow).where(ScheduleRow.job_id.in_(retry_ids), ScheduleRow.lease_owner == owner)
                    .values(lease_owner="", lease_until=retry_at)
                )

    async def insert_schedule(self, row: ScheduleRow) -> None:
        async with self.db.session() as session:
            session.add(row)
        self._schedules_added()

    async def tenant_schedule(self, tenant_id: str, schedule_id: str) -> ScheduleRow | None:
        """A schedule with its own trigger request (not a job's cron row), of this tenant."""
        async with self.db.session() as session:
            row = await session.get(ScheduleRow, schedule_id)
        if row is None or row.tenant_id != tenant_id or row.trigger_request is None:
            return None
        return row

    async def cancel_schedule(self, tenant_id: str, schedule_id: str) -> ScheduleRow | None:
        statement = (update(ScheduleRow).where(ScheduleRow.job_id == schedule_id, ScheduleRow.tenant_id == tenant_id,
                                               ScheduleRow.state == "active").values(state="cancelled"))
        async with self.db.session() as session:
            await session.exec(statement)  # type: ignore[call-overload]
        return await self.tenant_schedule(tenant_id, schedule_id)


async def _execute(session, statement):
    """SQLAlchemy's execute (RETURNING, scalars), without SQLModel's nudge towards exec()."""
    return await _SqlAlchemySession.execute(session, statement)
