"""The real services in-process on free ports, enforcing the service credential, and the gateway on them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from cli.platform import free_port
from gateway.app import create_app
from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.app import build as build_auth
from services.common import server, service_auth
from services.common.channels import Channels
from services.common.clock import FakeClock
from services.common.config import SERVICES, Settings
from services.devices.app import build as build_devices
from services.jobs.app import build as build_jobs
from services.runs.app import build as build_runs

BOOTSTRAP_KEY = "jl_live_security_bootstrap_key_0123456789"


@dataclass
class Stack:
    token: str
    clock: FakeClock
    peers: dict[str, str]
    channels: Channels
    running: dict[str, server.RunningServer]

    @property
    def admin(self) -> auth_pb2_grpc.AuthAdminServiceStub:
        return auth_pb2_grpc.AuthAdminServiceStub(self.channels.get(self.peers["auth"]))

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        return auth_pb2_grpc.AuthServiceStub(self.channels.get(self.peers["auth"]))

    def settings(self, cache_secs: float = 0.0) -> Settings:
        return Settings(service="gateway", listen_addr="", database_url="", peers=self.peers,
                        auth_cache_secs=cache_secs, trigger_rate_limit_per_min=0, bulk_trigger_rate_limit_per_min=0)

    def client(self, cache_secs: float = 0.0, channels: Channels | None = None) -> httpx.AsyncClient:
        app = create_app(self.settings(cache_secs), channels or Channels(service_token=self.token))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
        client.app = app  # type: ignore[attr-defined]
        return client

    async def tenant(self, name: str) -> "Tenant":
        tenant = await self.admin.CreateTenant(auth_pb2.CreateTenantRequest(name=name))
        await self.admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tenant.id, login="admin"))
        key = await self.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tenant.id, project_id="default", user_login="admin", name="admin", scopes=["ADMIN"]))
        return Tenant(tenant.id, key.key)


@dataclass
class Tenant:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
async def stack(tmp_path) -> AsyncIterator[Stack]:
    token = "svc-" + secrets.token_urlsafe(24)
    service_auth.configure(token)  # what server.run() does: the services' own peer calls carry it
    clock = FakeClock()
    ports = {name: free_port() for name in SERVICES}
    peers = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    builders = {"auth": build_auth, "jobs": build_jobs, "devices": build_devices, "runs": build_runs}
    running: dict[str, server.RunningServer] = {}
    try:
        for name in ("auth", "devices", "jobs", "runs"):
            settings = Settings(service=name, listen_addr=peers[name], database_url=f"sqlite:///{tmp_path}/{name}.db",
                                peers=peers, bootstrap_api_key=BOOTSTRAP_KEY if name == "auth" else None,
                                presence_lease_secs=86_400)  # renewed on the real clock, judged on the FakeClock
            extra = {"ticking": False} if name in ("jobs", "runs") else {}
            registration = await builders[name](settings, clock=clock, **extra)
            running[name] = await server.start(registration, peers[name], service_token=token)
        channels = Channels(service_token=token)
        yield Stack(token, clock, peers, channels, running)
        await channels.close()
    finally:
        for item in reversed(list(running.values())):
            await item.stop(0)
        service_auth.configure(None)
