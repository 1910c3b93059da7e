"""Presence heals itself: each runs replica's reports renew its lease; the devices of a replica that stops
reporting go offline; a replica's late reports never undo another's. Real gRPC, SQLite and PostgreSQL,
several replicas sharing one database, time moved by a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import timestamp_pb2

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from services.common import server
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.principal import ADMIN, to_metadata
from services.devices.app import build
from services.devices.domain import UNOWNED_PRESENCE_SECS, Devices

ADMIN_CALL = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="u1", scopes=[ADMIN]))
LEASE = 10


@dataclass
class Replica:
    """A devices-service replica, as a runs replica reaches it."""

    stub: devices_pb2_grpc.DeviceServiceStub
    devices: Devices


@dataclass
class Cluster:
    replicas: list[Replica]
    clock: FakeClock

    async def report(self, runs_replica: str, *changes: devices_pb2.PresenceChange, via: int = 0,
                     release: bool = False) -> bool:
        answer = await self.replicas[via].stub.ReportPresence(devices_pb2.ReportPresenceRequest(
            changes=changes, replica_id=runs_replica, lease_secs=LEASE, release=release))
        return answer.resync

    def change(self, device_id: str, online: bool = True, opened: bool = False) -> devices_pb2.PresenceChange:
        seen = timestamp_pb2.Timestamp()
        seen.FromDatetime(self.clock.now())
        return devices_pb2.PresenceChange(tenant_id="t1", device_id=device_id, online=online, seen_at=seen,
                                          stream_opened=opened)

    async def online(self, via: int = 0) -> set[str]:
        listed = await self.replicas[via].stub.ListDevices(devices_pb2.ListDevicesRequest(online=True),
                                                           metadata=ADMIN_CALL)
        return {device.id for device in listed.devices}

    async def sweep(self, via: int = 0, unowned: bool = False) -> int:
        return await self.replicas[via].devices.sweep_presence(unowned=unowned)


@pytest.fixture
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    """Two devices-service replicas on one database (on SQLite: one file), sweeping only when told."""
    clock = FakeClock()
    running, channels, replicas = [], [], []
    try:
        for _ in range(2):
            settings = Settings(service="devices", listen_addr="", database_url=database_url)
            running.append(await server.start(await build(settings, clock=clock, sweeping=False), "127.0.0.1:0"))
            channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{running[-1].port}"))
            replicas.append(Replica(devices_pb2_grpc.DeviceServiceStub(channels[-1]), running[-1].registration.handle))
        for device_id in ("d1", "d2", "d3"):
            await replicas[0].stub.CreateDevice(devices_pb2.CreateDeviceRequest(
                device=devices_pb2.Device(id=device_id)), metadata=ADMIN_CALL)
        yield Cluster(replicas, clock)
    finally:
        for channel in channels:
            await channel.close()
        for item in running:
            await item.stop(0)


async def test_the_devices_of_a_replica_that_stops_reporting_go_offline(cluster: Cluster) -> None:
    assert await cluster.report("runs-a", cluster.change("d1", opened=True), cluster.change("d2", opened=True))
    assert await cluster.report("runs-b", cluster.change("d3", opened=True), via=1)
    assert await cluster.online(via=1) == {"d1", "d2", "d3"}

    for _ in range(3):  # runs-b keeps renewing (nothing to report); runs-a was killed
        cluster.clock.advance(LEASE / 3 - 0.1)
        assert not await cluster.report("runs-b", via=1)
        assert await cluster.sweep() == 0
    assert await cluster.online() == {"d1", "d2", "d3"}
    cluster.clock.advance(0.5)  # past runs-a's lease
    assert not await cluster.report("runs-b", via=1)
    assert await cluster.sweep(via=1) == 2
    assert await cluster.online() == {"d3"}
    assert await cluster.sweep() == 0  # a second sweep (another replica) changes nothing

    # runs-a restarts as a new replica; its agents reconnect.
    assert await cluster.report("runs-a2", cluster.change("d1", opened=True))
    assert await cluster.online() == {"d1", "d3"}


async def test_a_late_report_of_one_replica_never_undoes_another(cluster: Cluster) -> None:
    await cluster.report("runs-a", cluster.change("d1", opened=True))
    cluster.clock.advance(1)
    await cluster.report("runs-b", cluster.change("d1", opened=True), via=1)  # the agent moved to runs-b
    cluster.clock.advance(1)
    await cluster.report("runs-a", cluster.change("d1"))  # runs-a's refresh, from before it noticed
    await cluster.report("runs-a", cluster.change("d1", online=False))  # runs-a noticing the dead stream late
    assert await cluster.online() == {"d1"}

    # runs-a dies: d1 is runs-b's, it stays online.
    cluster.clock.advance(LEASE + 1)
    await cluster.report("runs-b", via=1)
    await cluster.sweep()
    assert await cluster.online() == {"d1"}
    await cluster.report("runs-b", cluster.change("d1", online=False), via=1)  # its owner's offline applies
    assert await cluster.online() == set()


async def test_a_replica_whose_lease_ran_out_is_asked_to_resync(cluster: Cluster) -> None:
    assert await cluster.report("runs-a", cluster.change("d1", opened=True))  # a first report: no lease yet
    cluster.clock.advance(LEASE - 1)
    assert not await cluster.report("runs-a")
    cluster.clock.advance(LEASE + 1)  # a long pause: swept meanwhile
    await cluster.sweep()
    assert await cluster.online() == set()
    assert await cluster.report("runs-a")  # told to report its streams again
    await cluster.report("runs-a", cluster.change("d1", opened=True))
    assert await cluster.online() == {"d1"}


async def test_a_stopping_replica_releases_its_devices(cluster: Cluster) -> None:
    await cluster.report("runs-a", cluster.change("d1", opened=True), cluster.change("d2", opened=True))
    await cluster.report("runs-b", cluster.change("d3", opened=True))
    assert not await cluster.report("runs-a", release=True)
    assert await cluster.online() == {"d3"}
    cluster.clock.advance(LEASE + 1)
    assert await cluster.sweep() == 1  # only runs-b's lease is left to expire


async def test_online_devices_no_replica_owns_go_offline_when_long_unseen(cluster: Cluster) -> None:
    # Reports of a runs replica of an older release name no replica: nothing owns these devices.
    await cluster.replicas[0].stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[cluster.change("d1")]))
    cluster.clock.advance(UNOWNED_PRESENCE_SECS - 5)
    await cluster.replicas[0].stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[cluster.change("d2")]))
    cluster.clock.advance(10)
    assert await cluster.sweep() == 0  # only a sweep that includes unowned devices scans for them
    assert await cluster.sweep(unowned=True) == 1
    assert await cluster.online() == {"d2"}
