"""Auth rules: the first-start bootstrap, tenants and their principals, API keys and personal access tokens
(hashed, scoped, expiring, revocable, rotatable), JWTs for service accounts, authentication."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

from jobline.auth.v1 import auth_pb2
from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, SUBJECT_TYPE_USER, ApiKey, Principal
from services.common.clock import Clock
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from services.common.principal import ADMIN, READ, TRIGGER, WRITE, listed_project, require_scope
from services.common.secrets import new_secret, secret_hash

from .store import ApiKeyRow, AuthStore, ProjectRow, ServiceAccountRow, TenantRow, UserRow
from .tokens import TOKEN_TTL, SigningKeys, looks_like_jwt

log = logging.getLogger(__name__)

KEY_PREFIX = "jl_live_"
# What a key is for decides its prefix (and, for personal access tokens, how it may be presented).
NATIVE, DEVICE_JOBS, PERSONAL = "native", "device_jobs", "personal_access_token"
KINDS = {auth_pb2.KEY_KIND_UNSPECIFIED: NATIVE, auth_pb2.KEY_KIND_NATIVE: NATIVE,
         auth_pb2.KEY_KIND_DEVICE_JOBS: DEVICE_JOBS, auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN: PERSONAL}
KIND_ENUM = {NATIVE: auth_pb2.KEY_KIND_NATIVE, DEVICE_JOBS: auth_pb2.KEY_KIND_DEVICE_JOBS,
             PERSONAL: auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN}
PREFIXES = {NATIVE: KEY_PREFIX, DEVICE_JOBS: "amk_live_", PERSONAL: "jlp_"}
CLIENT_ID_PREFIX, CLIENT_SECRET_PREFIX = "jlsa_", "jlcs_"
# A client id as create_service_account makes them; anything else is refused before any lookup (a client that
# swapped its id and secret must not have the secret looked up, and logged, as an id).
CLIENT_ID = re.compile(re.escape(CLIENT_ID_PREFIX) + r"[0-9a-f]{32}")
# The key's prefix and 4 random characters: enough to tell keys apart, useless to an attacker.
PREFIX_EXTRA = 4
PREFIX_LEN = len(KEY_PREFIX) + PREFIX_EXTRA
DEFAULT_SCOPES = [READ, TRIGGER, WRITE]
MAX_GRACE_MINUTES = 10080
MAX_CREDENTIAL_LEN = 4096
MAX_LOGIN_LEN = 256
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
SCOPES = (READ, TRIGGER, WRITE, ADMIN)  # in display order
DEFAULT_PROJECT = "default"
ADMIN_LOGIN = "admin"
MAX_NAME_LEN = 256
# last_used_at is advisory: written at most once per key per this many seconds.
LAST_USED_RESOLUTION = timedelta(seconds=30)
USAGE_FLUSH_SECS = 5.0


def new_key(kind: str = NATIVE) -> str:
    return new_secret(PREFIXES[kind])


def display_prefix(key: str, kind: str = NATIVE) -> str:
    """The start of a key, never more than half of it (a short, user-chosen key stays secret)."""
    wanted = len(PREFIXES[kind]) + PREFIX_EXTRA if key.startswith(PREFIXES[kind]) else PREFIX_LEN
    return key[: min(wanted, len(key) // 2)]


def check_name(name: str, what: str = "name", limit: int = MAX_NAME_LEN) -> str:
    name = name.strip()
    if not name:
        raise InvalidArgument(f"{what} is required")
    if len(name) > limit:
        raise InvalidArgument(f"{what} must be at most {limit} characters")
    return name


def parse_scopes(requested: list[str]) -> list[str]:
    """Validated, de-duplicated scopes in canonical order; names are case-insensitive."""
    wanted = {scope.strip().upper() for scope in requested}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InvalidArgument(f"unknown scope {unknown[0]!r}: scopes are " + ", ".join(SCOPES))
    if not wanted:
        return list(DEFAULT_SCOPES)
    return [scope for scope in SCOPES if scope in wanted]


def to_api_key(row: ApiKeyRow, secret: str = "") -> ApiKey:
    return ApiKey(
        id=row.id, project_id=row.project_id, name=row.name, key_prefix=row.prefix,
        scopes=row.scopes.split(",") if row.scopes else [], expires_at=row.expires_at, revoked_at=row.revoked_at,
        last_used_at=row.last_used_at, created_at=row.created_at, key=secret,
        replaced_by_key_id=row.replaced_by_key_id or "", grace_expires_at=row.grace_expires_at,
        kind=KIND_ENUM.get(row.kind or NATIVE, auth_pb2.KEY_KIND_NATIVE),
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
        self.signing = SigningKeys(store, clock)

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
            created_at=now, kind=NATIVE,
        )
        return key if await self.store.bootstrap(tenant, project, user, row) else None

    # --- authentication ---------------------------------------------------------------------------------------

    async def authenticate(self, api_key: str = "", *, bearer: str = "", login: str = "",
                           token: str = "", basic: bool = False) -> Principal:
        """The principal of an API key (X-API-Key), a Bearer JWT or API key, or HTTP Basic login + PAT."""
        if basic:
            return await self._authenticate_basic(login, token)
        if bearer and looks_like_jwt(bearer):
            return await self._authenticate_jwt(bearer)
        return await self._authenticate_key(api_key or bearer, kinds=(NATIVE, DEVICE_JOBS))

    async def _authenticate_key(self, key: str, kinds: tuple[str, ...], login: str | None = None) -> Principal:
        if not key:
            raise Unauthenticated("an API key is required")
        if len(key) > MAX_CREDENTIAL_LEN:
            raise Unauthenticated("invalid API key")
        found = await self.store.key_by_hash(secret_hash(key))
        if found is None:
            raise Unauthenticated("invalid API key")
        row, owner_login = found
        if (row.kind or NATIVE) not in kinds or (login is not None and owner_login != login):
            raise Unauthenticated("invalid API key")
        now = self.clock.now()
        if row.revoked_at is not None:
            raise Unauthenticated("API key revoked")
        if row.grace_expires_at is not None and row.grace_expires_at <= now:
            raise Unauthenticated("API key rotated")
        if row.expires_at is not None and row.expires_at <= now:
            raise Unauthenticated("API key expired")
        subject_type, name = SUBJECT_TYPE_USER, owner_login
        if row.subject_type == "service_account":
            account = await self.store.service_account(tenant_id=row.tenant_id, account_id=row.user_id)
            if account is None or account.disabled_at is not None:
                raise Unauthenticated("invalid API key")
            subject_type, name = SUBJECT_TYPE_SERVICE_ACCOUNT, account.name
        self.usage.record(row, now)
        return Principal(
            tenant_id=row.tenant_id, project_id=row.project_id, subject_id=row.user_id,
            subject_type=subject_type, subject_name=name, scopes=row.scopes.split(","),
            credential_id=row.id, credential_kind="personal_access_token" if row.kind == PERSONAL else "api_key",
        )

    async def _authenticate_basic(self, login: str, token: str) -> Principal:
        if not login or not token or len(login) > MAX_LOGIN_LEN:
            raise Unauthenticated("invalid login or token")
        try:
            return await self._authenticate_key(token, kinds=(PERSONAL,), login=login)
        except Unauthenticated as refusal:
            if "invalid" in refusal.message:
                raise Unauthenticated("invalid login or token") from None
            raise Unauthenticated(refusal.message.replace("API key", "personal access token")) from None

    async def _authenticate_jwt(self, token: str) -> Principal:
        claims = await self.signing.verify(token)
        tenant_id, subject = claims.get("tid"), claims.get("sub")
        if not isinstance(tenant_id, str) or not isinstance(subject, str):
            raise Unauthenticated("invalid token")
        account = await self.store.service_account(tenant_id=tenant_id, account_id=subject)
        if account is None or account.disabled_at is not None:
            raise Unauthenticated("invalid token")
        scopes = [s for s in claims.get("scp", []) if s in SCOPES] if isinstance(claims.get("scp"), list) else []
        return Principal(tenant_id=tenant_id, project_id=account.project_id, subject_id=account.id,
                         subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, subject_name=account.name, scopes=scopes,
                         credential_id=str(claims.get("jti", "")), credential_kind="jwt")

    async def issue_token(self, client_id: str, client_secret: str) -> auth_pb2.IssueTokenResponse:
        """The client_credentials grant: a JWT for the service account, valid TOKEN_TTL."""
        if not CLIENT_ID.fullmatch(client_id) or not client_secret or len(client_secret) > MAX_CREDENTIAL_LEN:
            raise Unauthenticated("invalid client credentials")
        account = await self.store.service_account(client_id=client_id)
        if (account is None or account.disabled_at is not None
                or not hmac.compare_digest(account.secret_hash, secret_hash(client_secret))):
            raise Unauthenticated("invalid client credentials")
        scopes = account.scopes.split(",")
        token, expires = await self.signing.sign({"sub": account.id, "tid": account.tenant_id,
                                                  "pid": account.project_id, "scp": scopes})
        return auth_pb2.IssueTokenResponse(access_token=token, token_type="Bearer",
                                           expires_in=int(TOKEN_TTL.total_seconds()), expires_at=expires,
                                           scopes=scopes)

    # --- API keys (the caller's tenant) ----------------------------------------------------------------------

    async def _project(self, tenant_id: str, project_id: str) -> str:
        if not project_id:
            return DEFAULT_PROJECT
        if len(project_id) > 128 or await self.store.project(tenant_id, project_id) is None:
            raise NotFound(f"project {project_id[:128]} not found")
        return project_id

    async def _new_key(self, *, tenant_id: str, project_id: str, owner_id: str, owner_type: str | None, name: str,
                       scopes: list[str], expires_at: datetime | None, kind: str) -> tuple[ApiKeyRow, str]:
        name = check_name(name)
        now = self.clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        secret = new_key(kind)
        row = ApiKeyRow(
            id=str(uuid.uuid4()), tenant_id=tenant_id, project_id=project_id, user_id=owner_id, name=name,
            prefix=display_prefix(secret, kind), key_hash=secret_hash(secret), scopes=",".join(parse_scopes(scopes)),
            expires_at=expires_at, created_at=now, kind=kind, subject_type=owner_type,
        )
        return row, secret

    async def create_key(self, principal: Principal, name: str, scopes: list[str], expires_at: datetime | None,
                         project_id: str = "", kind: int = 0) -> ApiKey:
        require_scope(principal, ADMIN)
        kind_name = KINDS.get(kind)
        if kind_name is None or kind_name == PERSONAL:
            raise InvalidArgument("kind must be native or device_jobs")
        project = await self._project(principal.tenant_id, project_id or principal.project_id)
        owner_type = "service_account" if principal.subject_type == SUBJECT_TYPE_SERVICE_ACCOUNT else None
        row, secret = await self._new_key(tenant_id=principal.tenant_id, project_id=project,
                                          owner_id=principal.subject_id, owner_type=owner_type, name=name,
                                          scopes=scopes, expires_at=expires_at, kind=kind_name)
        await self.store.insert_key(row)
        return to_api_key(row, secret)

    async def list_keys(self, principal: Principal, project_id: str = "") -> list[ApiKey]:
        """The tenant's keys (a credential bound to a project: that project's)."""
        project = listed_project(principal, project_id)
        if project is None:
            return []
        rows = await self.store.keys(principal.tenant_id, project, kinds=(NATIVE, DEVICE_JOBS))
        return [to_api_key(row) for row in rows]

    async def revoke_key(self, principal: Principal, key_id: str) -> ApiKey:
        require_scope(principal, ADMIN)
        found = await self.store.key(principal.tenant_id, key_id)
        row = None if found is None or found.kind == PERSONAL else \
            await self.store.revoke(principal.tenant_id, key_id, self.clock.now())
        if row is None:
            raise NotFound(f"API key {key_id[:128]} not found")
        return to_api_key(row)

    async def rotate_key(self, principal: Principal, key_id: str, grace_minutes: int) -> auth_pb2.RotateApiKeyResponse:
        require_scope(principal, ADMIN)
        if not 0 <= grace_minutes <= MAX_GRACE_MINUTES:
            raise InvalidArgument(f"grace_period_minutes must be between 1 and {MAX_GRACE_MINUTES}")
        old = await self.store.key(principal.tenant_id, key_id)
        if old is None or old.kind == PERSONAL:
            raise NotFound(f"API key {key_id[:128]} not found")
        now = self.clock.now()
        if old.revoked_at is not None or old.replaced_by_key_id or (old.expires_at and old.expires_at <= now):
            raise InvalidArgument("only a live API key can be rotated")
        new, secret = await self._new_key(tenant_id=old.tenant_id, project_id=old.project_id, owner_id=old.user_id,
                                          owner_type=old.subject_type, name=old.name, scopes=old.scopes.split(","),
                                          expires_at=old.expires_at, kind=old.kind or NATIVE)
        grace = now + timedelta(minutes=grace_minutes) if grace_minutes else None
        if await self.store.rotate(principal.tenant_id, key_id, new, grace, now) is None:
            raise InvalidArgument("only a live API key can be rotated")
        return auth_pb2.RotateApiKeyResponse(
            old_key_id=old.id, new_key_id=new.id, project_id=new.project_id, name=new.name, key=secret,
            key_prefix=new.prefix, scopes=new.scopes.split(","), expires_at=new.expires_at, created_at=new.created_at,
            grace_expires_at=grace)

    # --- operators (AuthAdminService: the service credential is the authority) ------------------------------

    async def _tenant(self, tenant: str) -> TenantRow:
        row = await self.store.tenant(tenant) if tenant and len(tenant) <= MAX_NAME_LEN else None
        if row is None:
            raise NotFound(f"tenant {tenant[:MAX_NAME_LEN]!r} not found")
        return row

    async def create_tenant(self, name: str, default_project: str = DEFAULT_PROJECT) -> auth_pb2.Tenant:
        name = check_name(name)
        if await self.store.tenant(name) is not None:
            raise AlreadyExists(f"tenant {name!r} already exists")
        now = self.clock.now()
        tenant = TenantRow(id=str(uuid.uuid4()), name=name, created_at=now)
        rows: list = [tenant]
        project = default_project or DEFAULT_PROJECT
        if project != "-":
            rows.append(ProjectRow(tenant_id=tenant.id, id=check_id(project), name=project, created_at=now))
        await self.store.add(*rows)
        return auth_pb2.Tenant(id=tenant.id, name=tenant.name, created_at=now)

    async def list_tenants(self) -> list[auth_pb2.Tenant]:
        return [auth_pb2.Tenant(id=t.id, name=t.name, created_at=t.created_at) for t in await self.store.tenants()]

    async def create_project(self, tenant: str, project_id: str, name: str) -> auth_pb2.Project:
        row = await self._tenant(tenant)
        project_id = check_id(project_id)
        if await self.store.project(row.id, project_id) is not None:
            raise AlreadyExists(f"project {project_id} already exists")
        project = ProjectRow(tenant_id=row.id, id=project_id, name=check_name(name or project_id),
                             created_at=self.clock.now())
        await self.store.add(project)
        return auth_pb2.Project(tenant_id=row.id, id=project.id, name=project.name, created_at=project.created_at)

    async def create_user(self, tenant: str, login: str) -> auth_pb2.User:
        row = await self._tenant(tenant)
        login = check_name(login, "login", MAX_LOGIN_LEN)
        if ":" in login:
            raise InvalidArgument("a login cannot contain ':'")  # HTTP Basic splits on it
        if await self.store.user(row.id, login=login) is not None:
            raise AlreadyExists(f"user {login!r} already exists")
        user = UserRow(id=str(uuid.uuid4()), tenant_id=row.id, login=login, created_at=self.clock.now())
        await self.store.add(user)
        return auth_pb2.User(tenant_id=row.id, id=user.id, login=login, created_at=user.created_at)

    async def create_service_account(self, tenant: str, project_id: str, name: str,
                                     scopes: list[str]) -> auth_pb2.ServiceAccount:
        row = await self._tenant(tenant)
        project = await self._project(row.id, project_id)
        secret = new_secret(CLIENT_SECRET_PREFIX)
        account = ServiceAccountRow(
            id=str(uuid.uuid4()), tenant_id=row.id, project_id=project, name=check_name(name),
            client_id=CLIENT_ID_PREFIX + uuid.uuid4().hex, secret_hash=secret_hash(secret),
            scopes=",".join(parse_scopes(scopes)), created_at=self.clock.now(),
        )
        await self.store.add(account)
        return auth_pb2.ServiceAccount(
            tenant_id=row.id, project_id=project, id=account.id, name=account.name, client_id=account.client_id,
            client_secret=secret, scopes=account.scopes.split(","), created_at=account.created_at)

    async def issue_key(self, request: auth_pb2.IssueApiKeyRequest) -> ApiKey:
        tenant = await self._tenant(request.tenant)
        kind = KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument("unknown kind")
        if bool(request.user_login) == bool(request.service_account_id):
            raise InvalidArgument("the owner is a user_login or a service_account_id")
        if request.user_login:
            user = await self.store.user(tenant.id, login=request.user_login[:MAX_LOGIN_LEN])
            if user is None:
                raise NotFound(f"user {request.user_login[:MAX_LOGIN_LEN]!r} not found")
            owner_id, owner_type = user.id, None
        else:
            if kind == PERSONAL:
                raise InvalidArgument("personal access tokens belong to users")
            account = await self.store.service_account(tenant_id=tenant.id,
                                                       account_id=request.service_account_id[:64])
            if account is None:
                raise NotFound(f"service account {request.service_account_id[:64]} not found")
            owner_id, owner_type = account.id, "service_account"
        project = await self._project(tenant.id, request.project_id)
        expires_at = request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        row, secret = await self._new_key(tenant_id=tenant.id, project_id=project, owner_id=owner_id,
                                          owner_type=owner_type, name=request.name, scopes=list(request.scopes),
                                          expires_at=expires_at, kind=kind)
        await self.store.insert_key(row)
        return to_api_key(row, secret)

    async def revoke_credential(self, tenant: str, key_id: str) -> ApiKey:
        """Revokes an API key or personal access token, or a service account by its id: its client
        credentials, its JWTs (even those not expired yet) and its API keys are refused from then on."""
        tenant_id, now = (await self._tenant(tenant)).id, self.clock.now()
        row = await self.store.revoke(tenant_id, key_id, now) if key_id else None
        if row is not None:
            return to_api_key(row)
        account = await self.store.disable_service_account(tenant_id, key_id[:64], now) if key_id else None
        if account is None:
            raise NotFound(f"credential {key_id[:128]} not found")
        return ApiKey(id=account.id, project_id=account.project_id, name=account.name,
                      scopes=account.scopes.split(",") if account.scopes else [], created_at=account.created_at,
                      revoked_at=account.disabled_at)

    async def rotate_signing_key(self) -> auth_pb2.SigningKey:
        row = await self.signing.rotate()
        return auth_pb2.SigningKey(kid=row.kid, algorithm=row.algorithm, created_at=row.created_at)


def check_id(value: str) -> str:
    if not ID_PATTERN.fullmatch(value or ""):
        raise InvalidArgument("an id is 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value
