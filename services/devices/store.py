"""The device registry table and the queries on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ColumnElement, Index, bindparam, delete, exists, false, func, or_
from sqlalchemy import select as sa_select, tuple_, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession as _SqlAlchemySession
from sqlmodel import Field, SQLModel, select

from services.common.clock import as_utc
from services.common.counters import reserve
from services.common.db import Database


class DeviceRow(SQLModel, table=True):
    __tablename__ = "devices_devices"
    __table_args__ = (
        Index("ix_devices_credential", "credential_hash", unique=True),
        # Group membership queries on PostgreSQL (`groups @> '["g"]'`); SQLite scans the tenant's rows.
        Index("ix_devices_groups", "groups", postgresql_using="gin").ddl_if(dialect="postgresql"),
        Index("ux_devices_number", "number", unique=True),
        Index("ix_devices_presence_owner", "presence_owner"),
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
    # What the agent reported in its last Hello; apart from the user's labels.
    facts: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=True))
    credential_revoked_at: datetime | None = None
    enrollment_token_id: str = Field(default="", max_length=64)
    # When ResolveTargets(any_available) last picked the device: the least recently picked goes next.
    picked_at: datetime | None = None
    # Unique across the service, increasing, never reused (Foreman-style numeric host ids); set at insert.
    number: int | None = Field(default=None, sa_type=BigInteger)
    # The runs replica holding the device's stream while it is online ("" when none or unknown); the
    # device goes offline when that replica's presence lease runs out.
    presence_owner: str | None = Field(default="", max_length=64)


class PresenceLeaseRow(SQLModel, table=True):
    """A runs replica's promise to report again before lease_until (see DeviceStore.sweep_presence)."""

    __tablename__ = "devices_presence_leases"

    replica_id: str = Field(primary_key=True, max_length=64)
    lease_until: datetime
    renewed_at: datetime


class DeviceSearchRow(SQLModel, table=True):
    __tablename__ = "devices_saved_searches"

    tenant_id: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=256)
    description: str = Field(default="", max_length=2048)
    query: str = Field(max_length=4096)
    created_at: datetime
    updated_at: datetime


class DeviceGroupRow(SQLModel, table=True):
    __tablename__ = "devices_groups"

    tenant_id: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=256)
    description: str = Field(default="", max_length=2048)
    created_at: datetime
    updated_at: datetime


