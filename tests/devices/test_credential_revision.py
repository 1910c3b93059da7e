"""The credential revision ValidateAgents answers, and presence reports of many devices at once."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from jobline.devices.v1 import devices_pb2

from .test_devices_service import ALICE, BOB, DeviceService, service, ts  # noqa: F401


def credential_of(device: devices_pb2.Device, tenant_id: str = "t-alice") -> devices_pb2.AgentCredential:
    return devices_pb2.AgentCredential(tenant_id=tenant_id, device_id=device.id,
                                       credential_sha256=hashlib.sha256(device.credential.encode()).hexdigest())


async def validate(service: DeviceService, *agents: devices_pb2.AgentCredential) -> tuple[list[str], int]:
    answer = await service.stub.ValidateAgents(devices_pb2.ValidateAgentsRequest(agents=agents))
    return [a.device_id for a in answer.invalid], answer.revision


async def test_every_change_of_a_credential_moves_the_revision_and_nothing_else_does(service: DeviceService) -> None:
    first = await service.create("phone-1")
    second = await service.create("phone-2")
    third = await service.create("phone-3")
    assert await validate(service) == ([], 0)  # no agents: just the revision
    await service.stub.UpdateDevice(devices_pb2.UpdateDeviceRequest(
        device_id="phone-1", device=devices_pb2.Device(name="renamed"), update_mask={"paths": ["name"]}), metadata=ALICE)
    await service.create("phone-4")
    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[devices_pb2.PresenceChange(
        tenant_id="t-alice", device_id="phone-1", online=True, seen_at=ts(service.clock.now()))]))
    assert await validate(service, credential_of(first)) == ([], 0)

    await service.stub.RevokeCredential(devices_pb2.RevokeCredentialRequest(device_id="phone-1"), metadata=ALICE)
    assert await validate(service, credential_of(first), credential_of(second)) == (["phone-1"], 1)
    await service.stub.RotateCredential(devices_pb2.RotateCredentialRequest(device_id="phone-2"), metadata=ALICE)
    assert await validate(service, credential_of(second)) == (["phone-2"], 2)
    await service.stub.DeleteDevice(devices_pb2.DeleteDeviceRequest(device_id="phone-3"), metadata=ALICE)
    assert await validate(service, credential_of(third)) == (["phone-3"], 3)
    other_tenant = await service.create("phone-1", metadata=BOB)
    await service.stub.RevokeCredential(devices_pb2.RevokeCredentialRequest(device_id="phone-1"), metadata=BOB)
    assert await validate(service, credential_of(other_tenant, "t-bob")) == (["phone-1"], 4)


async def test_a_report_of_many_devices_applies_each_change_by_its_own_rules(service: DeviceService) -> None:
    for i in range(6):
        await service.create(f"d{i}")
    now = service.clock.now()
    later = now + timedelta(seconds=30)

    def change(i: int, online: bool, at, **fields) -> devices_pb2.PresenceChange:
        return devices_pb2.PresenceChange(tenant_id="t-alice", device_id=f"d{i}", online=online, seen_at=ts(at),
                                          **fields)

    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(replica_id="r1", changes=[
        change(i, True, now, stream_opened=True, agent_version="2.0", facts={"os": "linux"}) for i in range(5)]))
    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(replica_id="r2", changes=[
        change(4, True, later, stream_opened=True, agent_version="2.1")]))
    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(replica_id="r1", changes=[
        change(0, True, later), change(1, True, later), change(2, False, later),
        change(3, False, now - timedelta(seconds=1)),  # older than what is stored: ignored
        change(4, False, later + timedelta(seconds=1)),  # d4 is r2's now: r1 cannot take it offline
        change(5, True, later)]))  # never opened on r1: a refresh of a device r1 does not own
    devices = {d.id: d for d in (await service.list(page_size=10)).devices}
    assert {i: devices[i].online for i in devices} == {"d0": True, "d1": True, "d2": False, "d3": True,
                                                        "d4": True, "d5": False}
    assert devices["d0"].last_seen_at == ts(later) and devices["d3"].last_seen_at == ts(now)
    assert (devices["d0"].agent_version, dict(devices["d0"].facts)) == ("2.0", {"os": "linux"})
    assert devices["d4"].agent_version == "2.1"
