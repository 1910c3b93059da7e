"""A new run for a device streaming on this replica with room and nothing queued before it is inserted
already claimed (dequeued, leased, the device's room reserved) and assigned when its insert commits:
no claim round after it (AgentHub.reserve). Everything else goes through the queue as before. Real jobs,
devices and runs services, scripted agents on real streams, time on the fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2, runs_pb2
from services.common.clock import as_utc
from services.runs import hub as hub_module

from .test_pools import assigned, connect, device, group_job, until
from .test_runs_service import ADMIN_CALL, Platform, ScriptedAgent, platform, trigger  # noqa: F401 - the fixture

QUEUED, DEQUEUED = runs_pb2.RUN_STATUS_QUEUED, runs_pb2.RUN_STATUS_DEQUEUED
KEY = "t1/phone-1"


class Rounds:
    """Counts the hub's claim rounds: its reads of the queue and its claims."""

    def __init__(self, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = self.claims = 0
        store = platform.service.store
        read, claim = store.queued_for, store.claim

        async def counted_read(*args, **kwargs):
            self.reads += 1
            return await read(*args, **kwargs)

        async def counted_claim(*args, **kwargs):
            self.claims += 1
            return await claim(*args, **kwargs)

        monkeypatch.setattr(store, "queued_for", counted_read)
        monkeypatch.setattr(store, "claim", counted_claim)

    def reset(self) -> None:
        self.reads = self.claims = 0


async def drained(platform: Platform, key: str = KEY) -> None:
    """Until the hub's first dispatch round for the device has read its queue (empty)."""
    async with asyncio.timeout(5):
        while key not in platform.service.hub._drained:
            await asyncio.sleep(0.01)


async def job(platform: Platform, device_id: str = "phone-1", **fields) -> jobs_pb2.Job:
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name=f"probe {len(fields)}", slug=f"probe-{len(fields)}", command="echo hi",
        targets=devices_pb2.DeviceTargets(device_ids=[device_id]), **fields)), metadata=ADMIN_CALL)


async def events(platform: Platform, run_id: str) -> list[str]:
    answer = await platform.runs.ListRunEvents(runs_pb2.ListRunEventsRequest(run_id=run_id), metadata=ADMIN_CALL)
    return [e.type for e in answer.events]


def done(agent: ScriptedAgent, ref: agent_pb2.RunRef) -> None:
    agent.send(accept=agent_pb2.Accept(run=ref))
    agent.send(finished=agent_pb2.Finished(run=ref, exit_code=0))


async def test_a_run_for_a_drained_device_here_is_assigned_at_its_insert_without_a_claim_round(
        platform: Platform, monkeypatch) -> None:
    job_id, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    await drained(platform)
    rounds = Rounds(platform, monkeypatch)
    run = await trigger(platform, job_id)
    assert run.status == DEQUEUED  # stored claimed: the trigger answers it so
    ref = (await assigned(agent)).run
    assert (ref.run_id, ref.attempt) == (run.id, 1)
    assert (rounds.reads, rounds.claims) == (0, 0)  # no read of the queue, no second write
    stored = await platform.service.store.get_any(run.id)
    hub = platform.service.hub
    assert (stored.status, stored.lease_owner) == ("dequeued", hub.replica_id)
    assert as_utc(stored.lease_expires_at) == platform.clock.now() + timedelta(seconds=hub_module.LEASE_SECS)
    assert as_utc(stored.dequeued_at) == platform.clock.now() and stored.device_id == "phone-1"
    assert await events(platform, run.id) == ["run.created", "run.dequeued"]
    assert hub.sessions[KEY].reserved == 0 and hub.sessions[KEY].free == 0
    assert hub.dispatch_latency.count == 1

    agent.send(accept=agent_pb2.Accept(run=ref))
    agent.send(finished=agent_pb2.Finished(run=ref, exit_code=0))
    assert (await agent.receive("ack")).ack.finished
    assert (await until(platform, run.id, runs_pb2.RUN_STATUS_COMPLETED)).exit_code == 0
    assert await events(platform, run.id) == ["run.created", "run.dequeued", "run.executing", "run.completed"]
    # Its queue is still drained after the run ends (nothing was queued): the next run goes the same way,
    # and the Finished cost no read of the queue either.
    second = await trigger(platform, job_id)
    assert (await assigned(agent)).run.run_id == second.id
    assert (second.status, rounds.reads, rounds.claims) == (DEQUEUED, 0, 0)
    agent.close()


