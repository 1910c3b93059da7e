"""Mission runs in the runs service over real gRPC (real jobs and devices services, a scripted agent on a
real stream): the handler in Assign, the named drone in its group, priority changes before the start,
cancel only before the start, and the latest run of each job."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2, runs_pb2
from services.common.principal import ADMIN, to_metadata

from .test_runs_service import ADMIN_CALL, Platform, ScriptedAgent, platform  # noqa: F401 - the fixture

OTHER_TENANT = to_metadata(Principal(tenant_id="t2", project_id="default", subject_id="u9", scopes=[ADMIN]))


async def drone(platform: Platform, device_id: str = "phone-1", groups: tuple[str, ...] = ("dock",)) -> str:
    device = await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
        device=devices_pb2.Device(id=device_id, groups=list(groups))), metadata=ADMIN_CALL)
    return device.credential


async def mission(platform: Platform, device_id: str = "phone-1", group: str = "dock") -> jobs_pb2.Job:
    spec = jobs_pb2.MissionSpec(mission_id="m-1", device_group_id=group, device_id=device_id)
    spec.metadata.update({"customer": "ACME"})
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="Survey", mission=spec)), metadata=ADMIN_CALL)


async def trigger(platform: Platform, job_id: str, priority: int = 0) -> runs_pb2.Run:
    return await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=job_id, priority=priority),
                                          metadata=ADMIN_CALL)


async def until_status(platform: Platform, run_id: str, status: int) -> runs_pb2.Run:
    async with asyncio.timeout(5):
        while (run := await platform.run(run_id)).status != status:
            await asyncio.sleep(0.05)
    return run


async def refused(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code()


async def test_a_mission_run_is_assigned_with_its_handler_and_inputs(platform: Platform) -> None:
    credential = await drone(platform)
    job = await mission(platform)
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    run = await trigger(platform, job.id, priority=7)
    assert (run.device_id, run.priority) == ("phone-1", 7)
    assign = (await agent.receive("assign")).assign
    assert (assign.run.run_id, assign.handler, assign.command) == (run.id, "mission", "")
    assert dict(assign.inputs) == {"missionId": "m-1", "metadata": '{"customer":"ACME"}'}
    # An agent without the handler rejects it: the run fails with the reason, at once.
    agent.send(reject=agent_pb2.Reject(run=assign.run, reason="no handler 'mission' on this agent"))
    done = await until_status(platform, run.id, runs_pb2.RUN_STATUS_FAILED)
    assert done.error == "rejected by the agent: no handler 'mission' on this agent"
    agent.close()


async def test_the_named_drone_must_exist_and_be_in_the_group(platform: Platform) -> None:
    await drone(platform, "phone-1", groups=("elsewhere",))
    outside = await mission(platform)
    assert await refused(trigger(platform, outside.id)) == grpc.StatusCode.FAILED_PRECONDITION
    unknown = await mission(platform, device_id="phone-404")
    assert await refused(trigger(platform, unknown.id)) == grpc.StatusCode.NOT_FOUND
    listed = await platform.runs.ListRuns(runs_pb2.ListRunsRequest(latest_for_job_ids=[outside.id, unknown.id]),
                                          metadata=ADMIN_CALL)
    assert not listed.runs  # nothing stored


async def test_priority_changes_and_cancels_only_before_the_run_starts(platform: Platform) -> None:
    credential = await drone(platform)
    job = await mission(platform)
    first, second = await trigger(platform, job.id, 2), await trigger(platform, job.id, 3)
    raised = await platform.runs.RescheduleRun(runs_pb2.RescheduleRunRequest(run_id=first.id, priority=9),
                                               metadata=ADMIN_CALL)
    assert raised.priority == 9 and raised.status == runs_pb2.RUN_STATUS_QUEUED
    assert raised.scheduled_at == first.scheduled_at
    assert await refused(platform.runs.RescheduleRun(runs_pb2.RescheduleRunRequest(run_id=first.id),
                                                     metadata=ADMIN_CALL)) == grpc.StatusCode.INVALID_ARGUMENT

    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    assign = (await agent.receive("assign")).assign
    assert assign.run.run_id == first.id  # the higher priority goes first
    agent.send(accept=agent_pb2.Accept(run=assign.run))
    await until_status(platform, first.id, runs_pb2.RUN_STATUS_EXECUTING)
    assert await refused(platform.runs.RescheduleRun(runs_pb2.RescheduleRunRequest(run_id=first.id, priority=1),
                                                     metadata=ADMIN_CALL)) == grpc.StatusCode.ABORTED
    assert await refused(platform.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=first.id, only_if_not_started=True),
                                                 metadata=ADMIN_CALL)) == grpc.StatusCode.ABORTED
    assert (await platform.run(first.id)).status == runs_pb2.RUN_STATUS_EXECUTING
    canceled = await platform.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=second.id, only_if_not_started=True),
                                             metadata=ADMIN_CALL)
    assert canceled.status == runs_pb2.RUN_STATUS_CANCELED
    plain = await platform.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=first.id), metadata=ADMIN_CALL)
    assert plain.status == runs_pb2.RUN_STATUS_CANCELED
    agent.close()


async def test_latest_for_job_ids_answers_each_jobs_newest_run_in_the_callers_tenant(platform: Platform) -> None:
    await drone(platform)
    a, b, idle = await mission(platform), await mission(platform), await mission(platform)
    await trigger(platform, a.id)
    platform.clock.advance(1)
    newest_a = await trigger(platform, a.id)
    platform.clock.advance(1)
    only_b = await trigger(platform, b.id)
    reply = await platform.runs.ListRuns(runs_pb2.ListRunsRequest(latest_for_job_ids=[a.id, b.id, idle.id, "nope"]),
                                         metadata=ADMIN_CALL)
    assert [run.id for run in reply.runs] == [only_b.id, newest_a.id]
    theirs = await platform.runs.ListRuns(runs_pb2.ListRunsRequest(latest_for_job_ids=[a.id, b.id]),
                                          metadata=OTHER_TENANT)
    assert not theirs.runs
    too_many = runs_pb2.ListRunsRequest(latest_for_job_ids=[f"j{i}" for i in range(1001)])
    assert await refused(platform.runs.ListRuns(too_many, metadata=ADMIN_CALL)) == grpc.StatusCode.INVALID_ARGUMENT
