"""Auth tables (tenants, projects, users, API keys) and the queries on them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Index, UniqueConstraint, and_, or_, text, update
from sqlmodel import Field, SQLModel, select

from services.common.db import Database

# Serializes the first-start bootstrap across replicas sharing one PostgreSQL database.
BOOTSTRAP_LOCK = 0x4A4C_4155_5448  # "JLAUTH"


class TenantRow(SQLModel, table=True):
    __tablename__ = "auth_tenants"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=256)
    created_at: datetime


class ProjectRow(SQLModel, table=True):
    __tablename__ = "auth_projects"

    tenant_id: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=256)
    created_at: datetime


class UserRow(SQLModel, table=True):
    __tablename__ = "auth_users"
    __table_args__ = (UniqueConstraint("tenant_id", "login", name="uq_auth_users_login"),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    login: str = Field(max_length=256)
    created_at: datetime


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "auth_api_keys"
    __table_args__ = (
        UniqueConstraint("key_hash", name="uq_auth_api_keys_hash"),
        Index("ix_auth_api_keys_tenant", "tenant_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    user_id: str = Field(max_length=64)
    name: str = Field(max_length=256)
    # The first characters of the key, safe to display.
    prefix: str = Field(max_length=16)
    # SHA-256 (hex) of the whole key; the key itself is never stored.
    key_hash: str = Field(max_length=64)
    # Comma-separated, e.g. "READ,TRIGGER".
    scopes: str = Field(max_length=256)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    created_at: datetime


TABLES = [TenantRow, ProjectRow, UserRow, ApiKeyRow]


class AuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def bootstrap(self, tenant: TenantRow, project: ProjectRow, user: UserRow, key: ApiKeyRow) -> bool:
        """Stores the first tenant, its project, user and key, unless a tenant exists; answers whether it did."""
        async with self.db.session() as session:
            if self.db.is_postgres:
                await session.exec(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=BOOTSTRAP_LOCK))  # type: ignore[call-overload]
            if (await session.exec(select(TenantRow.id).limit(1))).first() is not None:
                return False
            session.add_all([tenant, project, user, key])
            return True

    async def key_by_hash(self, key_hash: str) -> tuple[ApiKeyRow, str] | None:
        """The key with this hash and its owner's login ("" when the owner is no user of ours)."""
        query = (
            select(ApiKeyRow, UserRow.login)
            .join(UserRow, and_(UserRow.id == ApiKeyRow.user_id, UserRow.tenant_id == ApiKeyRow.tenant_id),
                  isouter=True)
            .where(ApiKeyRow.key_hash == key_hash)
        )
        async with self.db.session() as session:
            found = (await session.exec(query)).first()
        return None if found is None else (found[0], found[1] or "")

    async def insert_key(self, key: ApiKeyRow) -> None:
        async with self.db.session() as session:
            session.add(key)

    async def keys(self, tenant_id: str) -> list[ApiKeyRow]:
        query = select(ApiKeyRow).where(ApiKeyRow.tenant_id == tenant_id).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def revoke(self, tenant_id: str, key_id: str, at: datetime) -> ApiKeyRow | None:
        """Marks the tenant's key revoked (a revoked key keeps its first revocation time)."""
        async with self.db.session() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            if row.revoked_at is None:
                row.revoked_at = at
                session.add(row)
            return row

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Records when keys were last used, in one transaction, never moving a time backwards."""
        if not last_used:
            return
        async with self.db.session() as session:
            for key_id, at in last_used.items():
                statement = (
                    update(ApiKeyRow)
                    .where(ApiKeyRow.id == key_id,
                           or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at < at))  # type: ignore[union-attr]
                    .values(last_used_at=at)
                )
                await session.exec(statement)  # type: ignore[call-overload]
