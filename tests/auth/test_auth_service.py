"""The auth service over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from jobline.auth.v1.auth_pb2 import Principal
from services.auth.app import build
from services.auth.domain import Auth
from services.common import server
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.principal import ADMIN, READ, TRIGGER, WRITE, to_metadata

BOOTSTRAP_KEY = "jl_test_key"
Metadata = tuple[tuple[str, bytes], ...]


def settings(url: str, bootstrap_api_key: str | None = BOOTSTRAP_KEY) -> Settings:
    return Settings(service="auth", listen_addr="127.0.0.1:0", database_url=url, bootstrap_api_key=bootstrap_api_key)


@dataclass
class AuthService:
    stub: auth_pb2_grpc.AuthServiceStub
    auth: Auth
    clock: FakeClock
    admin: Metadata  # the bootstrap admin's principal, as the gateway would pass it

    async def authenticate(self, api_key: str) -> Principal:
        return (await self.stub.Authenticate(auth_pb2.AuthenticateRequest(api_key=api_key))).principal

    async def create_key(self, name: str = "ci", scopes: tuple[str, ...] = (READ,), metadata: Metadata | None = None,
                         **fields) -> auth_pb2.ApiKey:
        request = auth_pb2.CreateApiKeyRequest(name=name, scopes=scopes, **fields)
        return await self.stub.CreateApiKey(request, metadata=metadata or self.admin)

    async def keys(self, metadata: Metadata | None = None) -> list[auth_pb2.ApiKey]:
        return list((await self.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=metadata or self.admin)).api_keys)


@asynccontextmanager
async def serving(url: str, bootstrap_api_key: str | None = BOOTSTRAP_KEY,
                  clock: FakeClock | None = None) -> AsyncIterator[tuple[auth_pb2_grpc.AuthServiceStub, Auth]]:
    """The real service on a free port, and a stub talking to it; stopped however the block ends."""
    running = await server.start(await build(settings(url, bootstrap_api_key), clock=clock or FakeClock()),
                                 "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield auth_pb2_grpc.AuthServiceStub(channel), running.registration.handle
    finally:
        await running.stop(0)


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[AuthService]:
    clock = FakeClock()
    async with serving(database_url, clock=clock) as (stub, auth):
        principal = (await stub.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal
        yield AuthService(stub, auth, clock, to_metadata(principal))


async def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code, error.value.details()
    return error.value.details() or ""


def other_tenant(*scopes: str, tenant_id: str = "t-other") -> Metadata:
    return to_metadata(Principal(tenant_id=tenant_id, project_id="default", subject_id="u-other",
                                 scopes=list(scopes) or [ADMIN]))


# --- bootstrap ---------------------------------------------------------------------------------------------------


async def test_first_start_bootstraps_the_admin_key_from_settings_once(database_url: str, capsys) -> None:
    for _ in range(2):
        async with serving(database_url) as (stub, _):
            principal = (await stub.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal
            keys = (await stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=to_metadata(principal))).api_keys
        assert principal.tenant_id and principal.project_id == "default" and principal.subject_id
        assert (principal.subject_type, principal.subject_name, list(principal.scopes)) == (
            auth_pb2.SUBJECT_TYPE_USER, "admin", [ADMIN])
        assert len(keys) == 1 and keys[0].scopes == [ADMIN] and not keys[0].key
        assert keys[0].key_prefix and BOOTSTRAP_KEY.startswith(keys[0].key_prefix) and keys[0].key_prefix != BOOTSTRAP_KEY
    printed = capsys.readouterr().out
    assert printed.count(f"Admin API key (shown once): {BOOTSTRAP_KEY}") == 1
    assert printed.count("API key") == 1


async def test_without_a_configured_key_the_first_start_makes_and_prints_a_random_one(database_url: str,
                                                                                       capsys) -> None:
    async with serving(database_url, bootstrap_api_key=None) as (stub, _):
        match = re.search(r"Admin API key \(shown once\): (\S+)", capsys.readouterr().out)
        assert match and re.fullmatch(r"jl_live_[A-Za-z0-9_-]{40}", match.group(1))
        principal = (await stub.Authenticate(auth_pb2.AuthenticateRequest(api_key=match.group(1)))).principal
    assert principal.subject_name == "admin" and list(principal.scopes) == [ADMIN]


# --- Authenticate -------------------------------------------------------------------------------------------------


async def test_unknown_and_empty_keys_are_refused(service: AuthService) -> None:
    for key in ("jl_live_nope", ""):
        await refused(service.authenticate(key), grpc.StatusCode.UNAUTHENTICATED)


async def test_keys_are_stored_hashed_never_in_clear(service: AuthService) -> None:
    created = await service.create_key(scopes=(TRIGGER,))
    principal = await service.authenticate(BOOTSTRAP_KEY)
    rows = await service.auth.store.keys(principal.tenant_id)
    row = next(r for r in rows if r.id == created.id)
    assert row.key_hash == hashlib.sha256(created.key.encode()).hexdigest()
    for stored in rows:
        assert created.key not in repr(stored.model_dump()) and BOOTSTRAP_KEY not in repr(stored.model_dump())


async def test_expired_keys_are_refused_as_expired(service: AuthService) -> None:
    expires = service.clock.now() + timedelta(seconds=60)
    key = await service.create_key(expires_at=expires)
    assert key.expires_at.ToDatetime().replace(tzinfo=expires.tzinfo) == expires
    assert (await service.authenticate(key.key)).scopes == [READ]
    service.clock.advance(61)
    details = await refused(service.authenticate(key.key), grpc.StatusCode.UNAUTHENTICATED)
    assert "expired" in details


async def test_revoked_keys_are_refused(service: AuthService) -> None:
    key = await service.create_key()
    await service.authenticate(key.key)
    revoked = await service.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id=key.id), metadata=service.admin)
    assert revoked.HasField("revoked_at") and not revoked.key
    await refused(service.authenticate(key.key), grpc.StatusCode.UNAUTHENTICATED)
    service.clock.advance(5)
    again = await service.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id=key.id), metadata=service.admin)
    assert again.revoked_at == revoked.revoked_at  # revoking twice keeps the first time


async def test_a_revoked_service_account_loses_its_tokens_client_credentials_and_keys(service: AuthService) -> None:
    tenant = (await service.auth.list_tenants())[0].id
    account = await service.auth.create_service_account(tenant, "", "pilot", [READ])
    other = await service.auth.create_service_account(tenant, "", "other", [READ])
    token = (await service.auth.issue_token(account.client_id, account.client_secret)).access_token
    kept = (await service.auth.issue_token(other.client_id, other.client_secret)).access_token
    key = await service.auth.issue_key(auth_pb2.IssueApiKeyRequest(tenant=tenant, service_account_id=account.id,
                                                                   name="ci", scopes=[READ]))
    assert (await service.stub.Authenticate(auth_pb2.AuthenticateRequest(bearer_token=token))).principal.scopes
    revoked = await service.auth.revoke_credential(tenant, account.id)
    assert revoked.id == account.id and revoked.HasField("revoked_at")
    await refused(service.stub.Authenticate(auth_pb2.AuthenticateRequest(bearer_token=token)),
                  grpc.StatusCode.UNAUTHENTICATED)  # an hour before it expires
    await refused(service.stub.IssueToken(auth_pb2.IssueTokenRequest(
        client_id=account.client_id, client_secret=account.client_secret)), grpc.StatusCode.UNAUTHENTICATED)
    await refused(service.stub.Authenticate(auth_pb2.AuthenticateRequest(api_key=key.key)),
                  grpc.StatusCode.UNAUTHENTICATED)
    assert (await service.stub.Authenticate(auth_pb2.AuthenticateRequest(bearer_token=kept))).principal.scopes
    for swapped in ((account.client_secret, account.client_id), (account.client_id.upper(), account.client_secret)):
        request = auth_pb2.IssueTokenRequest(client_id=swapped[0], client_secret=swapped[1])
        await refused(service.stub.IssueToken(request), grpc.StatusCode.UNAUTHENTICATED)  # before any lookup
    with pytest.raises(Exception, match="not found"):  # another tenant's account is not this tenant's to revoke
        await service.auth.revoke_credential((await service.auth.create_tenant("t2")).id, other.id)


async def test_last_used_is_written_coalesced_off_the_hot_path(service: AuthService, monkeypatch) -> None:
    key = await service.create_key()
    await service.auth.usage.flush()  # the fixture's own authentication
    writes: list[dict] = []
    real_touch = service.auth.store.touch

    async def counting_touch(last_used):
        writes.append(dict(last_used))
        await real_touch(last_used)

    monkeypatch.setattr(service.auth.store, "touch", counting_touch)
    first_use = service.clock.now()
    for _ in range(20):
        await service.authenticate(key.key)
    assert writes == []  # authenticating never writes
    await service.auth.usage.flush()
    assert writes == [{key.id: first_use}]

    async def last_used() -> object:
        return next(k for k in await service.keys() if k.id == key.id).last_used_at.ToDatetime()

    assert await last_used() == first_use.replace(tzinfo=None)
    service.clock.advance(10)
    await service.authenticate(key.key)
    await service.auth.usage.flush()
    assert await last_used() == first_use.replace(tzinfo=None)  # within 30 s: not written again
    service.clock.advance(25)
    await service.authenticate(key.key)
    await service.auth.usage.flush()
    assert await last_used() == (first_use + timedelta(seconds=35)).replace(tzinfo=None)


# --- key management -----------------------------------------------------------------------------------------------


async def test_created_keys_authenticate_with_their_scopes_and_show_their_secret_once(service: AuthService) -> None:
    key = await service.create_key(name="deploy bot", scopes=("trigger", READ, READ))
    assert re.fullmatch(r"jl_live_[A-Za-z0-9_-]{40}", key.key)
    assert key.key_prefix == key.key[:12] and list(key.scopes) == [READ, TRIGGER] and key.name == "deploy bot"
    admin = await service.authenticate(BOOTSTRAP_KEY)
    principal = await service.authenticate(key.key)
    assert (principal.tenant_id, principal.project_id, principal.subject_id, principal.subject_name) == (
        admin.tenant_id, "default", admin.subject_id, "admin")
    assert list(principal.scopes) == [READ, TRIGGER]
    listed = {k.id: k for k in await service.keys()}
    assert len(listed) == 2 and key.id in listed  # the bootstrap key and this one
    assert listed[key.id].key_prefix == key.key_prefix and not any(k.key for k in listed.values())


async def test_invalid_key_requests_are_refused(service: AuthService) -> None:
    past = service.clock.now() - timedelta(seconds=1)
    for name, scopes, fields in (("ci", ("OWNER",), {}), ("", (READ,), {}),
                                 ("x" * 257, (READ,), {}), ("ci", (READ,), {"expires_at": past})):
        await refused(service.create_key(name, scopes, **fields), grpc.StatusCode.INVALID_ARGUMENT)


async def test_creating_and_revoking_keys_needs_admin(service: AuthService) -> None:
    key = await service.create_key()
    reader = to_metadata(await service.authenticate((await service.create_key(scopes=(READ, WRITE))).key))
    await refused(service.create_key(metadata=reader), grpc.StatusCode.PERMISSION_DENIED)
    await refused(service.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id=key.id), metadata=reader),
                  grpc.StatusCode.PERMISSION_DENIED)
    assert len(await service.keys(reader)) == 3


async def test_another_tenants_keys_are_answered_as_missing(service: AuthService) -> None:
    key = await service.create_key()
    other = (await service.auth.create_tenant("other")).id
    await refused(service.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id=key.id), metadata=other_tenant()),
                  grpc.StatusCode.NOT_FOUND)
    await refused(service.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id="no-such-key"), metadata=service.admin),
                  grpc.StatusCode.NOT_FOUND)
    assert await service.keys(other_tenant()) == []
    theirs = await service.create_key(metadata=other_tenant(tenant_id=other))
    assert (await service.authenticate(theirs.key)).tenant_id == other
    assert theirs.id not in {k.id for k in await service.keys()}
    await service.authenticate(key.key)  # still valid


async def test_key_management_without_a_principal_is_refused(service: AuthService) -> None:
    for call in (
        service.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="ci", scopes=[READ])),
        service.stub.ListApiKeys(auth_pb2.ListApiKeysRequest()),
        service.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id="x")),
    ):
        await refused(call, grpc.StatusCode.UNAUTHENTICATED)
