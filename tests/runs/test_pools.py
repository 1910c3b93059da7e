"""Runs for "any one available device" of a group wait in the group's pool and go to the first device of
the group with room, at dispatch time (services/runs/pools.py): real jobs, devices and runs services, scripted
agents on real streams, time on the fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2, runs_pb2

from .test_runs_service import ADMIN_CALL, Platform, ScriptedAgent, platform  # noqa: F401 - the fixture

QUEUED, DELAYED = runs_pb2.RUN_STATUS_QUEUED, runs_pb2.RUN_STATUS_DELAYED


async def device(platform: Platform, device_id: str, *groups: str) -> str:
    created = await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
        device=devices_pb2.Device(id=device_id, groups=list(groups))), metadata=ADMIN_CALL)
    return created.credential


async def connect(platform: Platform, device_id: str, credential: str, capacity: int = 1) -> ScriptedAgent:
    agent = ScriptedAgent(platform, credential, device_id=device_id, capacity=capacity)
    await agent.receive("welcome")
    return agent


async def group_job(platform: Platform, group: str = "dock", **fields) -> jobs_pb2.Job:
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="survey", slug="survey", command="echo fly",
        targets=devices_pb2.DeviceTargets(group=group, any_available=True), **fields)), metadata=ADMIN_CALL)


async def trigger(platform: Platform, job_id: str) -> runs_pb2.Run:
    return await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=job_id), metadata=ADMIN_CALL)


async def assigned(agent: ScriptedAgent) -> agent_pb2.Assign:
    return (await agent.receive("assign")).assign


async def taken_by(platform: Platform, run_id: str) -> str:
    """The device a run went to (once it left the queue)."""
    async with asyncio.timeout(5):
        while (run := await platform.run(run_id)).status == QUEUED:
            await asyncio.sleep(0.05)
    return run.device_id


def finish(agent: ScriptedAgent, ref: agent_pb2.RunRef, exit_code: int = 0) -> None:
    agent.send(accept=agent_pb2.Accept(run=ref))
    agent.send(finished=agent_pb2.Finished(run=ref, exit_code=exit_code, last_sequence=0))


async def until(platform: Platform, run_id: str, status: int) -> runs_pb2.Run:
    async with asyncio.timeout(5):
        while (run := await platform.run(run_id)).status != status:
            await asyncio.sleep(0.05)
    return run


async def test_a_group_run_waits_for_a_device_of_the_group_then_goes_to_the_first_that_connects(
        platform: Platform) -> None:
    d1 = await device(platform, "drone-1", "dock")
    outsider = await connect(platform, "rover-1", await device(platform, "rover-1", "garage"))
    job = await group_job(platform)
    run = await trigger(platform, job.id)  # no drone of the dock is online: queued all the same
    assert (run.status, run.device_id) == (QUEUED, "")
    await asyncio.sleep(1.5)  # longer than the hub's periodic scan
    assert (await platform.run(run.id)).status == QUEUED  # the outsider is not in the pool
    drone = await connect(platform, "drone-1", d1)
    assert (await assigned(drone)).run.run_id == run.id
    taken = await platform.run(run.id)
    assert (taken.status, taken.device_id) == (runs_pb2.RUN_STATUS_DEQUEUED, "drone-1")
    finish(drone, agent_pb2.RunRef(run_id=run.id, attempt=1))
    assert (await until(platform, run.id, runs_pb2.RUN_STATUS_COMPLETED)).device_id == "drone-1"
    drone.close()
    outsider.close()


async def test_a_busy_device_leaves_the_next_run_to_a_free_one_and_takes_the_one_after_when_free(
        platform: Platform) -> None:
    drones = {f"drone-{i}": await connect(platform, f"drone-{i}", await device(platform, f"drone-{i}", "dock"))
              for i in (1, 2)}
    job = await group_job(platform)
    first = await trigger(platform, job.id)
    holder_id = await taken_by(platform, first.id)
    holder, other = drones.pop(holder_id), drones.popitem()[1]
    assert (await assigned(holder)).run.run_id == first.id
    second = await trigger(platform, job.id)  # the holder (capacity 1) is busy: the other drone takes it
    assert (await assigned(other)).run.run_id == second.id
    third = await trigger(platform, job.id)  # both busy: it waits, for whichever is free first
    assert (await platform.run(third.id)).status == QUEUED
    finish(holder, agent_pb2.RunRef(run_id=first.id, attempt=1))
    assert (await assigned(holder)).run.run_id == third.id
    assert (await platform.run(third.id)).device_id == holder_id
    holder.close()
    other.close()


async def test_a_run_handed_back_returns_to_the_pool_and_goes_to_another_device(platform: Platform) -> None:
    drones = {i: await connect(platform, f"drone-{i}", await device(platform, f"drone-{i}", "dock")) for i in (1, 2)}
    job = await group_job(platform)
    run = await trigger(platform, job.id)
    first = int((await taken_by(platform, run.id)).removeprefix("drone-"))
    assert (await assigned(drones[first])).run.run_id == run.id
    # The agent was fuller than the hub knew: the run goes back to the pool, and the other drone (the one
    # longest without a pooled run) takes it.
    drones[first].send(reject=agent_pb2.Reject(run=agent_pb2.RunRef(run_id=run.id, attempt=1),
                                               reason="at capacity (1 running)"))
    second = 3 - first
    assert (await assigned(drones[second])).run.run_id == run.id
    assert (await platform.run(run.id)).device_id == f"drone-{second}"
    for drone in drones.values():
        drone.close()


async def test_a_retry_waits_in_the_pool_not_on_the_device_that_failed(platform: Platform) -> None:
    d1 = await connect(platform, "drone-1", await device(platform, "drone-1", "dock"))
    d2_credential = await device(platform, "drone-2", "dock")
    job = await group_job(platform, max_attempts=2, retry_strategy="fixed", retry_delays_secs=[5])
    run = await trigger(platform, job.id)
    assert (await assigned(d1)).run.run_id == run.id
    finish(d1, agent_pb2.RunRef(run_id=run.id, attempt=1), exit_code=1)
    retrying = await until(platform, run.id, DELAYED)
    assert (retrying.attempt, retrying.device_id) == (2, "")
    d1.close()  # drone-1 goes away after failing the first attempt
    d2 = await connect(platform, "drone-2", d2_credential)
    platform.clock.advance(6)  # past the backoff
    await platform.service.tick()
    assign = await assigned(d2)
    assert (assign.run.run_id, assign.run.attempt) == (run.id, 2)
    assert (await platform.run(run.id)).device_id == "drone-2"
    d2.close()


async def test_bulk_items_spread_over_the_free_devices_of_the_pool(platform: Platform) -> None:
    drones = [await connect(platform, f"drone-{i}", await device(platform, f"drone-{i}", "dock")) for i in (1, 2, 3)]
    job = await group_job(platform)
    reply = await platform.runs.BulkTriggerJob(runs_pb2.BulkTriggerJobRequest(
        job_id=job.id, items=[runs_pb2.BulkTriggerItem() for _ in range(3)]), metadata=ADMIN_CALL)
    got = [await assigned(drone) for drone in drones]  # one each: capacity 1
    assert sorted(a.run.run_id for a in got) == sorted(r.id for r in reply.results)
    for drone in drones:
        drone.close()


async def test_a_pool_is_the_group_and_the_query_together_and_must_have_a_device(platform: Platform) -> None:
    creds = {d: await device(platform, d, g) for d, g in (("drone-1", "dock"), ("drone-2", "dock"),
                                                          ("rover-1", "garage"))}
    job = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="ones", slug="ones", command="echo fly", targets=devices_pb2.DeviceTargets(
            group="dock", query='name ~ "%-1"', any_available=True))), metadata=ADMIN_CALL)
    others = [await connect(platform, d, creds[d]) for d in ("drone-2", "rover-1")]  # one in the group, one named so
    run = await trigger(platform, job.id)
    await asyncio.sleep(1.5)
    assert (await platform.run(run.id)).status == QUEUED  # neither is of the dock AND named *-1
    drone = await connect(platform, "drone-1", creds["drone-1"])
    assert (await assigned(drone)).run.run_id == run.id
    for agent in (drone, *others):
        agent.close()
    # Targets whose pool has no device at all, or that do not parse, are refused at the trigger.
    for i, targets in enumerate((devices_pb2.DeviceTargets(group="empty-hangar", any_available=True),
                                 devices_pb2.DeviceTargets(group="dock", query="name = (((", any_available=True))):
        bad = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
            project_id="default", name="bad", slug=f"bad-{i}", command="echo fly", targets=targets)),
            metadata=ADMIN_CALL)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await trigger(platform, bad.id)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_named_device_runs_its_own_run_and_never_takes_the_pooled_one(platform: Platform) -> None:
    named = await connect(platform, "drone-1", await device(platform, "drone-1", "dock"), capacity=2)
    spare_credential = await device(platform, "drone-2", "dock")
    job = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="both", slug="both", command="echo fly", targets=devices_pb2.DeviceTargets(
            device_ids=["drone-1"], group="dock", any_available=True))), metadata=ADMIN_CALL)
    await trigger(platform, job.id)
    runs = (await platform.runs.ListRuns(runs_pb2.ListRunsRequest(job_id=job.id), metadata=ADMIN_CALL)).runs
    own = next(r for r in runs if r.device_id == "drone-1")
    pooled = next(r for r in runs if r.id != own.id)
    assert len(runs) == 2 and pooled.device_id == ""
    assert (await assigned(named)).run.run_id == own.id
    await asyncio.sleep(1.5)  # drone-1 has room for one more, but it is not in the pool: it waits
    assert (await platform.run(pooled.id)).status == QUEUED
    spare = await connect(platform, "drone-2", spare_credential)
    assert (await assigned(spare)).run.run_id == pooled.id
    named.close()
    spare.close()
    # A group whose only device is named has no pool to take the one-of-them run: refused at the trigger.
    alone = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="alone", slug="alone", command="echo fly", targets=devices_pb2.DeviceTargets(
            device_ids=["drone-1", "drone-2"], group="dock", any_available=True))), metadata=ADMIN_CALL)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await trigger(platform, alone.id)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "the job has no target devices besides the named ones (they have runs of their own)"


async def test_a_device_back_with_a_run_that_went_on_without_it_is_told_to_stop(platform: Platform) -> None:
    x_credential = await device(platform, "drone-x", "dock")
    x = await connect(platform, "drone-x", x_credential)
    job = await group_job(platform, max_attempts=2, retry_strategy="fixed", retry_delays_secs=[1])
    run = await trigger(platform, job.id)
    ref = (await assigned(x)).run
    x.send(accept=agent_pb2.Accept(run=ref))
    await until(platform, run.id, runs_pb2.RUN_STATUS_EXECUTING)
    x.close()  # the stream drops while it flies; the attempt is lost (heartbeat) and retried in the pool
    platform.clock.advance(31)
    await platform.service.tick()
    assert (await until(platform, run.id, DELAYED)).attempt == 2
    back = ScriptedAgent(platform, x_credential, held=[ref], device_id="drone-x")
    await back.receive("welcome")
    cancel = (await back.receive("cancel")).cancel
    assert (cancel.run.run_id, cancel.run.attempt, cancel.force) == (run.id, 1, True)
    back.close()


async def test_a_device_back_with_an_attempt_another_device_took_stops_it_and_its_output_is_dropped(
        platform: Platform) -> None:
    x_credential = await device(platform, "drone-x", "dock")
    x = await connect(platform, "drone-x", x_credential)
    job = await group_job(platform)
    run = await trigger(platform, job.id)
    ref = (await assigned(x)).run
    x.close()  # gone before accepting: back to the pool at the lease's end, and drone-y takes the same attempt
    y = await connect(platform, "drone-y", await device(platform, "drone-y", "dock"))
    platform.clock.advance(31)
    await platform.service.tick()
    assert (await assigned(y)).run == ref
    y.send(accept=agent_pb2.Accept(run=ref))
    await until(platform, run.id, runs_pb2.RUN_STATUS_EXECUTING)
    back = ScriptedAgent(platform, x_credential, held=[ref], device_id="drone-x")  # it had started it anyway
    await back.receive("welcome")
    assert (await back.receive("cancel")).cancel.run == ref
    back.send(output=agent_pb2.OutputChunk(run=ref, sequence=1, stream=1, data=b"from x\n"))
    back.send(finished=agent_pb2.Finished(run=ref, exit_code=0, canceled=True, last_sequence=1))
    assert (await back.receive("ack")).ack == agent_pb2.Ack(run=ref, sequence=1, finished=True)
    y.send(output=agent_pb2.OutputChunk(run=ref, sequence=1, stream=1, data=b"from y\n"))
    y.send(finished=agent_pb2.Finished(run=ref, exit_code=0, last_sequence=1))
    assert (await until(platform, run.id, runs_pb2.RUN_STATUS_COMPLETED)).device_id == "drone-y"
    logs = await platform.runs.ListRunLogs(runs_pb2.ListRunLogsRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert logs.text == "from y\n"
    back.close()
    y.close()


async def test_an_accept_after_the_run_went_to_another_device_is_refused(platform: Platform) -> None:
    x = await connect(platform, "drone-x", await device(platform, "drone-x", "dock"))
    job = await group_job(platform)
    run = await trigger(platform, job.id)
    ref = (await assigned(x)).run
    y = await connect(platform, "drone-y", await device(platform, "drone-y", "dock"))
    platform.clock.advance(31)  # drone-x never accepted within the lease: back to the pool, drone-y takes it
    await platform.service.tick()
    assert (await assigned(y)).run == ref
    # Too late: drone-x is told to drop it, and what it sends of that attempt is not the run's (drone-y's
    # output has the same attempt and sequence numbers).
    x.send(accept=agent_pb2.Accept(run=ref))
    x.send(output=agent_pb2.OutputChunk(run=ref, sequence=1, stream=1, data=b"from x\n"))
    assert (await x.receive("cancel")).cancel.run == ref
    x.send(output=agent_pb2.OutputChunk(run=ref, sequence=2, stream=1, data=b"from x\n"))
    x.send(finished=agent_pb2.Finished(run=ref, exit_code=0, canceled=True, last_sequence=2))
    assert (await x.receive("ack")).ack == agent_pb2.Ack(run=ref, sequence=2, finished=True)
    y.send(accept=agent_pb2.Accept(run=ref))
    taken = await until(platform, run.id, runs_pb2.RUN_STATUS_EXECUTING)
    assert taken.device_id == "drone-y"
    y.send(output=agent_pb2.OutputChunk(run=ref, sequence=1, stream=1, data=b"from y\n"))
    y.send(finished=agent_pb2.Finished(run=ref, exit_code=0, last_sequence=1))
    await until(platform, run.id, runs_pb2.RUN_STATUS_COMPLETED)
    logs = await platform.runs.ListRunLogs(runs_pb2.ListRunLogsRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert logs.text == "from y\n"
    x.close()
    y.close()


async def test_a_waiting_run_that_follows_its_job_goes_to_the_new_targets_pool(platform: Platform) -> None:
    dock = await connect(platform, "drone-d", await device(platform, "drone-d", "dock"))
    hangar = await connect(platform, "drone-h", await device(platform, "drone-h", "hangar"))
    job = await group_job(platform, version_policy="latest")
    later = Timestamp()
    later.FromDatetime(platform.clock.now() + timedelta(minutes=5))
    run = await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=job.id, scheduled_at=later),
                                         metadata=ADMIN_CALL)
    await platform.jobs.UpdateJob(jobs_pb2.UpdateJobRequest(
        job_id=job.id, job=jobs_pb2.Job(targets=devices_pb2.DeviceTargets(group="hangar", any_available=True)),
        update_mask=field_mask_pb2.FieldMask(paths=["targets"])), metadata=ADMIN_CALL)
    platform.clock.advance(5 * 60 + 1)
    await platform.service.tick()
    assert (await assigned(hangar)).run.run_id == run.id
    assert (await platform.run(run.id)).device_id == "drone-h"
    dock.close()
    hangar.close()
