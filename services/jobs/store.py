"""Jobs tables and the queries on them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel, select

from services.common.db import Database


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs_jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "project_id", "slug", name="uq_jobs_slug"),
        Index("ix_jobs_tenant_project", "tenant_id", "project_id"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    slug: str = Field(max_length=128)
    version: int
    version_id: str = Field(max_length=64)
    enabled: bool = True
    # The current definition: the jobline.jobs.v1.Job message, serialized.
    definition: bytes
    created_at: datetime
    updated_at: datetime


class JobVersionRow(SQLModel, table=True):
    __tablename__ = "jobs_versions"
    __table_args__ = (UniqueConstraint("job_id", "version", name="uq_job_versions"),)

    id: str = Field(primary_key=True, max_length=64)
    job_id: str = Field(max_length=64, index=True)
    tenant_id: str = Field(max_length=64)
    version: int
    definition: bytes
    created_at: datetime


TABLES = [JobRow, JobVersionRow]


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, job: JobRow, version: JobVersionRow) -> None:
        async with self.db.session() as session:
            session.add(job)
            session.add(version)

    async def get(self, tenant_id: str, job_id: str) -> JobRow | None:
        async with self.db.session() as session:
            row = await session.get(JobRow, job_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    async def slug_taken(self, tenant_id: str, project_id: str, slug: str, except_id: str = "") -> bool:
        query = select(JobRow.id).where(
            JobRow.tenant_id == tenant_id, JobRow.project_id == project_id, JobRow.slug == slug
        )
        async with self.db.session() as session:
            ids = (await session.exec(query)).all()
        return any(found != except_id for found in ids)

    async def list(self, tenant_id: str, project_id: str, after_id: str, limit: int) -> list[JobRow]:
        query = select(JobRow).where(JobRow.tenant_id == tenant_id)
        if project_id:
            query = query.where(JobRow.project_id == project_id)
        if after_id:
            query = query.where(JobRow.id > after_id)
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(JobRow.id).limit(limit))).all())

    async def save_version(self, job: JobRow, version: JobVersionRow) -> None:
        """Stores a new current definition and its immutable version in one transaction."""
        async with self.db.session() as session:
            await session.merge(job)
            session.add(version)

    async def delete(self, job: JobRow) -> None:
        async with self.db.session() as session:
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