class EnrollmentTokenRow(SQLModel, table=True):
    __tablename__ = "devices_enrollment_tokens"
    __table_args__ = (Index("ix_devices_enrollment_token_hash", "token_hash", unique=True),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(index=True, max_length=64)
    # SHA-256 (hex) of the token; the token itself is never stored.
    token_hash: str = Field(max_length=64)
    description: str = Field(default="", max_length=1024)
    group: str = Field(default="", max_length=128)
    expires_at: datetime | None = None
    max_uses: int = 0
    uses: int = 0
    revoked: bool = False
    created_at: datetime


class DeviceCounterRow(SQLModel, table=True):
    """Named sequences; `device_number` hands out DeviceRow.number (never reused, even after a delete)."""

    __tablename__ = "devices_counters"

    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(default=0, sa_type=BigInteger)


DEVICE_NUMBER = "device_number"
# Moved forward by every change of a credential (revocation, rotation, deletion), in its transaction.
CREDENTIAL_REVISION = "credential_revision"

TABLES = [DeviceRow, DeviceGroupRow, EnrollmentTokenRow, DeviceCounterRow, PresenceLeaseRow,
          DeviceSearchRow]


class _Exists(Exception):
    pass


@dataclass(frozen=True)
class Presence:
    tenant_id: str
    device_id: str
    online: bool
    agent_version: str
    seen_at: datetime
    facts: dict[str, str] | None = None
    stream_opened: bool = False


class DeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def number_unnumbered(self) -> None:
        """Gives devices made before numbers existed theirs (the migrator added the column), at start."""
        async with self.db.session() as session:  # devices made before numbers existed get theirs
            unnumbered = list((await session.exec(
                select(DeviceRow).where(DeviceRow.number.is_(None)).order_by(DeviceRow.created_at))).all())  # type: ignore[union-attr]
            if unnumbered:
                last = await self._take_numbers(session, len(unnumbered))
                for i, row in enumerate(unnumbered):
                    row.number = last - len(unnumbered) + 1 + i
                    session.add(row)

    @staticmethod
    async def _take_numbers(session, count: int) -> int:
        """Reserves `count` device numbers in the caller's transaction; answers the highest."""
        return await session.run_sync(reserve, DeviceCounterRow, DEVICE_NUMBER, count)

    def _in_group(self, group: str) -> ColumnElement[bool]:
        if self.db.is_postgres:
            return type_coerce(DeviceRow.groups, JSONB).contains([group])
        member = func.json_each(DeviceRow.groups).table_valued("value")
        return exists(sa_select(member.c.value).where(member.c.value == group))

    async def insert(self, row: DeviceRow) -> bool:
        """Stores a new device; answers False when the tenant already has one with that id."""
        try:
            async with self.db.session() as session:
                if await session.get(DeviceRow, (row.tenant_id, row.id)) is not None:
                    return False  # (before a number is taken: numbers of refused inserts are not skipped)
                row.number = await self._take_numbers(session, 1)
                session.add(row)
        except IntegrityError:
            return False
        return True

    async def get(self, tenant_id: str, device_id: str) -> DeviceRow | None:
        async with self.db.session() as session:
            return await session.get(DeviceRow, (tenant_id, device_id))

    async def get_by_number(self, tenant_id: str, number: int) -> DeviceRow | None:
        query = select(DeviceRow).where(DeviceRow.tenant_id == tenant_id, DeviceRow.number == number)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def count(self, tenant_id: str, *, group: str = "", condition: ColumnElement[bool] | None = None,
                    online: bool | None = None) -> int:
        query = sa_select(func.count()).select_from(DeviceRow).where(DeviceRow.tenant_id == tenant_id)
        if group:
            query = query.where(self._in_group(group))
        if condition is not None:
            query = query.where(condition)
        if online is not None:
            query = query.where(DeviceRow.online == online)
        async with self.db.session() as session:
            return int((await _execute(session, query)).scalar())

    async def list(self, tenant_id: str, *, group: str = "", after_id: str = "", limit: int = 50,
                   condition: ColumnElement[bool] | None = None, online: bool | None = None,
                   offset: int = 0) -> list[DeviceRow]:
        query = select(DeviceRow).where(DeviceRow.tenant_id == tenant_id)
        if group:
            query = query.where(self._in_group(group))
        if condition is not None:
            query = query.where(condition)
        if online is not None:
            query = query.where(DeviceRow.online == online)
        if after_id:
            query = query.where(DeviceRow.id > after_id)
        query = query.order_by(DeviceRow.id)
        if offset:
            query = query.offset(offset)
        async with self.db.session() as session:
            return list((await session.exec(query.limit(limit))).all())

    async def matching(self, tenant_id: str, device_ids: Sequence[str], group: str,
                       condition: ColumnElement[bool] | None = None,
                       device_numbers: Sequence[int] = ()) -> list[DeviceRow]:
        """In one query: the tenant's devices with one of these ids, in this group or matching the
        condition, ordered by id."""
        conditions = []
        if device_ids:
            conditions.append(DeviceRow.id.in_(list(device_ids)))  # type: ignore[attr-defined]
        if device_numbers:
            conditions.append(DeviceRow.number.in_(list(device_numbers)))  # type: ignore[union-attr]
        if group:
            conditions.append(self._in_group(group))
        if condition is not None:
            conditions.append(condition)
        query = select(DeviceRow).where(DeviceRow.tenant_id == tenant_id, or_(false(), *conditions))
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(DeviceRow.id))).all())

    def _candidates(self, tenant_id: str, group: str, condition: ColumnElement[bool] | None):
        """The devices any_available picks from: in the group and matching the condition."""
        query = select(DeviceRow).where(DeviceRow.tenant_id == tenant_id)
        if group:
            query = query.where(self._in_group(group))
        if condition is not None:
            query = query.where(condition)
        return query

    async def candidates(self, tenant_id: str, group: str, condition: ColumnElement[bool] | None,
                         exclude: Sequence[str] = (), limit: int = 0) -> list[DeviceRow]:
        """Every device any_available picks from (online or not), by id, but those excluded; `limit` (0: all)."""
        query = self._candidates(tenant_id, group, condition).order_by(DeviceRow.id)
        if exclude:
            query = query.where(DeviceRow.id.not_in(list(exclude)))  # type: ignore[attr-defined]
        if limit:
            query = query.limit(limit)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def pick_available(self, tenant_id: str, group: str, condition: ColumnElement[bool] | None,
                             now: datetime, count: int = 1) -> list[DeviceRow]:
        """Up to `count` online devices in the group and matching the condition, the least recently picked
        first; marks them picked (in that order, so the next pick goes on from where this one ended)."""
        query = self._candidates(tenant_id, group, condition).where(DeviceRow.online == True)  # noqa: E712
        query = query.order_by(DeviceRow.picked_at.is_not(None), DeviceRow.picked_at,  # type: ignore[union-attr]
                               DeviceRow.id).limit(max(1, count))
        if self.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        async with self.db.session() as session:
            rows = list((await session.exec(query)).all())
            for i, row in enumerate(rows):
                row.picked_at = now + timedelta(microseconds=i)
                session.add(row)
            return rows

    async def credential_hashes(self, keys: Sequence[tuple[str, str]]) -> tuple[int, dict[tuple[str, str], str]]:
        """The credential revision, then (tenant, device) -> its current credential hash for those of these
        devices that exist. The revision is read first: a credential changed after it moves it again."""
        found: dict[tuple[str, str], str] = {}
        keys = list(dict.fromkeys(keys))
        async with self.db.session() as session:
            revision = (await _execute(session, sa_select(DeviceCounterRow.value).where(
                DeviceCounterRow.name == CREDENTIAL_REVISION))).scalar() or 0
            for start in range(0, len(keys), 500):
                batch = keys[start:start + 500]
                query = sa_select(DeviceRow.tenant_id, DeviceRow.id, DeviceRow.credential_hash).where(
                    tuple_(DeviceRow.tenant_id, DeviceRow.id).in_(batch))
                for tenant_id, device_id, credential_hash in (await session.exec(query)).all():  # type: ignore[call-overload]
                    found[(tenant_id, device_id)] = credential_hash
        return int(revision), found

    # -- groups ------------------------------------------------------------------------------

    async def insert_group(self, row: DeviceGroupRow) -> bool:
        try:
            async with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    async def get_group(self, tenant_id: str, group_id: str) -> DeviceGroupRow | None:
        async with self.db.session() as session:
            return await session.get(DeviceGroupRow, (tenant_id, group_id))

    async def list_groups(self, tenant_id: str, after_id: str, limit: int) -> list[DeviceGroupRow]:
        query = select(DeviceGroupRow).where(DeviceGroupRow.tenant_id == tenant_id)
        if after_id:
            query = query.where(DeviceGroupRow.id > after_id)
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(DeviceGroupRow.id).limit(limit))).all())

    async def save_group(self, tenant_id: str, group_id: str, values: dict[str, Any]) -> DeviceGroupRow | None:
        return await self._save(DeviceGroupRow, (tenant_id, group_id), values)

    async def delete_group(self, tenant_id: str, group_id: str) -> bool:
        statement = delete(DeviceGroupRow).where(DeviceGroupRow.tenant_id == tenant_id, DeviceGroupRow.id == group_id)
        async with self.db.session() as session:
            return (await session.exec(statement)).rowcount == 1  # type: ignore[call-overload]

    # -- saved searches ------------------------------------------------------------------------

    async def insert_search(self, row: DeviceSearchRow) -> bool:
        try:
            async with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    async def get_search(self, tenant_id: str, search_id: str) -> DeviceSearchRow | None:
        async with self.db.session() as session:
            return await session.get(DeviceSearchRow, (tenant_id, search_id))

    async def list_searches(self, tenant_id: str, after_id: str, limit: int) -> list[DeviceSearchRow]:
        query = select(DeviceSearchRow).where(DeviceSearchRow.tenant_id == tenant_id)
        if after_id:
            query = query.where(DeviceSearchRow.id > after_id)
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(DeviceSearchRow.id).limit(limit))).all())

    async def save_search(self, tenant_id: str, search_id: str, values: dict[str, Any]) -> DeviceSearchRow | None:
        return await self._save(DeviceSearchRow, (tenant_id, search_id), values)

    async def delete_search(self, tenant_id: str, search_id: str) -> bool:
        statement = delete(DeviceSearchRow).where(DeviceSearchRow.tenant_id == tenant_id,
                                                  DeviceSearchRow.id == search_id)
        async with self.db.session() as session:
            return (await session.exec(statement)).rowcount == 1  # type: ignore[call-overload]

    # -- enrolment tokens ----------------------------------------------------------------------

    async def insert_token(self, row: EnrollmentTokenRow) -> None:
        async with self.db.session() as session:
            session.add(row)

    async def list_tokens(self, tenant_id: str, after_id: str, limit: int) -> list[EnrollmentTokenRow]:
        query = select(EnrollmentTokenRow).where(EnrollmentTokenRow.tenant_id == tenant_id)
        if after_id:
            query = query.where(EnrollmentTokenRow.id > after_id)
        async with self.db.session() as session:
            return list((await session.exec(query.order_by(EnrollmentTokenRow.id).limit(limit))).all())

    async def revoke_token(self, tenant_id: str, token_id: str) -> EnrollmentTokenRow | None:
        async with self.db.session() as session:
            row = await session.get(EnrollmentTokenRow, token_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            row.revoked = True
            session.add(row)
            return row

    async def enroll(self, token_hash: str, now: datetime, make_device: Any) -> tuple[str, DeviceRow | None]:
        """In one transaction: uses the token (if valid) and inserts the device make_device(token) builds.
        Answers ("ok", row), ("invalid", None) or ("exists", None)."""
        try:
            async with self.db.session() as session:
                query = select(EnrollmentTokenRow).where(EnrollmentTokenRow.token_hash == token_hash)
                if self.db.is_postgres:
                    query = query.with_for_update()
                token = (await session.exec(query)).first()
                if token is None or token.revoked or (token.expires_at is not None and token.expires_at <= now) \
                        or (token.max_uses and token.uses >= token.max_uses):
                    return "invalid", None
                used = await session.exec(  # type: ignore[call-overload]
                    update(EnrollmentTokenRow)
                    .where(EnrollmentTokenRow.id == token.id, EnrollmentTokenRow.uses == token.uses)
                    .values(uses=token.uses + 1))
                if used.rowcount != 1:
                    return "invalid", None  # used concurrently up to its limit; the agent may retry
                row = make_device(token)
                if await session.get(DeviceRow, (row.tenant_id, row.id)) is not None:
                    raise _Exists()
                row.number = await self._take_numbers(session, 1)
                session.add(row)
                await session.flush()
                return "ok", row
        except (_Exists, IntegrityError):
            return "exists", None

    async def save(self, tenant_id: str, device_id: str, values: dict[str, Any],
                   credential: bool = False) -> DeviceRow | None:
        """Applies values to the tenant's device; None when it is gone. `credential`: the values change its
        credential, which moves the credential revision forward in the same transaction."""
        return await self._save(DeviceRow, (tenant_id, device_id), values, revise=credential)

    async def _save(self, model: type[SQLModel], key: tuple[str, str], values: dict[str, Any],
                    revise: bool = False) -> Any:
        """Read-modify-write of one row by primary key, in one transaction; None when it is gone."""
        async with self.db.session() as session:
            stored = await session.get(model, key)
            if stored is None:
                return None
            if revise:
                await session.run_sync(reserve, DeviceCounterRow, CREDENTIAL_REVISION, 1)
            for name, value in values.items():
                setattr(stored, name, value)
            session.add(stored)
            return stored

    async def delete(self, tenant_id: str, device_id: str) -> bool:
        """Deletes the device (its credential with it: the credential revision moves forward)."""
        statement = delete(DeviceRow).where(DeviceRow.tenant_id == tenant_id, DeviceRow.id == device_id)
        async with self.db.session() as session:
            if (await session.exec(statement)).rowcount != 1:  # type: ignore[call-overload]
                return False
            await session.run_sync(reserve, DeviceCounterRow, CREDENTIAL_REVISION, 1)
            return True

    async def by_credential(self, device_id: str, credential_hash: str) -> DeviceRow | None:
        """The device (of any tenant) holding this credential, if its id is device_id."""
        query = select(DeviceRow).where(DeviceRow.credential_hash == credential_hash, DeviceRow.id == device_id)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def record_facts(self, tenant_id: str, device_id: str, facts: dict[str, str]) -> None:
        statement = update(DeviceRow).where(DeviceRow.tenant_id == tenant_id, DeviceRow.id == device_id).values(
            facts=facts)
        async with self.db.session() as session:
            await session.exec(statement)  # type: ignore[call-overload]

    async def record_presence(self, changes: Sequence[Presence], *, replica_id: str = "",
                              lease_until: datetime | None = None, now: datetime | None = None,
                              release: bool = False) -> bool:
        """Applies presence changes and renews the replica's lease, in one transaction; answers whether
        the replica must report every stream again (its lease had run out, or it had none).

        An older report never overwrites a newer one. With a replica: a change with stream_opened makes
        the device the replica's; its other changes (refreshes, going offline) apply only while the device
        is still the replica's, so a replica that notices a dead stream late never marks offline a device
        that reconnected elsewhere. `release`: every device of the replica goes offline, its lease ends."""
        resync = False
        async with self.db.session() as session:
            if replica_id and lease_until is not None and not release:
                lease = await session.get(PresenceLeaseRow, replica_id)
                if lease is None:
                    resync = True
                    session.add(PresenceLeaseRow(replica_id=replica_id, lease_until=lease_until, renewed_at=now))
                else:
                    resync = as_utc(lease.lease_until) <= (now or lease_until)
                    lease.lease_until, lease.renewed_at = lease_until, now
                    session.add(lease)
                await session.flush()
            for statement, params in _presence_updates(changes, replica_id).items():
                await _SqlAlchemySession.execute(session, statement, params)
            if replica_id and release:
                await session.exec(update(DeviceRow).where(  # type: ignore[call-overload]
                    DeviceRow.presence_owner == replica_id).values(online=False, presence_owner=""))
                await session.exec(delete(PresenceLeaseRow).where(  # type: ignore[call-overload]
                    PresenceLeaseRow.replica_id == replica_id))
        return resync

    async def sweep_presence(self, now: datetime, unowned_seen_before: datetime | None = None) -> int:
        """Marks offline the devices of every replica whose lease ran out, and ends those leases; answers
        how many devices went offline. Idempotent: devices-service replicas may sweep at once.

        With `unowned_seen_before`, also the online devices no replica owns (reported by a release
        without leases, or left online by one that died before) last seen before then: a full scan."""
        expired = sa_select(PresenceLeaseRow.replica_id).where(PresenceLeaseRow.lease_until <= now)
        async with self.db.session() as session:
            result = await session.exec(update(DeviceRow).where(  # type: ignore[call-overload]
                DeviceRow.presence_owner.in_(expired.scalar_subquery()),  # type: ignore[union-attr]
            ).values(online=False, presence_owner="").execution_options(synchronize_session=False))
            swept = result.rowcount or 0
            await session.exec(delete(PresenceLeaseRow).where(  # type: ignore[call-overload]
                PresenceLeaseRow.lease_until <= now))
            if unowned_seen_before is not None:
                result = await session.exec(update(DeviceRow).where(  # type: ignore[call-overload]
                    DeviceRow.online == True,  # noqa: E712
                    or_(DeviceRow.presence_owner.is_(None), DeviceRow.presence_owner == ""),  # type: ignore[union-attr]
                    or_(DeviceRow.last_seen_at.is_(None),  # type: ignore[union-attr]
                        DeviceRow.last_seen_at < unowned_seen_before),  # type: ignore[operator]
                ).values(online=False).execution_options(synchronize_session=False))
                swept += result.rowcount or 0
            return swept


def _presence_updates(changes: Sequence[Presence], replica_id: str) -> dict[Any, list[dict[str, Any]]]:
    """The UPDATE statements applying these presence changes, each with its rows' parameters (one
    executemany per shape of change, so a report of thousands of devices costs a few statements)."""
    statements: dict[tuple[bool, ...], Any] = {}
    updates: dict[Any, list[dict[str, Any]]] = {}
    for change in changes:
        claims = bool(replica_id) and change.online and change.stream_opened
        shape = (change.online, claims, bool(replica_id) and not claims, bool(change.agent_version),
                 bool(change.facts))
        if shape not in statements:
            statements[shape] = _presence_statement(*shape, replica_id=replica_id)
        params = {"p_tenant": change.tenant_id, "p_device": change.device_id, "p_seen": change.seen_at,
                  "p_version": change.agent_version, "p_facts": change.facts}
        updates.setdefault(statements[shape], []).append(params)
    return updates


def _presence_statement(online: bool, claims: bool, owned_only: bool, version: bool, facts: bool, *,
                        replica_id: str) -> Any:
    """An older report never overwrites a newer one; a replica's changes other than its stream opening
    apply only to the devices it owns; a device going offline is nobody's."""
    table: Any = DeviceRow.__table__  # type: ignore[attr-defined]
    seen = bindparam("p_seen", type_=table.c.last_seen_at.type)
    where = [table.c.tenant_id == bindparam("p_tenant"), table.c.id == bindparam("p_device"),
             or_(table.c.last_seen_at.is_(None), table.c.last_seen_at <= seen)]
    values: dict[str, Any] = {"online": online, "last_seen_at": seen}
    if version:
        values["agent_version"] = bindparam("p_version")
    if facts:
        values["facts"] = bindparam("p_facts", type_=table.c.facts.type)
    if claims:
        values["presence_owner"] = replica_id
    elif owned_only:
        where.append(table.c.presence_owner == replica_id)
    if not online:
        values["presence_owner"] = ""
    return update(table).where(*where).values(**values)


async def _execute(session, statement):
    """SQLAlchemy's execute (RETURNING, scalars), without SQLModel's nudge towards exec()."""
    return await _SqlAlchemySession.execute(session, statement)
