"""The device registry table and the queries on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ColumnElement, Index, delete, exists, false, func, or_, select as sa_select
from sqlalchemy import type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from services.common.db import Database


class DeviceRow(SQLModel, table=True):
    __tablename__ = "devices_devices"
    __table_args__ = (
        Index("ix_devices_credential", "credential_hash", unique=True),
        # Group membership queries on PostgreSQL (`groups @> '["g"]'`); SQLite scans the tenant's rows.
        Index("ix_devices_groups", "groups", postgresql_using="gin").ddl_if(dialect="postgresql"),
    )

    # Device ids are chosen by users: unique within a tenant.
    tenant_id: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=256)
    model: str = Field(default="", max_length=256)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    groups: list[str] = Field(
        default_factory=list, sa_column=Column(JSON().with_variant(JSONB(), "postgresql"), nullable=False)
    )
    # SHA-256 (hex) of the agent credential; the credential itself is never stored.
    credential_hash: str = Field(max_length=64)
    online: bool = False
    last_seen_at: datetime | None = None
    agent_version: str = Field(default="", max_length=128)
    created_at: datetime
    updated_at: datetime


TABLES = [DeviceRow]


@dataclass(frozen=True)
class Presence:
    tenant_id: str
    device_id: str
    online: bool
    agent_version: str
    seen_at: datetime


class DeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _in_group(self, group: str) -> ColumnElement[bool]:
        if self.db.is_postgres:
            return type_coerce(DeviceRow.groups, JSONB).contains([group])
        member = func.json_each(DeviceRow.groups).table_valued("value")
        return exists(sa_select(member.c.value).where(member.c.value == group))

    async def insert(self, row: DeviceRow) -> bool:
        """Stores a new device; answers False when the tenant already has one with that id."""
        try:
            async with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    async def get(self, tenant_id: str, device_id: str) -> DeviceRow | None:
        async with self.db.session() as session:
            return await session.get(DeviceRow, (tenant_id, device_id))

    async def list(self, tenant_id: str, *, group: str = "", after_id: str = "", limit: int = 50) -> list[DeviceRow]:
        query = select(DeviceRow).where(DeviceRow.tenant_id == tenant_id)
        if group:
            query = query.where(self._in_group(group))
        if after_id:
            query = query.where(DeviceRow.id > after_id)
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(DeviceRow.id).limit(limit))).all())

    async def matching(self, tenant_id: str, device_ids: Sequence[str], group: str) -> list[DeviceRow]:
        """In one query: the tenant's devices with one of these ids or in this group, ordered by id."""
        conditions = []
        if device_ids:
            conditions.append(DeviceRow.id.in_(list(device_ids)))  # type: ignore[attr-defined]
        if group:
            conditions.append(self._in_group(group))
        query = select(DeviceRow).where(DeviceRow.tenant_id == tenant_id, or_(false(), *conditions))
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(DeviceRow.id))).all())

    async def save(self, tenant_id: str, device_id: str, values: dict[str, Any]) -> DeviceRow | None:
        """Applies values to the tenant's device; None when it is gone."""
        async with self.db.session() as session:
            stored = await session.get(DeviceRow, (tenant_id, device_id))
            if stored is None:
                return None
            for name, value in values.items():
                setattr(stored, name, value)
            session.add(stored)
            return stored

    async def delete(self, tenant_id: str, device_id: str) -> bool:
        statement = delete(DeviceRow).where(DeviceRow.tenant_id == tenant_id, DeviceRow.id == device_id)
        async with self.db.session() as session:
            return (await session.exec(statement)).rowcount == 1  # type: ignore[call-overload]

    async def by_credential(self, device_id: str, credential_hash: str) -> DeviceRow | None:
        """The device (of any tenant) holding this credential, if its id is device_id."""
        query = select(DeviceRow).where(DeviceRow.credential_hash == credential_hash, DeviceRow.id == device_id)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def record_presence(self, changes: Sequence[Presence]) -> None:
        """Applies presence changes in one transaction; an older report never overwrites a newer one."""
        if not changes:
            return
        async with self.db.session() as session:
            for change in changes:
                values: dict[str, Any] = {"online": change.online, "last_seen_at": change.seen_at}
                if change.agent_version:
                    values["agent_version"] = change.agent_version
                statement = (
                    update(DeviceRow)
                    .where(DeviceRow.tenant_id == change.tenant_id, DeviceRow.id == change.device_id,
                           or_(DeviceRow.last_seen_at.is_(None),  # type: ignore[union-attr]
                               DeviceRow.last_seen_at <= change.seen_at))  # type: ignore[operator]
                    .values(**values)
                )
                await session.exec(statement)  # type: ignore[call-overload]
