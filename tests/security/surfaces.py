"""Tenants as every surface sees them: one caller per tenant holding each credential kind, the surfaces'
route prefixes, and drones (fleet-simulator streams) for the devices that need to be online."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from starlette.routing import Route

from agent.fleet import Fleet
from jobline.auth.v1 import auth_pb2

from .conftest import Stack

# Surface -> the path prefixes of its routes (B's before D's: both are under /api).
PREFIXES: dict[str, tuple[str, ...]] = {
    "A": ("/job/api/",), "B": ("/api/svc/v1/",), "C": ("/v1/",), "D": ("/api/", "/apidoc/"), "E": ("/v3/", "/v3"),
}


def surface_of(path: str) -> str | None:
    for surface, prefixes in PREFIXES.items():
        if any(path == prefix or path.startswith(prefix) for prefix in prefixes):
            return surface
    return None


def served(app) -> list[tuple[str, str, Route]]:
    """(surface, method, route) for every route of the gateway app (HEAD, Starlette's twin of GET, left out)."""
    found = []
    for route in app.routes:
        if not isinstance(route, Route):
            continue
        surface = surface_of(route.path)
        for method in sorted(route.methods or ()):
            if surface is not None and method != "HEAD":
                found.append((surface, method, route))
    return found


def basic(login: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{token}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Caller:
    """A tenant's credentials: an ADMIN API key, an ADMIN personal access token of its user `admin`, and a
    service account (READ, TRIGGER, WRITE) with the JWT `/v3/auth/token` issued it."""

    name: str
    tenant_id: str
    key: str
    pat: str
    client_id: str
    client_secret: str
    jwt: str
    secrets: list[str] = field(default_factory=list)

    def headers(self, surface: str) -> dict[str, str]:
        """Each surface's own way to present a credential."""
        if surface == "A":
            return {"X-API-Key": self.key}
        if surface == "D":
            return basic("admin", self.pat)
        if surface == "E":
            return bearer(self.jwt)
        return bearer(self.key)


async def new_caller(stack: Stack, client: httpx.AsyncClient, name: str) -> Caller:
    tenant = await stack.admin.CreateTenant(auth_pb2.CreateTenantRequest(name=name))
    await stack.admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tenant.id, login="admin"))
    key = await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
        tenant=tenant.id, project_id="default", user_login="admin", name="admin", scopes=["ADMIN"]))
    pat = await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
        tenant=tenant.id, user_login="admin", name="foreman", scopes=["ADMIN"],
        kind=auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN))
    account = await stack.admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
        tenant=tenant.id, project_id="default", name="pilot", scopes=["READ", "TRIGGER", "WRITE"]))
    issued = await client.post("/v3/auth/token", json={
        "grant_type": "client_credentials", "client_id": account.client_id, "client_secret": account.client_secret})
    assert issued.status_code == 200, issued.text
    jwt = issued.json()["access_token"]
    return Caller(name, tenant.id, key.key, pat.key, account.client_id, account.client_secret, jwt,
                  [key.key, pat.key, account.client_secret, jwt])


async def eventually(check: Callable[[], Awaitable[object]], what: str, timeout: float = 10.0) -> object:
    try:
        async with asyncio.timeout(timeout):
            while not (value := await check()):
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
    return value


class Drones:
    """Fleet-simulator agents (real agent streams to the runs service) flying `mission`s."""

    def __init__(self, stack: Stack, devices: list[tuple[str, str]]) -> None:
        self.fleet = Fleet(stack.peers["runs"], devices, handlers=["mission"])
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Fleet:
        self.task = asyncio.create_task(self.fleet.run())
        await eventually(lambda: _true(self.fleet.connected == len(self.fleet.agents)), "the drones' streams")
        return self.fleet

    async def __aexit__(self, *exc: object) -> None:
        await self.fleet.stop()
        if self.task is not None:
            self.task.cancel()


async def _true(value: bool) -> bool:
    return value
