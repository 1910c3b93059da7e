"""Device numbers (Foreman's numeric host ids) and the query language's Foreman dialect, over real gRPC."""

from __future__ import annotations

import grpc
import pytest

from jobline.devices.v1 import devices_pb2
from services.devices import query

from .test_devices_service import ALICE, BOB, DeviceService, refused, service  # noqa: F401


async def test_numbers_are_unique_increasing_and_never_reused(service: DeviceService) -> None:
    first = await service.create("a")
    second = await service.create("b", metadata=BOB)
    assert 0 < first.number < second.number
    await refused(service.create("a"), grpc.StatusCode.ALREADY_EXISTS)
    await service.stub.DeleteDevice(devices_pb2.DeleteDeviceRequest(device_id="b"), metadata=BOB)
    third = await service.create("c")
    assert third.number == second.number + 1  # neither the refused insert nor the deleted device's number is reused
    got = await service.stub.GetDevice(devices_pb2.GetDeviceRequest(number=first.number), metadata=ALICE)
    assert got.id == "a"
    # Another tenant's number is answered like a missing one.
    await refused(service.stub.GetDevice(devices_pb2.GetDeviceRequest(number=first.number), metadata=BOB),
                  grpc.StatusCode.NOT_FOUND)


async def test_resolve_by_numbers_reports_missing_ones(service: DeviceService) -> None:
    a, b = await service.create("a"), await service.create("b")
    targets = devices_pb2.DeviceTargets(device_numbers=[b.number, 999, a.number])
    reply = await service.stub.ResolveTargets(devices_pb2.ResolveTargetsRequest(targets=targets), metadata=ALICE)
    assert [d.id for d in reply.devices] == ["b", "a"] and list(reply.missing_device_numbers) == [999]


async def test_foreman_dialect_lists_with_offset_and_counts(service: DeviceService) -> None:
    await service.create("web01", name="web01", groups=["web"], labels={"role": "front"})
    await service.create("web02", name="web02", groups=["web"])
    await service.create("db01", name="db01", groups=["db"])
    await service.stub.ReportPresence(devices_pb2.ReportPresenceRequest(changes=[
        devices_pb2.PresenceChange(tenant_id="t-alice", device_id="web02", online=True, facts={"os": "RedHat"})]))

    async def names(q: str, **extra) -> list[str]:
        reply = await service.list(query=q, query_dialect="foreman", **extra)
        return [d.id for d in reply.devices]

    assert await names("name ~ web") == ["web01", "web02"]  # `~` matches anywhere
    assert await names("web0") == ["web01", "web02"]  # a bare word searches names
    assert await names("name ^ (db01, web01)") == ["db01", "web01"]
    assert await names("hostgroup = web and os = RedHat") == ["web02"]
    assert await names("facts.os = RedHat | params.role = front") == ["web01", "web02"]
    assert await names("name !^ (web01) and !hostgroup = db") == ["web02"]
    assert await names("name ^ ()") == []
    paged = await service.list(query="name ~ *0*", query_dialect="foreman", offset=1, page_size=1,
                               include_counts=True)
    assert [d.id for d in paged.devices] == ["web01"] and (paged.total_count, paged.matched_count) == (3, 3)
    numbers = sorted(d.number for d in (await service.list()).devices)
    assert await names(f"id > {numbers[0]}") == ["db01", "web02"]  # web01 was created first
    # The native dialect keeps its own reading of `~` and refuses bare words.
    assert [d.id for d in (await service.list(query="name ~ web")).devices] == []
    await refused(service.list(query="web"), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize("text, message", [
    ("foo = 1", "unknown field 'foo'"), ("id ~ 5", "is a number"), ("name < 3", "compares numbers"),
    ("name = ", "expected a value"), ("(name = a", "expected ')'"), ("id = x", "whole numbers"),
])
def test_foreman_syntax_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(Exception) as error:
        query.parse(text, "foreman")
    assert message in str(error.value) and "position" in str(error.value)
