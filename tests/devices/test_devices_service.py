"""The devices service over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from sqlalchemy import event

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from services.common import server
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.principal import READ, TRIGGER, WRITE, to_metadata
from services.devices.app import build
from services.devices.domain import Devices

ALICE = to_metadata(Principal(tenant_id="t-alice", project_id="default", subject_id="u1", scopes=[READ, WRITE]))
BOB = to_metadata(Principal(tenant_id="t-bob", project_id="default", subject_id="u2", scopes=[READ, WRITE]))


@dataclass
class DeviceService:
    stub: devices_pb2_grpc.DeviceServiceStub
    devices: Devices
    clock: FakeClock

    async def create(self, device_id: str, metadata=ALICE, **fields) -> devices_pb2.Device:
        request = devices_pb2.CreateDeviceRequest(device=devices_pb2.Device(id=device_id, **fields))
        return await self.stub.CreateDevice(request, metadata=metadata)

    async def get(self, device_id: str, metadata=ALICE) -> devices_pb2.Device:
        return await self.stub.GetDevice(devices_pb2.GetDeviceRequest(device_id=device_id), metadata=metadata)

    async def list(self, metadata=ALICE, **fields) -> devices_pb2.ListDevicesResponse:
        return await self.stub.ListDevices(devices_pb2.ListDevicesRequest(**fields), metadata=metadata)

    async def resolve(self, device_ids=(), group: str = "", metadata=ALICE) -> devices_pb2.ResolveTargetsResponse:
        targets = devices_pb2.DeviceTargets(device_ids=device_ids, group=group)
        return await self.stub.ResolveTargets(devices_pb2.ResolveTargetsRequest(targets=targets), metadata=metadata)


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[DeviceService]:
    clock = FakeClock()
    settings = Settings(service="devices", listen_addr="127.0.0.1:0", database_url=database_url)
    running = await server.start(await build(settings, clock=clock), "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield DeviceService(devices_pb2_grpc.DeviceServiceStub(channel), running.registration.handle, clock)
    finally:
        await running.stop(0)


async def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code, error.value.details()
    return error.value.details() or ""


def ts(dt) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt)
    return stamp


# --- CRUD ---------------------------------------------------------------------------------------------------------


async def test_create_answers_the_credential_once_and_stores_only_its_hash(service: DeviceService) -> None:
    created = await service.create("phone-1", model="Pixel 9", labels={"os": "android"}, groups=["lab", "lab", "eu"],
                                   online=True, tenant_id="t-evil")
    assert re.fullmatch(r"jld_[A-Za-z0-9_-]{40}", created.credential)
    assert (created.id, created.name, created.model, dict(created.labels), list(created.groups)) == (
        "phone-1", "phone-1", "Pixel 9", {"os": "android"}, ["lab", "eu"])
    assert not created.online and not created.tenant_id and created.created_at == created.updated_at == ts(
        service.clock.now())
    fetched = await service.get("phone-1")
    assert not fetched.credential and not fetched.tenant_id and fetched.model == "Pixel 9"
    row = await service.devices.store.get("t-alice", "phone-1")
    assert row is not None and row.credential_hash == hashlib.sha256(created.credential.encode()).hexdigest()
    assert created.credential not in repr(row.model_dump())


async def test_device_ids_are_validated(service: DeviceService) -> None:
    for bad in ("", "has space", "x" * 129, "ünïcode", "a/b"):
        await refused(service.create(bad), grpc.StatusCode.INVALID_ARGUMENT)
    for field, value in (("name", "n" * 257), ("labels", {"": "v"}), ("groups", [""])):
        await refused(service.create("ok", **{field: value}), grpc.StatusCode.INVALID_ARGUMENT)
    assert (await service.create("Edge_01.eu-west:7")).name == "Edge_01.eu-west:7"
    assert (await service.create("x" * 128, name="Long")).name == "Long"


async def test_ids_are_unique_per_tenant(service: DeviceService) -> None:
    await service.create("phone-1")
    await refused(service.create("phone-1"), grpc.StatusCode.ALREADY_EXISTS)
    theirs = await service.create("phone-1", metadata=BOB)
    assert theirs.id == "phone-1"


async def test_list_pages_by_id_and_filters_by_group(service: DeviceService) -> None:
    for number in (5, 3, 1, 7, 2, 6, 4):
        await service.create(f"d{number}", groups=["odd"] if number % 2 else ["even", "all"])
    await service.create("zz", metadata=BOB, groups=["odd"])
    seen, token, pages = [], "", 0
    while True:
        page = await service.list(page_size=3, page_token=token)
        seen += [d.id for d in page.devices]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"d{n}" for n in range(1, 8)] and pages == 3
    assert all(not d.credential and not d.tenant_id for d in (await service.list()).devices)
    odd = await service.list(group="odd", page_size=2)
    assert [d.id for d in odd.devices] == ["d1", "d3"] and odd.next_page_token
    rest = await service.list(group="odd", page_size=2, page_token=odd.next_page_token)
    assert [d.id for d in rest.devices] == ["d5", "d7"] and not rest.next_page_token
    assert [d.id for d in (await service.list(group="all")).devices] == ["d2", "d4", "d6"]
    assert (await service.list(group="nobody")).devices == []
    await refused(service.list(group="even", page_token=odd.next_page_token), grpc.StatusCode.INVALID_ARGUMENT)
    await refused(service.list(page_token="not a token"), grpc.StatusCode.INVALID_ARGUMENT)
    await refused(service.list(page_size=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert len((await service.list(page_size=5000)).devices) == 7


async def test_list_defaults_to_pages_of_50(service: DeviceService) -> None:
    for number in range(51):
        await service.create(f"d{number:03}")
    first = await service.list()
    assert len(first.devices) == 50 and first.next_page_token
    assert [d.id for d in (await service.list(page_token=first.next_page_token)).devices] == ["d050"]


async def test_update_applies_the_mask_or_every_editable_field(service: DeviceService) -> None:
    await service.create("phone-1", name="Phone", model="Pixel 9", labels={"os": "android"}, groups=["lab"])
    service.clock.advance(60)
    renamed = await service.stub.UpdateDevice(devices_pb2.UpdateDeviceRequest(
        device_id="phone-1", device=devices_pb2.Device(name="Phone One", model="ignored"),
        update_mask={"paths": ["name"]}), metadata=ALICE)
    assert (renamed.name, renamed.model, dict(renamed.labels), list(renamed.groups)) == (
        "Phone One", "Pixel 9", {"os": "android"}, ["lab"])
    assert renamed.updated_at == ts(service.clock.now()) and renamed.created_at != renamed.updated_at
    assert not renamed.credential and not renamed.tenant_id
    replaced = await service.stub.UpdateDevice(devices_pb2.UpdateDeviceRequest(
        device_id="phone-1", device=devices_pb2.Device(groups=["fleet"], labels={"tier": "gold"})), metadata=ALICE)
    assert (replaced.name, replaced.model, dict(replaced.labels), list(replaced.groups)) == (
        "phone-1", "", {"tier": "gold"}, ["fleet"])
    assert (await service.get("phone-1")) == replaced
    for paths, device in ((["credential"], devices_pb2.Device()), (["online"], devices_pb2.Device(online=True)),
                          (["name"], devices_pb2.Device(id="other"))):
        await refused(service.stub.UpdateDevice(devices_pb2.UpdateDeviceRequest(
            device_id="phone-1", device=device, update_mask={"paths": paths}), metadata=ALICE),
            grpc.StatusCode.INVALID_ARGUMENT)


async def test_delete_removes_the_device(service: DeviceService) -> None:
    await service.create("phone-1")
    await service.stub.DeleteDevice(devices_pb2.DeleteDeviceRequest(device_id="phone-1"), metadata=ALICE)
    await refused(service.get("phone-1"), grpc.StatusCode.NOT_FOUND)
    await refused(service.stub.DeleteDevice(devices_pb2.DeleteDeviceRequest(device_id="phone-1"), metadata=ALICE),
                  grpc.StatusCode.NOT_FOUND)
    await service.create("phone-1")  # the id is free again


async def test_another_tenants_device_is_answered_as_missing(service: DeviceService) -> None:
    await service.create("phone-1", groups=["lab"])
    calls = (
        lambda md: service.get("phone-1", metadata=md),
        lambda md: service.stub.UpdateDevice(devices_pb2.UpdateDeviceRequest(
            device_id="phone-1", device=devices_pb2.Device(name="mine"), update_mask={"paths": ["name"]}), metadata=md),
        lambda md: service.stub.DeleteDevice(devices_pb2.DeleteDeviceRequest(device_id="phone-1"), metadata=md),
    )
    for call in calls:
        theirs = await refused(call(BOB), grpc.StatusCode.NOT_FOUND)
        missing = await refused(call(BOB), grpc.StatusCode.NOT_FOUND)
        assert theirs == missing
    assert (await service.list(metadata=BOB)).devices == []
    resolved = await service.resolve(["phone-1"], group="lab", metadata=BOB)
    assert (list(resolved.devices), list(resolved.missing_device_ids)) == ([], ["phone-1"])
    assert (await service.get("phone-1")).name == "phone-1"


async def test_calls_without_a_principal_are_refused(service: DeviceService) -> None:
    for call in (
        service.stub.CreateDevice(devices_pb2.CreateDeviceRequest(device=devices_pb2.Device(id="d"))),
        service.stub.GetDevice(devices_pb2.GetDeviceRequest(device_id="d")),
        service.stub.ListDevices(devices_pb2.ListDevicesRequest()),
        service.stub.UpdateDevice(devices_pb2.UpdateDeviceRequest(device_id="d")),
        service.stub.DeleteDevice(devices_pb2.DeleteDeviceRequest(device_id="d")),
        service.stub.ResolveTargets(devices_pb2.ResolveTargetsRequest()),
    ):
        await refused(call, grpc.StatusCode.UNAUTHENTICATED)


# --- internal RPCs ------------------------------------------------------------------------------------------------


async def test_resolve_targets_unions_ids_and_group_in_one_query(service: DeviceService) -> None:
    for device_id, groups in (("a", ["lab"]), ("b", []), ("c", ["lab"]), ("d", ["lab", "eu"]), ("e", ["eu"])):
        await service.create(device_id, groups=groups)
    await service.create("f", groups=["lab"], metadata=BOB)
    statements: list[str] = []
    engine = service.devices.store.db.engine.sync_engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        resolved = await service.resolve(["e", "zz", "b", "c", "e"], group="lab")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 1
    assert [d.id for d in resolved.devices] == ["e", "b", "c", "a", "d"]
    assert list(resolved.missing_device_ids) == ["zz"]
    assert all(d.tenant_id == "t-alice" and not d.credential for d in resolved.devices)
    assert [d.id for d in (await service.resolve(group="eu")).devices] == ["d", "e"]
    assert [d.id for d in (await service.resolve(["c", "a"])).devices] == ["c", "a"]
    assert list((await service.resolve()).devices) == []


async def test_device_ids_within_group_names_only_members_of_the_group(service: DeviceService) -> None:
    for device_id, groups in (("a", ["dock"]), ("b", ["dock"]), ("c", ["other"])):
        await service.create(device_id, groups=groups)
    await service.create("x", groups=["dock"], metadata=BOB)

    def within(*ids: str, **extra) -> devices_pb2.ResolveTargetsRequest:
        return devices_pb2.ResolveTargetsRequest(targets=devices_pb2.DeviceTargets(
            device_ids=ids, group="dock", device_ids_within_group=True, **extra))

    resolved = await service.stub.ResolveTargets(within("b"), metadata=ALICE)
    assert [d.id for d in resolved.devices] == ["b"] and not resolved.missing_device_ids  # not "a" too
    message = await refused(service.stub.ResolveTargets(within("c"), metadata=ALICE),
                            grpc.StatusCode.FAILED_PRECONDITION)
    assert message == "device c is not in device group dock"
    missing = await service.stub.ResolveTargets(within("x", "zz"), metadata=ALICE)  # another tenant's is missing
    assert not missing.devices and list(missing.missing_device_ids) == ["x", "zz"]
    for bad in (within(), within("a", any_available=True), within("a", query="name = a"),
                devices_pb2.ResolveTargetsRequest(targets=devices_pb2.DeviceTargets(
                    device_ids=["a"], device_ids_within_group=True))):
        await refused(service.stub.ResolveTargets(bad, metadata=ALICE), grpc.StatusCode.INVALID_ARGUMENT)


async def test_agents_authenticate_with_their_device_credential_without_a_principal(service: DeviceService) -> None:
    alice = await service.create("phone-1")
    bob = await service.create("phone-1", metadata=BOB)
    other = await service.create("phone-2")
    for credential, tenant in ((alice.credential, "t-alice"), (bob.credential, "t-bob")):
        device = await service.stub.AuthenticateAgent(
            devices_pb2.AuthenticateAgentRequest(device_id="phone-1", credential=credential))
        assert (device.id, device.tenant_id, device.credential) == ("phone-1", tenant, "")
    for device_id, credential in (("phone-1", "jld_wrong"), ("phone-1", other.credential),
                                  ("phone-2", alice.credential), ("phone-1", ""), ("", alice.credential)):
        await refused(service.stub.AuthenticateAgent(
            devices_pb2.AuthenticateAgentRequest(device_id=device_id, credential=credential)),
            grpc.StatusCode.UNAUTHENTICATED)


async def test_presence_reports_update_devices_without_a_principal(service: DeviceService) -> None:
    await service.create("phone-1")
    await service.create("phone-1", metadata=BOB)
    now = service.clock.now()
    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[
        devices_pb2.PresenceChange(tenant_id="t-alice", device_id="phone-1", online=True, agent_version="1.2.0",
                                   seen_at=ts(now)),
        devices_pb2.PresenceChange(tenant_id="t-alice", device_id="ghost", online=True, seen_at=ts(now)),
    ]))
    device = await service.get("phone-1")
    assert (device.online, device.agent_version, device.last_seen_at) == (True, "1.2.0", ts(now))
    assert not (await service.get("phone-1", metadata=BOB)).online  # the other tenant's phone-1 is untouched

    stale = devices_pb2.PresenceChange(tenant_id="t-alice", device_id="phone-1", online=False,
                                       seen_at=ts(now - timedelta(seconds=5)))
    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[stale]))
    assert (await service.get("phone-1")).online  # an older report never wins

    later = now + timedelta(seconds=30)
    gone = devices_pb2.PresenceChange(tenant_id="t-alice", device_id="phone-1", online=False, seen_at=ts(later))
    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[gone]))
    device = await service.get("phone-1")
    assert (device.online, device.agent_version, device.last_seen_at) == (False, "1.2.0", ts(later))

    await refused(service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[
        devices_pb2.PresenceChange(device_id="phone-1", online=True)])), grpc.StatusCode.INVALID_ARGUMENT)


async def test_a_trigger_only_principal_can_resolve_targets(service: DeviceService) -> None:
    trigger_only = to_metadata(Principal(tenant_id="t-alice", subject_id="u3", scopes=[TRIGGER]))
    await service.create("phone-1", groups=["lab"])
    assert [d.id for d in (await service.resolve(group="lab", metadata=trigger_only)).devices] == ["phone-1"]
