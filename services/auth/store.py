"""Auth tables (tenants, projects, users, service accounts, API keys and tokens, signing keys) and their queries."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import Index, UniqueConstraint, and_, or_, text, update
from sqlmodel import Field, SQLModel, select

from services.common.db import Database
from services.common.secrets import scrub_log, scrubbing

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


class ServiceAccountRow(SQLModel, table=True):
    __tablename__ = "auth_service_accounts"
    __table_args__ = (UniqueConstraint("client_id", name="uq_auth_service_accounts_client"),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64, index=True)
    project_id: str = Field(max_length=128)
    name: str = Field(max_length=256)
    # The client_credentials client id (displayable) and a SHA-256 of the secret.
    client_id: str = Field(max_length=64)
    secret_hash: str = Field(max_length=64)
    scopes: str = Field(max_length=256)
    created_at: datetime
    disabled_at: datetime | None = None


class SigningKeyRow(SQLModel, table=True):
    """A key that signs JWTs (HS256). The newest unretired key signs; every key verifies until
    `verify_until` (its retirement plus the longest token lifetime)."""

    __tablename__ = "auth_signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=16)
    secret: str = Field(max_length=128)
    created_at: datetime
    retires_at: datetime
    verify_until: datetime


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "auth_api_keys"
    __table_args__ = (
        UniqueConstraint("key_hash", name="uq_auth_api_keys_hash"),
        Index("ix_auth_api_keys_tenant", "tenant_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    # The owner: a user or (subject_type "service_account") a service account.
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
    # Columns added after the first release (added to older databases by the migrator in services/common/db.py).
    kind: str | None = Field(default=None, max_length=32)  # native, device_jobs, personal_access_token
    subject_type: str | None = Field(default=None, max_length=32)  # None: user
    replaced_by_key_id: str | None = Field(default=None, max_length=64)
    grace_expires_at: datetime | None = None


TABLES = [TenantRow, ProjectRow, UserRow, ServiceAccountRow, SigningKeyRow, ApiKeyRow]


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

    async def keys(self, tenant_id: str, project_id: str = "", *, kinds: tuple[str, ...] = ()) -> list[ApiKeyRow]:
        query = select(ApiKeyRow).where(ApiKeyRow.tenant_id == tenant_id)
        if project_id:
            query = query.where(ApiKeyRow.project_id == project_id)
        if kinds:
            query = query.where(or_(ApiKeyRow.kind.in_(kinds), ApiKeyRow.kind.is_(None)))  # type: ignore[union-attr]
        query = query.order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def key(self, tenant_id: str, key_id: str) -> ApiKeyRow | None:
        async with self.db.session() as session:
            row = await session.get(ApiKeyRow, key_id)
        return row if row is not None and row.tenant_id == tenant_id else None

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

    async def disable_service_account(self, tenant_id: str, account_id: str, at: datetime) -> ServiceAccountRow | None:
        """Marks the tenant's service account disabled (keeping its first disabling time)."""
        async with self.db.session() as session:
            row = await session.get(ServiceAccountRow, account_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            if row.disabled_at is None:
                row.disabled_at = at
                session.add(row)
            return row

    async def rotate(self, tenant_id: str, key_id: str, new: ApiKeyRow, grace_until: datetime | None,
                     at: datetime) -> ApiKeyRow | None:
        """Stores `new` as the replacement of the tenant's live key `key_id`; answers the old key (None: no such
        live key). The old key is revoked at `at`, or stays valid until `grace_until`."""
        async with self.db.session() as session:
            row = await session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None or row.tenant_id != tenant_id or row.revoked_at is not None or row.replaced_by_key_id:
                return None
            row.replaced_by_key_id = new.id
            if grace_until is None:
                row.revoked_at = at
            else:
                row.grace_expires_at = grace_until
            session.add_all([row, new])
            return row

    # --- tenants, projects, users, service accounts ---

    async def add(self, *rows: SQLModel) -> None:
        async with self.db.session() as session:
            session.add_all(rows)

    async def tenant(self, id_or_name: str) -> TenantRow | None:
        async with self.db.session() as session:
            row = await session.get(TenantRow, id_or_name)
            if row is None:
                row = (await session.exec(select(TenantRow).where(TenantRow.name == id_or_name))).first()
            return row

    async def tenants(self) -> list[TenantRow]:
        async with self.db.session() as session:
            return list((await session.exec(select(TenantRow).order_by(TenantRow.created_at))).all())

    async def project(self, tenant_id: str, project_id: str) -> ProjectRow | None:
        async with self.db.session() as session:
            return await session.get(ProjectRow, (tenant_id, project_id))

    async def user(self, tenant_id: str, *, login: str = "", user_id: str = "") -> UserRow | None:
        query = select(UserRow).where(UserRow.tenant_id == tenant_id)
        query = query.where(UserRow.login == login) if login else query.where(UserRow.id == user_id)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def service_account(self, *, tenant_id: str = "", account_id: str = "",
                              client_id: str = "") -> ServiceAccountRow | None:
        query = select(ServiceAccountRow)
        if tenant_id:
            query = query.where(ServiceAccountRow.tenant_id == tenant_id)
        if account_id:
            query = query.where(ServiceAccountRow.id == account_id)
        if client_id:
            query = query.where(ServiceAccountRow.client_id == client_id)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    # --- signing keys ---

    async def signing_keys(self, now: datetime) -> list[SigningKeyRow]:
        """Every key still verifying at `now`, newest first."""
        query = (select(SigningKeyRow).where(SigningKeyRow.verify_until > now)
                 .order_by(SigningKeyRow.created_at.desc(), SigningKeyRow.kid))  # type: ignore[attr-defined]
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def rewrite_signing_secrets(self, rewrite: Callable[[str], str | None]) -> int:
        """Replaces each signing key's stored secret by rewrite(secret) unless that is None, in one transaction."""
        changed = 0
        async with self.db.session() as session:
            await scrubbing(session, self.db.is_postgres)
            for row in (await session.exec(select(SigningKeyRow))).all():
                replacement = rewrite(row.secret)
                if replacement is not None and replacement != row.secret:
                    row.secret = replacement
                    session.add(row)
                    changed += 1
        if changed:
            await scrub_log(self.db.engine, self.db.is_postgres)
        return changed

    async def retire_signing_keys(self, at: datetime, verify_until: datetime) -> None:
        async with self.db.session() as session:
            rows = (await session.exec(select(SigningKeyRow).where(SigningKeyRow.retires_at > at))).all()
            for row in rows:
                row.retires_at = at
                row.verify_until = min(row.verify_until, verify_until)
                session.add(row)

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