async def test_a_burst_of_triggers_never_exceeds_the_capacity_and_the_rest_go_through_the_queue(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential, capacity=3)
    await agent.receive("welcome")
    await drained(platform)
    runs = await asyncio.gather(*(trigger(platform, job_id) for _ in range(12)))
    assert sorted(r.status for r in runs).count(DEQUEUED) == 3  # room for three, reserved synchronously
    hub = platform.service.hub
    assert len(hub.sessions[KEY].held) == 3 and hub.sessions[KEY].reserved == 0
    inbox: asyncio.Queue = asyncio.Queue()

    async def read() -> None:  # (a read cancelled by a timeout would cancel the call)
        while (message := await agent.call.read()) is not grpc.aio.EOF:
            if message.WhichOneof("body") == "assign":
                inbox.put_nowait(message.assign.run)

    reader = asyncio.create_task(read())
    held = [await asyncio.wait_for(inbox.get(), 5) for _ in range(3)]
    assert {r.run_id for r in held} == {r.id for r in runs if r.status == DEQUEUED}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(inbox.get(), 0.3)  # nothing beyond capacity
    queued = {r.id for r in runs if r.status == QUEUED}
    later = []
    while len(later) < len(queued):  # one in, one out: the queued runs come through the queue
        done(agent, held.pop(0))
        held.append(await asyncio.wait_for(inbox.get(), 5))
        later.append(held[-1].run_id)
        assert len(hub.sessions[KEY].held) <= 3
    assert sorted(later) == sorted(queued)
    reader.cancel()
    agent.close()


async def test_a_run_queued_for_the_device_is_not_overtaken(platform: Platform, monkeypatch) -> None:
    """A device whose queue holds a run (a delayed run just come due, here) takes it first: a new trigger
    queues behind it, even while the dispatch round that will claim it has not read the queue yet."""
    job_id, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    await drained(platform)
    at = Timestamp()
    at.FromDatetime(platform.clock.now() + timedelta(seconds=10))
    first = await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=job_id, scheduled_at=at),
                                           metadata=ADMIN_CALL)
    assert first.status == runs_pb2.RUN_STATUS_DELAYED
    store = platform.service.store
    read, reading = store.queued_for, asyncio.Event()

    async def held_read(*args, **kwargs):  # the dispatch round waits until the trigger below is in
        await reading.wait()
        return await read(*args, **kwargs)

    monkeypatch.setattr(store, "queued_for", held_read)
    platform.clock.advance(11)
    await platform.service.tick()  # queued now, and its device woken
    second = await trigger(platform, job_id)
    assert second.status == QUEUED
    reading.set()
    ref = (await assigned(agent)).run
    assert ref.run_id == first.id
    done(agent, ref)
    assert (await assigned(agent)).run.run_id == second.id
    agent.close()


async def test_limited_delayed_and_pooled_runs_go_through_the_queue(platform: Platform, monkeypatch) -> None:
    credential = await device(platform, "phone-1", "dock")
    agent = await connect(platform, "phone-1", credential, capacity=4)
    await drained(platform)
    rounds = Rounds(platform, monkeypatch)
    limited = await job(platform, max_concurrency=5)
    run = await trigger(platform, limited.id)
    assert run.status == QUEUED
    assert (await assigned(agent)).run.run_id == run.id
    assert rounds.claims == 1

    at = Timestamp()
    at.FromDatetime(platform.clock.now() + timedelta(seconds=5))
    later = await job(platform, timeout_secs=77, max_attempts=1)
    delayed = await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=later.id, scheduled_at=at),
                                             metadata=ADMIN_CALL)
    assert delayed.status == runs_pb2.RUN_STATUS_DELAYED
    platform.clock.advance(6)
    await platform.service.tick()
    assert (await assigned(agent)).run.run_id == delayed.id
    assert rounds.claims == 2

    pooled = await trigger(platform, (await group_job(platform)).id)
    assert pooled.status == QUEUED
    assert (await assigned(agent)).run.run_id == pooled.id
    assert rounds.claims == 3
    assert (await platform.run(pooled.id)).device_id == "phone-1"
    agent.close()


