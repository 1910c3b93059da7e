"""The device registry through the gateway's native REST API, on the real devices service (SQLite and
PostgreSQL): groups, filters and the query language, enrolment tokens, credential revocation."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from sqlalchemy import event

from gateway.app import create_app
from jobline.auth.v1 import auth_pb2_grpc
from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from services.common import server
from services.common.channels import Channels
from services.common.clock import FakeClock
from services.common.config import Settings
from services.devices.app import build
from services.devices.domain import Devices

from ..gateway.conftest import ADMIN_KEY, FakeAuth


@dataclass
class Registry:
    http: httpx.AsyncClient
    stub: devices_pb2_grpc.DeviceServiceStub
    devices: Devices
    clock: FakeClock

    async def device(self, device_id: str, **fields) -> dict:
        response = await self.http.post("/v1/devices", json={"id": device_id, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    async def ids(self, **params) -> list[str]:
        response = await self.http.get("/v1/devices", params={"page_size": 1000, **params})
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["devices"]]

    async def presence(self, device_id: str, online: bool, facts: dict | None = None) -> None:
        change = devices_pb2.PresenceChange(tenant_id="t1", device_id=device_id, online=online,
                                            agent_version="a/1", facts=facts or {})
        change.seen_at.FromDatetime(self.clock.now())
        await self.stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[change]))


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[Registry]:
    clock = FakeClock()
    devices = await server.start(await build(Settings(service="devices", listen_addr="", database_url=database_url),
                                             clock=clock), "127.0.0.1:0")
    auth_registration = server.Registration(
        add_to_server=[lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(), s)],
        service_names=["jobline.auth.v1.AuthService"])
    auth = await server.start(auth_registration, "127.0.0.1:0")
    unused = "127.0.0.1:1"
    settings = Settings(service="gateway", listen_addr="", database_url="", peers={
        "devices": f"127.0.0.1:{devices.port}", "auth": f"127.0.0.1:{auth.port}", "jobs": unused, "runs": unused})
    channels = Channels()
    app = create_app(settings, channels)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http, \
                grpc.aio.insecure_channel(f"127.0.0.1:{devices.port}") as channel:
            yield Registry(http, devices_pb2_grpc.DeviceServiceStub(channel), devices.registration.handle, clock)
    finally:
        await channels.close()
        await auth.stop(0)
        await devices.stop(0)


async def test_list_renders_devices_and_next_page_token_and_filters(registry: Registry) -> None:
    for i in range(5):
        await registry.device(f"d{i}", groups=["lab"] if i % 2 else ["office"], labels={"os": "android"})
    await registry.presence("d1", True)
    await registry.presence("d4", True)
    page = (await registry.http.get("/v1/devices", params={"page_size": 2})).json()
    assert set(page) == {"devices", "next_page_token"} and [d["id"] for d in page["devices"]] == ["d0", "d1"]
    rest = (await registry.http.get("/v1/devices", params={"page_size": 10,
                                                           "page_token": page["next_page_token"]})).json()
    assert [d["id"] for d in rest["devices"]] == ["d2", "d3", "d4"] and rest["next_page_token"] == ""
    assert await registry.ids(group="lab") == ["d1", "d3"]
    assert await registry.ids(online="true") == ["d1", "d4"]
    assert await registry.ids(online="false", group="lab") == ["d3"]
    assert await registry.ids(query="name ~ d% and not group = lab") == ["d0", "d2", "d4"]
    # A page token belongs to its filters.
    online_page = (await registry.http.get("/v1/devices", params={"page_size": 1, "online": "true"})).json()
    wrong = await registry.http.get("/v1/devices", params={"page_token": online_page["next_page_token"]})
    assert wrong.status_code == 400


async def test_device_groups_are_a_resource(registry: Registry) -> None:
    created = await registry.http.post("/v1/device-groups", json={"id": "lab", "name": "The lab",
                                                                 "description": "phones on the bench"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "The lab" and created.json()["created_at"]
    assert (await registry.http.post("/v1/device-groups", json={"id": "lab"})).status_code == 409
    assert (await registry.http.post("/v1/device-groups", json={"id": "a/b"})).status_code == 400
    await registry.http.post("/v1/device-groups", json={"id": "eu"})
    listed = (await registry.http.get("/v1/device-groups")).json()
    assert [g["id"] for g in listed["groups"]] == ["eu", "lab"] and listed["next_page_token"] == ""
    patched = await registry.http.patch("/v1/device-groups/lab", json={"description": "moved"})
    assert (patched.json()["name"], patched.json()["description"]) == ("The lab", "moved")
    assert (await registry.http.get("/v1/device-groups/lab")).json()["description"] == "moved"
    # Membership is the device's groups.
    await registry.device("p1", groups=["lab"])
    assert await registry.ids(group="lab") == ["p1"]
    assert (await registry.http.delete("/v1/device-groups/lab")).status_code == 204
    assert (await registry.http.get("/v1/device-groups/lab")).status_code == 404


async def test_the_query_language(registry: Registry) -> None:
    await registry.device("web-1", name="web-1", groups=["lab", "eu"], labels={"os": "android", "tier": "gold"})
    await registry.device("web-2", name="Web-2", groups=["lab"], labels={"os": "ios"})
    await registry.device("db-1", name="db-1", groups=["us"], labels={"os": "android"})
    await registry.device("old", name="old box", model="X 1")
    await registry.presence("web-2", True, facts={"os": "linux", "arch": "arm64"})
    cases = {
        "name ~ web%": ["web-1", "web-2"],  # LIKE is case-insensitive
        "group = lab and label.os = android": ["web-1"],
        "name ^ (web-1, db-1)": ["db-1", "web-1"],
        "online = true": ["web-2"],
        "online != true": ["db-1", "old", "web-1"],
        "label.os != android": ["old", "web-2"],  # devices without the label too
        "not (group = lab or group = us)": ["old"],
        "group ~ 'e%' or label.tier = gold": ["web-1"],
        "group != lab": ["db-1", "old"],
        "group ^ (us, eu)": ["db-1", "web-1"],
        'name = "old box"': ["old"],
        "model = 'X 1' OR fact.arch = arm64": ["old", "web-2"],
        "fact.os = linux and label.os = ios": ["web-2"],
        "id !~ %-1 and (online = false)": ["old"],
        "label.missing = x": [],
    }
    for query, expected in cases.items():
        assert sorted(await registry.ids(query=query)) == expected, query
    device = (await registry.http.get("/v1/devices/web-2")).json()
    assert device["facts"] == {"os": "linux", "arch": "arm64"} and device["labels"] == {"os": "ios"}


@pytest.mark.parametrize(("query", "position", "words"), [
    ("name ~", 7, "expected a value"),
    ("name = a and", 13, "expected a field"),
    ("nme = a", 1, "unknown field"),
    ("name == a", 7, "expected a value"),
    ("(name = a", 10, "expected ')'"),
    ("name = a b", 10, "expected 'and', 'or'"),
    ("name ^ (a b)", 11, "expected ',' or ')'"),
    ("name = 'a", 8, "unterminated"),
    ("online = maybe", 10, "true or false"),
    ("name = a $", 10, "unexpected character"),
    ("  ", 1, "empty"),
])
async def test_bad_queries_are_refused_with_the_position(registry: Registry, query: str, position: int,
                                                         words: str) -> None:
    response = await registry.http.get("/v1/devices", params={"query": query})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert f"position {position}" in message and words in message, message


async def test_resolve_compiles_the_query_to_sql_and_picks_any_available(registry: Registry) -> None:
    for device_id in ("a", "b", "c", "d"):
        await registry.device(device_id, groups=["lab"], labels={"os": "android" if device_id != "d" else "ios"})
    for device_id in ("a", "b", "d"):
        await registry.presence(device_id, True)
    principal = (("x-jobline-principal-bin", b""),)
    from jobline.auth.v1.auth_pb2 import Principal
    from services.common.principal import ADMIN, to_metadata
    principal = to_metadata(Principal(tenant_id="t1", subject_id="u1", scopes=[ADMIN]))

    async def resolve(**targets) -> list[str]:
        answer = await registry.stub.ResolveTargets(devices_pb2.ResolveTargetsRequest(
            targets=devices_pb2.DeviceTargets(**targets)), metadata=principal)
        return [d.id for d in answer.devices]

    statements: list[str] = []
    engine = registry.devices.store.db.engine.sync_engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert await resolve(device_ids=["c"], query="label.os = android and online = true") == ["c", "a", "b"]
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 1 and "online" in statements[0]  # one SQL query, the filter inside it
    # One online device of the group, the least recently picked each time.
    picks = []
    for _ in range(4):
        registry.clock.advance(1)
        picks.append(await resolve(group="lab", any_available=True))
    assert picks == [["a"], ["b"], ["d"], ["a"]]
    registry.clock.advance(1)
    assert await resolve(query="label.os = android", any_available=True) == ["b"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await resolve(query="label.os = ios and online = false", any_available=True)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await resolve(query="name ~")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "position 7" in error.value.details()


async def test_enrolment_tokens_register_devices(registry: Registry) -> None:
    created = await registry.http.post("/v1/enrollment-tokens", json={"group": "lab", "max_uses": 2,
                                                                       "ttl_secs": 3600, "description": "bench"})
    assert created.status_code == 201, created.text
    token = created.json()
    assert token["token"].startswith("jle_") and token["expires_at"] and token["uses"] == 0
    listed = (await registry.http.get("/v1/enrollment-tokens")).json()["tokens"]
    assert [t["id"] for t in listed] == [token["id"]] and "token" not in listed[0]

    async def enroll(secret: str, device_id: str) -> devices_pb2.Device:
        return await registry.stub.EnrollDevice(devices_pb2.EnrollDeviceRequest(
            token=secret, device_id=device_id, name=f"Phone {device_id}", facts={"os": "android"},
            agent_version="jobline-agent/0.2"))

    device = await enroll(token["token"], "p1")
    assert device.credential.startswith("jld_") and device.tenant_id == "t1" and list(device.groups) == ["lab"]
    agent = await registry.stub.AuthenticateAgent(devices_pb2.AuthenticateAgentRequest(
        device_id="p1", credential=device.credential))
    assert agent.id == "p1"
    shown = (await registry.http.get("/v1/devices/p1")).json()
    assert (shown["name"], shown["facts"], shown["enrollment_token_id"]) == (
        "Phone p1", {"os": "android"}, token["id"])
    assert "credential" not in shown

    with pytest.raises(grpc.aio.AioRpcError) as error:  # an existing id: refused, and the use not spent
        await enroll(token["token"], "p1")
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await enroll(token["token"], "p2")
    with pytest.raises(grpc.aio.AioRpcError) as error:  # max_uses reached
        await enroll(token["token"], "p3")
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await registry.http.get("/v1/enrollment-tokens")).json()["tokens"][0]["uses"] == 2

    second = (await registry.http.post("/v1/enrollment-tokens", json={"ttl_secs": 60})).json()
    revoked = await registry.http.post(f"/v1/enrollment-tokens/{second['id']}:revoke", json={})
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    third = (await registry.http.post("/v1/enrollment-tokens", json={"ttl_secs": 60})).json()
    registry.clock.advance(61)
    for secret in (second["token"], third["token"], "jle_nonsense", ""):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await enroll(secret, "p9")
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await registry.http.post("/v1/enrollment-tokens/nope:revoke", json={})).status_code == 404
    assert (await registry.http.post("/v1/enrollment-tokens", json={"max_uses": -1})).status_code == 400


async def test_revoking_and_rotating_the_credential(registry: Registry) -> None:
    credential = (await registry.device("p1"))["credential"]

    def sha(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    async def invalid(secret: str) -> list[str]:
        answer = await registry.stub.ValidateAgents(devices_pb2.ValidateAgentsRequest(agents=[
            devices_pb2.AgentCredential(tenant_id="t1", device_id="p1", credential_sha256=sha(secret)),
            devices_pb2.AgentCredential(tenant_id="t1", device_id="ghost", credential_sha256=sha(secret)),
        ]))
        return [a.device_id for a in answer.invalid]

    assert await invalid(credential) == ["ghost"]
    revoked = await registry.http.post("/v1/devices/p1:revokeCredential", json={})
    assert revoked.status_code == 200 and revoked.json()["credential_revoked_at"]
    assert "credential" not in revoked.json()
    assert await invalid(credential) == ["p1", "ghost"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await registry.stub.AuthenticateAgent(devices_pb2.AuthenticateAgentRequest(device_id="p1",
                                                                                   credential=credential))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED

    rotated = (await registry.http.post("/v1/devices/p1:rotateCredential", json={})).json()
    assert rotated["credential"].startswith("jld_") and "credential_revoked_at" not in rotated
    assert await invalid(rotated["credential"]) == ["ghost"]
    assert "credential" not in (await registry.http.get("/v1/devices/p1")).json()
    assert (await registry.http.post("/v1/devices/nope:revokeCredential", json={})).status_code == 404
