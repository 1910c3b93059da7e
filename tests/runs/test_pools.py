"""Runs for "any one available device" of a group wait in the group's pool and go to the first device of
the group with room, at dispatch time (services/runs/pools.py): real jobs, devices and runs services, scripted
agents on real streams, time on the fake clock."""

from __future__ import annotations

import asyncio

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
