"""Bulk trigger of a device job over real gRPC: each item fans out to the job's targets like a single
trigger (one invocation per item), every run of the call in one insert, idempotency per item."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2 as Q

from .test_runs_service import ADMIN_CALL, Platform, platform  # noqa: F401 - the fixture


def item(key: str = "", **payload) -> Q.BulkTriggerItem:
    value = struct_pb2.Struct()
    value.update(payload)
    return Q.BulkTriggerItem(payload=value, idempotency_key=key)


async def lab_job(platform: Platform, devices: list[str], **targets) -> jobs_pb2.Job:
    for device_id in devices:
        await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
            device=devices_pb2.Device(id=device_id, groups=["lab"])), metadata=ADMIN_CALL)
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="probe", slug="probe", command="probe {{n}}",
        targets=devices_pb2.DeviceTargets(group="lab", **targets))), metadata=ADMIN_CALL)


async def test_each_item_fans_out_to_every_target_in_one_insert(platform: Platform) -> None:
    job = await lab_job(platform, ["phone-1", "phone-2"])
    store = platform.service.store
    inserts: list[int] = []
    insert_runs = store.insert_runs

    async def counting(rows, also=None):
        inserts.append(len(rows))
        await insert_runs(rows, also)

    store.insert_runs = counting  # type: ignore[method-assign]
    reply = await platform.runs.BulkTriggerJob(Q.BulkTriggerJobRequest(job_id=job.id, items=[
        item("k1", n="1"), item(n="2"), item("k1", n="3")]), metadata=ADMIN_CALL)
    assert inserts == [4]  # two items x two devices, one statement; the repeated key made none
    assert (reply.total, reply.created) == (3, 2) and reply.batch_id
    first, second, repeat = reply.results
    assert repeat.idempotency_hit and (repeat.id, repeat.invocation_id) == (first.id, first.invocation_id)
    assert first.run_token.startswith("jlrt_") and not repeat.run_token
    assert first.invocation_id != second.invocation_id

    for result, n in ((first, "1"), (second, "2")):
        runs = (await platform.runs.ListRuns(Q.ListRunsRequest(invocation_id=result.invocation_id),
                                             metadata=ADMIN_CALL)).runs
        assert sorted(r.device_id for r in runs) == ["phone-1", "phone-2"]
        assert {r.batch_id for r in runs} == {reply.batch_id} and {r.payload["n"] for r in runs} == {n}
        assert {r.status for r in runs} == {Q.RUN_STATUS_QUEUED} and result.id in {r.id for r in runs}
    batch = (await platform.runs.ListRuns(Q.ListRunsRequest(batch_id=reply.batch_id), metadata=ADMIN_CALL)).runs
    assert len(batch) == 4
    # The idempotency key belongs to the item's first run only (like a single trigger's).
    assert sorted(r.idempotency_key for r in batch) == ["", "", "", "k1"]
    row = await store.get("t1", first.id)
    assert row.command == "probe 1" and row.target_key.endswith("/" + row.device_id)

    again = await platform.runs.BulkTriggerJob(Q.BulkTriggerJobRequest(job_id=job.id, items=[
        item("k1", n="9"), item("k2", n="4")]), metadata=ADMIN_CALL)
    assert [r.idempotency_hit for r in again.results] == [True, False] and again.created == 1
    assert again.results[0].id == first.id and inserts == [4, 2]
    # A single trigger with the key sees the same run.
    single = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, idempotency_key="k2"),
                                            metadata=ADMIN_CALL)
    assert single.idempotency_hit and single.id == again.results[1].id


async def test_an_item_that_cannot_render_refuses_the_whole_call(platform: Platform) -> None:
    job = await lab_job(platform, ["phone-1"])
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await platform.runs.BulkTriggerJob(Q.BulkTriggerJobRequest(job_id=job.id, items=[
            item(n="1"), Q.BulkTriggerItem()]), metadata=ADMIN_CALL)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "items[1]: missing inputs: n"
    listed = await platform.runs.ListRuns(Q.ListRunsRequest(job_id=job.id), metadata=ADMIN_CALL)
    assert not listed.runs  # nothing half-written


async def test_a_job_without_devices_is_refused(platform: Platform) -> None:
    job = await lab_job(platform, [])
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await platform.runs.BulkTriggerJob(Q.BulkTriggerJobRequest(job_id=job.id, items=[item(n="1")]),
                                           metadata=ADMIN_CALL)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
