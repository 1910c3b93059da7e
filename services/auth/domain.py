"""Auth rules: the first-start bootstrap, API keys (hashed, scoped, expiring, revocable), authentication."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime, timedelta

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_USER, ApiKey, Principal
from services.common.clock import Clock
from services.common.secrets import new_secret, secret_hash
from services.common.errors import InvalidArgument, NotFound, Unauthenticated
from services.common.principal import ADMIN, READ, TRIGGER, WRITE, require_scope

from .store import ApiKeyRow, AuthStore, ProjectRow, TenantRow, UserRow

log = logging.getLogger(__name__)

KEY_PREFIX = "jl_live_"
PREFIX_LEN = 12  # "jl_live_" and 4 random characters: enough to tell keys apart, useless to an attacker
SCOPES = (READ, TRIGGER, WRITE, ADMIN)  # in display order
DEFAULT_PROJECT = "default"
ADMIN_LOGIN = "admin"
MAX_NAME_LEN = 256
# last_used_at is advisory: written at most once per key per this many seconds.
LAST_USED_RESOLUTION = timedelta(seconds=30)
USAGE_FLUSH_SECS = 5.0


def new_key() -> str:
    return new_secret(KEY_PREFIX)



def display_prefix(key: str) -> str:
    """The start of a key, never more than half of it (a short, user-chosen key stays secret)."""
    return key[: min(PREFIX_LEN, len(key) // 2)]


def parse_scopes(requested: list[str]) -> list[str]:
    """Validated, de-duplicated scopes in canonical order; names are case-insensitive."""
    wanted = {scope.strip().upper() for scope in requested}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InvalidArgument(f"unknown scope {unknown[0]!r}: scopes are " + ", ".join(SCOPES))
    if not wanted:
        raise InvalidArgument("at least one scope is required: " + ", ".join(SCOPES))
    return [scope for scope in SCOPES if scope in wanted]


def to_api_key(row: ApiKeyRow, secret: str = "") -> ApiKey:
    return ApiKey(
        id=row.id, project_id=row.project_id, name=row.name, prefix=row.prefix,
        scopes=row.scopes.split(",") if row.scopes else [], expires_at=row.expires_at, revoked_at=row.revoked_at,
        last_used_at=row.last_used_at, created_at=row.created_at, secret=secret,
    )


class UsageRecorder:
    """Coalesces last_used_at writes: remembered in memory, flushed in one transaction every few seconds.

    A key is written at most once per LAST_USED_RESOLUTION (judged by the stored time, so replicas
    coalesce too); authentication itself never waits for a write."""

    def __init__(self, store: AuthStore, interval: float = USAGE_FLUSH_SECS) -> None:
        self.store = store
        self.interval = interval
        self._pending: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, row: ApiKeyRow, now: datetime) -> None:
        if row.id in self._pending:
            self._pending[row.id] = max(self._pending[row.id], now)
        elif row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            self._pending[row.id] = now

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        try:
            await self.store.touch(pending)
        except Exception:  # advisory data: log, keep serving
            log.warning("could not record API key usage", exc_info=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-key-usage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


class Auth:
    def __init__(self, store: AuthStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.usage = UsageRecorder(store)

    async def bootstrap(self, api_key: str | None) -> str | None:
        """On the first start (no tenant yet) creates the default tenant, project, admin user and admin key.

        Answers the admin key when it created one, None on every later start."""
        now = self.clock.now()
        key = api_key or new_key()
        tenant = TenantRow(id=str(uuid.uuid4()), name="default", created_at=now)
        project = ProjectRow(tenant_id=tenant.id, id=DEFAULT_PROJECT, name="Default project", created_at=now)
        user = UserRow(id=str(uuid.uuid4()), tenant_id=tenant.id, login=ADMIN_LOGIN, created_at=now)
        row = ApiKeyRow(
            id=str(uuid.uuid4()), tenant_id=tenant.id, project_id=project.id, user_id=user.id,
            name="bootstrap admin key", prefix=display_prefix(key), key_hash=secret_hash(key), scopes=ADMIN,
            created_at=now,
        )
        return key if await self.store.bootstrap(tenant, project, user, row) else None

    async def authenticate(self, api_key: str) -> Principal:
        if not api_key:
            raise Unauthenticated("an API key is required")
        found = await self.store.key_by_hash(secret_hash(api_key))
        if found is None:
            raise Unauthenticated("invalid API key")
        row, login = found
        now = self.clock.now()
        if row.revoked_at is not None:
            raise Unauthenticated("API key revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise Unauthenticated("API key expired")
        self.usage.record(row, now)
        return Principal(
            tenant_id=row.tenant_id, project_id=row.project_id, subject_id=row.user_id,
            subject_type=SUBJECT_TYPE_USER, subject_name=login, scopes=row.scopes.split(","),
        )

    async def create_key(self, principal: Principal, name: str, scopes: list[str],
                         expires_at: datetime | None) -> ApiKey:
        require_scope(principal, ADMIN)
        name = name.strip()
        if not name:
            raise InvalidArgument("name is required")
        if len(name) > MAX_NAME_LEN:
            raise InvalidArgument(f"name must be at most {MAX_NAME_LEN} characters")
        now = self.clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        secret = new_key()
        row = ApiKeyRow(
            id=str(uuid.uuid4()), tenant_id=principal.tenant_id, project_id=principal.project_id or DEFAULT_PROJECT,
            user_id=principal.subject_id, name=name, prefix=display_prefix(secret), key_hash=secret_hash(secret),
            scopes=",".join(parse_scopes(scopes)), expires_at=expires_at, created_at=now,
        )
        await self.store.insert_key(row)
        return to_api_key(row, secret)

    async def list_keys(self, principal: Principal) -> list[ApiKey]:
        return [to_api_key(row) for row in await self.store.keys(principal.tenant_id)]

    async def revoke_key(self, principal: Principal, key_id: str) -> ApiKey:
        require_scope(principal, ADMIN)
        row = await self.store.revoke(principal.tenant_id, key_id, self.clock.now())
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return to_api_key(row)