async def test_a_failed_insert_gives_the_reserved_room_back(platform: Platform, monkeypatch) -> None:
    job_id, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    await drained(platform)
    store = platform.service.store
    insert = store.insert_runs

    async def failing(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(store, "insert_runs", failing)
    with pytest.raises(grpc.aio.AioRpcError):
        await trigger(platform, job_id)
    session = platform.service.hub.sessions[KEY]
    assert (session.reserved, session.free) == (0, 1)
    assert (await platform.runs.ListRuns(runs_pb2.ListRunsRequest(project_id="default"),
                                         metadata=ADMIN_CALL)).runs == []
    monkeypatch.setattr(store, "insert_runs", insert)
    run = await trigger(platform, job_id)  # the room is there again, and still taken at insert
    assert run.status == DEQUEUED
    assert (await assigned(agent)).run.run_id == run.id
    agent.close()


async def test_a_run_claimed_at_insert_is_recovered_by_its_lease_and_by_a_reconnect(platform: Platform) -> None:
    job_id, credential = await platform.device_job(max_attempts=1)
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    await drained(platform)
    run = await trigger(platform, job_id)
    assert run.status == DEQUEUED
    await assigned(agent)
    agent.close()  # the agent goes away before it accepts: the Assign is lost with it
    async with asyncio.timeout(5):
        while KEY in platform.service.hub.sessions:
            await asyncio.sleep(0.01)
    platform.clock.advance(hub_module.LEASE_SECS + 1)
    await platform.service.tick()  # the lease ran out: back in the queue, same attempt
    back = await platform.run(run.id)
    assert (back.status, back.attempt) == (QUEUED, 1)

    again = ScriptedAgent(platform, credential)
    await again.receive("welcome")
    assert (await assigned(again)).run.run_id == run.id
    again.close()  # lost once more: the next stream's reconcile puts it back and it comes again
    async with asyncio.timeout(5):
        while KEY in platform.service.hub.sessions:
            await asyncio.sleep(0.01)
    third = ScriptedAgent(platform, credential)
    await third.receive("welcome")
    ref = (await assigned(third)).run
    assert (ref.run_id, ref.attempt) == (run.id, 1)
    done(third, ref)
    assert (await third.receive("ack")).ack.finished
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_COMPLETED
    third.close()


async def test_concurrent_triggers_naming_devices_resolve_them_in_one_call_each_answered_alone(
        platform: Platform, monkeypatch) -> None:
    for i in range(6):
        await device(platform, f"d{i}")
    job_id = (await job(platform, "d0")).id
    peers = platform.service.peers
    calls: list[list[str]] = []
    first, resolve = asyncio.Event(), peers._resolve

    async def held(principal, targets, *args, **kwargs):
        calls.append(list(targets.device_ids))
        if len(calls) == 1:  # the others come while the first call is out
            await first.wait()
        return await resolve(principal, targets, *args, **kwargs)

    monkeypatch.setattr(peers, "_resolve", held)

    async def named(*device_ids: str) -> runs_pb2.Run | grpc.aio.AioRpcError:
        try:
            return await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=job_id, device_ids=device_ids),
                                                  metadata=ADMIN_CALL)
        except grpc.aio.AioRpcError as error:
            return error

    lone = asyncio.create_task(named("d0"))
    async with asyncio.timeout(5):
        while not calls:
            await asyncio.sleep(0.01)
    together = [asyncio.create_task(named(*ids)) for ids in (("d1", "d2"), ("d3",), ("nope",), ("d4", "d5", "d1"))]
    async with asyncio.timeout(5):
        while sum(len(wanted.waiting) for wanted in peers._ids_wanted.values()) < 4:
            await asyncio.sleep(0.01)
    first.set()
    answers = await asyncio.gather(lone, *together)
    assert len(calls) == 2 and sorted(calls[1]) == ["d1", "d2", "d3", "d4", "d5", "nope"]
    assert isinstance(answers[3], grpc.aio.AioRpcError) and answers[3].code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in answers[3].details()
    ok = [a for i, a in enumerate(answers) if i != 3]
    invocations = [(await platform.runs.ListRuns(runs_pb2.ListRunsRequest(
        project_id="default", invocation_id=a.invocation_id), metadata=ADMIN_CALL)).runs for a in ok]
    assert [sorted(r.device_id for r in runs) for runs in invocations] == [
        ["d0"], ["d1", "d2"], ["d3"], ["d1", "d4", "d5"]]


async def test_runs_being_claimed_from_the_queue_take_their_room_from_runs_claimed_at_insert(
        platform: Platform, monkeypatch) -> None:
    job_id, credential = await platform.device_job()
    first = await trigger(platform, job_id)  # queued before the device connects: it goes through a claim
    store, hub = platform.service.store, platform.service.hub
    claim, claiming, release = store.claim, asyncio.Event(), asyncio.Event()

    async def held_claim(*args, **kwargs):
        claiming.set()
        await release.wait()
        return await claim(*args, **kwargs)

    monkeypatch.setattr(store, "claim", held_claim)
    agent = ScriptedAgent(platform, credential, capacity=2)
    await agent.receive("welcome")
    await asyncio.wait_for(claiming.wait(), 5)  # the first run read (the device drained), its claim out
    second, third = await trigger(platform, job_id), await trigger(platform, job_id)
    assert (second.status, third.status) == (DEQUEUED, QUEUED)  # one room left, not two
    release.set()
    given = {(await assigned(agent)).run.run_id, (await assigned(agent)).run.run_id}
    assert given == {first.id, second.id} and len(hub.sessions[KEY].held) == 2
    done(agent, agent_pb2.RunRef(run_id=first.id, attempt=1))
    assert (await assigned(agent)).run.run_id == third.id
    agent.close()


async def test_the_finished_of_a_run_a_device_was_told_to_stop_frees_its_room_at_once(
        platform: Platform, monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "RESCAN_SECS", 30.0)  # only a wake-up dispatches within the test
    job_id, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    await drained(platform)
    canceled = await trigger(platform, job_id)
    ref = (await assigned(agent)).run
    await platform.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=canceled.id), metadata=ADMIN_CALL)
    waiting = await trigger(platform, job_id)  # no room: it waits in the queue
    assert waiting.status == QUEUED
    agent.send(accept=agent_pb2.Accept(run=ref))  # too late: told to stop it
    assert (await agent.receive("cancel")).cancel.run == ref
    agent.send(finished=agent_pb2.Finished(run=ref, exit_code=0, canceled=True))
    assert (await agent.receive("ack")).ack.finished
    assert (await assigned(agent)).run.run_id == waiting.id
    agent.close()
