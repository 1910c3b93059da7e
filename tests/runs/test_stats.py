"""RunService.GetStats over real gRPC: runs by status across tenants (one GROUP BY), the replica's
agent streams, and the dispatch latency histogram observed at assignment (time on a fake clock)."""

from __future__ import annotations

import asyncio

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.principal import ADMIN, to_metadata

from .test_runs_service import Platform, ScriptedAgent, platform, trigger  # noqa: F401 - the fixture

OTHER_TENANT = to_metadata(Principal(tenant_id="t2", project_id="default", subject_id="u9", scopes=[ADMIN]))


async def stats(platform: Platform) -> runs_pb2.GetStatsResponse:
    return await platform.runs.GetStats(runs_pb2.GetStatsRequest())  # internal: no principal needed


def histogram(reply: runs_pb2.GetStatsResponse) -> dict[float, int]:
    return dict(zip(reply.dispatch_latency_bucket_bounds_secs, reply.dispatch_latency_bucket_counts, strict=True))


async def test_runs_by_status_count_every_tenant(platform: Platform) -> None:
    empty = await stats(platform)
    assert dict(empty.runs_by_status) == {} and empty.agent_streams_connected == 0
    assert empty.dispatch_latency_count == 0 and set(histogram(empty).values()) == {0}

    job_id, _ = await platform.device_job()
    for _ in range(2):
        await trigger(platform, job_id)
    await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
        device=devices_pb2.Device(id="phone-1")), metadata=OTHER_TENANT)
    other = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="other", slug="other", command="true",
        targets=devices_pb2.DeviceTargets(device_ids=["phone-1"]))), metadata=OTHER_TENANT)
    run = await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=other.id), metadata=OTHER_TENANT)
    await platform.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id), metadata=OTHER_TENANT)
    await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=other.id), metadata=OTHER_TENANT)

    assert dict((await stats(platform)).runs_by_status) == {"queued": 3, "canceled": 1}


async def test_assignment_observes_dispatch_latency_and_streams_are_counted(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    runs = {(await trigger(platform, job_id)).id for _ in range(2)}
    platform.clock.advance(7)  # queued with no agent connected for 7 s
    agent = ScriptedAgent(platform, credential)  # capacity 1: one assignment
    await agent.receive("welcome")
    assert (await agent.receive("assign")).assign.run.run_id in runs

    reply = await stats(platform)
    assert reply.agent_streams_connected == 1
    assert dict(reply.runs_by_status) == {"queued": 1, "dequeued": 1}
    assert reply.dispatch_latency_count == 1 and reply.dispatch_latency_sum_secs == 7.0
    buckets = histogram(reply)
    assert buckets[5.0] == 0 and buckets[10.0] == 1 and buckets[max(buckets)] == 1  # cumulative
    assert list(reply.dispatch_latency_bucket_counts) == sorted(reply.dispatch_latency_bucket_counts)

    agent.close()
    for _ in range(50):
        if not platform.service.hub.sessions:
            break
        await asyncio.sleep(0.02)
    assert (await stats(platform)).agent_streams_connected == 0
