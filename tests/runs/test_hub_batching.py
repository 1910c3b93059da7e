"""The hub's batching over real streams: agent messages of many streams in one store call per kind,
heartbeats kept in memory, cached agent authentication that a revocation still ends, and credentials
sent to the devices service only when its credential revision moved."""

from __future__ import annotations

import asyncio

import grpc
from sqlalchemy import update

from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2, runs_pb2
from services.runs import hub as hub_module
from services.runs.store import RunRow

from .test_hub import Agent
from .test_runs_service import ADMIN_CALL, Platform, platform, trigger  # noqa: F401


async def devices(platform: Platform, count: int) -> dict[str, str]:
    credentials = {}
    for i in range(count):
        device = await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
            device=devices_pb2.Device(id=f"d{i}", groups=["fleet"])), metadata=ADMIN_CALL)
        credentials[device.id] = device.credential
    return credentials


def counted(calls: list, method):
    async def counting(*args, **kwargs):
        calls.append(args)
        return await method(*args, **kwargs)

    return counting


async def test_output_of_many_streams_is_stored_in_one_call_and_acked_after_it(platform: Platform) -> None:
    credentials = await devices(platform, 20)
    agents = [Agent(platform, agent_pb2.Hello(device_id=d, credential=c)) for d, c in credentials.items()]
    await asyncio.gather(*(agent.receive("welcome") for agent in agents))
    job = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="all", slug="all", command="echo hi",
        targets=devices_pb2.DeviceTargets(group="fleet"))), metadata=ADMIN_CALL)
    stored: list = []
    store = platform.service.store
    store.add_chunks = counted(stored, store.add_chunks)
    hub = platform.service.hub
    accept, handle_batch = platform.service.engine.accept_many, hub.handle_batch
    batches: list[int] = []

    async def recorded(batch):
        batches.append(len(batch))
        await handle_batch(batch)

    async def first_accept_waits_for_every_stream(*args):  # the next drain then holds all the others
        async with asyncio.timeout(5):
            while batches[0] + len(hub._inbox) < 3 * 20:
                await asyncio.sleep(0.01)
        platform.service.engine.accept_many = accept
        return await accept(*args)

    hub.handle_batch = recorded

    platform.service.engine.accept_many = first_accept_waits_for_every_stream
    await trigger(platform, job.id)
    refs = [(await agent.receive("assign")).assign.run for agent in agents]
    for agent, ref in zip(agents, refs):
        agent.send(accept=agent_pb2.Accept(run=ref))
        agent.send(output=agent_pb2.OutputChunk(run=ref, sequence=1, stream=1, data=b"hi\n"))
        agent.send(finished=agent_pb2.Finished(run=ref, exit_code=0, last_sequence=1))
    for agent, ref in zip(agents, refs):
        assert (await agent.receive("ack")).ack == agent_pb2.Ack(run=ref, sequence=1)
        assert (await agent.receive("ack")).ack == agent_pb2.Ack(run=ref, sequence=1, finished=True)
    # the first drain held one stream's messages, or a few; the second all the others'
    assert len(batches) == 2 and len(stored) <= 2 and sum(len(chunks) for chunks, in stored) == 20
    for ref in refs:
        assert (await platform.run(ref.run_id)).status == runs_pb2.RUN_STATUS_COMPLETED
    for agent in agents:
        agent.close()


async def test_heartbeats_stay_in_memory_and_refresh_last_seen_in_one_report(platform: Platform) -> None:
    credentials = await devices(platform, 3)
    hub = platform.service.hub
    agents = [Agent(platform, agent_pb2.Hello(device_id=d, credential=c)) for d, c in credentials.items()]
    await asyncio.gather(*(agent.receive("welcome") for agent in agents))
    await asyncio.sleep(0.5)  # the connects reported
    reports: list = []
    hub.peers.report_presence = counted(reports, hub.peers.report_presence)
    for _ in range(5):
        for agent in agents[:2]:
            agent.send(heartbeat=agent_pb2.Heartbeat())
    await asyncio.sleep(0.5)
    assert [changes for changes, in reports if changes] == []  # no presence change per heartbeat
    assert hub.refresh_seen() == 2  # the two that beat since the last refresh, at one moment
    assert hub.refresh_seen() == 0
    await hub.flush_presence()
    changes = reports[-1][0]
    assert sorted(c.device_id for c in changes) == ["d0", "d1"] and len({c.seen_at.seconds for c in changes}) == 1
    assert all(c.online and not c.stream_opened for c in changes)
    for agent in agents:
        agent.close()


async def test_reconnects_are_authenticated_from_the_cache_until_a_credential_changes(platform: Platform) -> None:
    credentials = await devices(platform, 2)
    hub = platform.service.hub
    asked: list = []
    hub.peers.authenticate_agent = counted(asked, hub.peers.authenticate_agent)
    first = Agent(platform, agent_pb2.Hello(device_id="d0", credential=credentials["d0"]))
    await first.receive("welcome")
    first.close()
    again = Agent(platform, agent_pb2.Hello(device_id="d0", credential=credentials["d0"]))
    await again.receive("welcome")
    assert len(asked) == 1  # the reconnect came from the cache
    wrong = Agent(platform, agent_pb2.Hello(device_id="d0", credential=credentials["d1"]))
    try:
        await wrong.receive("welcome")
        raise AssertionError("another device's credential connected")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    await platform.devices.RotateCredential(devices_pb2.RotateCredentialRequest(device_id="d1"),
                                            metadata=ADMIN_CALL)
    await hub.validate_credentials()  # the revision moved: cached answers of other revisions are not used
    again.close()
    asked.clear()
    last = Agent(platform, agent_pb2.Hello(device_id="d0", credential=credentials["d0"]))
    await last.receive("welcome")
    assert len(asked) == 0  # d0's stream was checked again at the new revision, and held until it closed
    await platform.devices.RevokeCredential(devices_pb2.RevokeCredentialRequest(device_id="d0"), metadata=ADMIN_CALL)
    assert await hub.validate_credentials() == 1
    refused = Agent(platform, agent_pb2.Hello(device_id="d0", credential=credentials["d0"]))
    try:
        await refused.receive("welcome")
        raise AssertionError("a revoked credential connected")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_credentials_are_sent_only_when_the_revision_moved(platform: Platform, monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "VALIDATE_BATCH", 2)
    credentials = await devices(platform, 5)
    hub = platform.service.hub
    agents = [Agent(platform, agent_pb2.Hello(device_id=d, credential=c)) for d, c in credentials.items()]
    await asyncio.gather(*(agent.receive("welcome") for agent in agents))
    sent: list = []
    hub.peers.invalid_agents = counted(sent, hub.peers.invalid_agents)
    assert await hub.validate_credentials() == 0
    assert [len(agents) for agents, in sent] == [0]  # the revision alone
    await platform.devices.RevokeCredential(devices_pb2.RevokeCredentialRequest(device_id="d3"), metadata=ADMIN_CALL)
    sent.clear()
    assert await hub.validate_credentials() == 1
    assert [len(agents) for agents, in sent] == [0, 2, 2, 1]  # then every stream, VALIDATE_BATCH at a time
    sent.clear()
    assert await hub.validate_credentials() == 0
    assert [len(agents) for agents, in sent] == [0]
    for agent in agents:
        agent.close()


async def test_the_periodic_scan_looks_at_every_device_in_turn(platform: Platform, monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "RESCAN_BATCH", 2)
    credentials = await devices(platform, 5)
    hub = platform.service.hub
    agents = [Agent(platform, agent_pb2.Hello(device_id=d, credential=c)) for d, c in credentials.items()]
    await asyncio.gather(*(agent.receive("welcome") for agent in agents))
    slices = [hub._rescan_slice() for _ in range(3)]
    assert all(len(keys) == 2 for keys in slices)
    assert {key for keys in slices for key in keys} == set(hub.sessions)  # all 5 within 3 scans
    for agent in agents:
        agent.close()


async def test_an_idle_device_back_holding_nothing_is_not_reconciled(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    store = platform.service.store
    looked_up: list = []
    store.on_devices = counted(looked_up, store.on_devices)
    hello = agent_pb2.Hello(device_id="phone-1", credential=credential)
    first = Agent(platform, hello)
    await first.receive("welcome")
    assert len(looked_up) == 1  # the first connect: what the database says is on the device
    first.close()
    await asyncio.sleep(0.2)
    idle = Agent(platform, hello)
    await idle.receive("welcome")
    assert len(looked_up) == 1  # it left holding nothing and is back holding nothing
    replacing = Agent(platform, hello)  # a new stream while the hub still holds the old one
    await replacing.receive("welcome")
    assert len(looked_up) == 1
    run = await trigger(platform, job_id)
    assert (await replacing.receive("assign")).assign.run.run_id == run.id
    replacing.close()  # leaves holding the run (its Assign maybe lost): the next connect reconciles
    idle.close()
    await asyncio.sleep(0.2)
    busy = Agent(platform, hello)
    await busy.receive("welcome")
    assert len(looked_up) == 2
    assert (await busy.receive("assign")).assign.run.run_id == run.id  # requeued by the reconcile, assigned again
    busy.close()


async def test_devices_connecting_together_are_reconciled_in_one_query(platform: Platform, monkeypatch) -> None:
    credentials = await devices(platform, 5)
    store = platform.service.store
    calls: list = []
    first_read, read = asyncio.Event(), store.on_devices

    async def held(keys):
        calls.append(sorted(keys))
        if len(calls) == 1:  # the others connect while the first read runs
            await first_read.wait()
        return await read(keys)

    monkeypatch.setattr(store, "on_devices", held)
    hub = platform.service.hub
    agents = [Agent(platform, agent_pb2.Hello(device_id=d, credential=c)) for d, c in credentials.items()]
    async with asyncio.timeout(5):
        while not calls or len(hub._on_device_wanted) + len(calls[0]) < 5:
            await asyncio.sleep(0.01)
    first_read.set()
    await asyncio.gather(*(agent.receive("welcome") for agent in agents))  # sent once reconciled
    assert len(hub.sessions) == 5
    assert len(calls) <= 2  # not one per device
    assert sorted(key for keys in calls for key in keys) == sorted(f"t1/{d}" for d in credentials)
    for agent in agents:
        agent.close()


async def test_presence_goes_in_calls_of_presence_batch_each_renewing_the_lease(platform: Platform,
                                                                                 monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "PRESENCE_BATCH", 4)
    credentials = await devices(platform, 10)
    hub = platform.service.hub
    await hub.flush_presence()
    reports: list = []
    hub.peers.report_presence = counted(reports, hub.peers.report_presence)
    agents = [Agent(platform, agent_pb2.Hello(device_id=d, credential=c)) for d, c in credentials.items()]
    await asyncio.gather(*(agent.receive("welcome") for agent in agents))
    await hub.flush_presence()
    await asyncio.sleep(0.3)
    assert all(len(changes) <= 4 for changes, in reports)
    assert sum(len(changes) for changes, in reports) >= 10
    listed = await platform.devices.ListDevices(devices_pb2.ListDevicesRequest(page_size=100, online=True),
                                                metadata=ADMIN_CALL)
    assert len(listed.devices) == 10
    for agent in agents:
        agent.close()


async def test_runs_finishing_in_one_drain_end_in_one_call_and_one_failure_fails_no_other(platform: Platform) -> None:
    credentials = await devices(platform, 4)
    agents = {d: Agent(platform, agent_pb2.Hello(device_id=d, credential=c)) for d, c in credentials.items()}
    await asyncio.gather(*(agent.receive("welcome") for agent in agents.values()))
    job = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="all", slug="all", command="true", max_attempts=2,
        targets=devices_pb2.DeviceTargets(group="fleet"))), metadata=ADMIN_CALL)
    await trigger(platform, job.id)
    refs = {d: (await agent.receive("assign")).assign.run for d, agent in agents.items()}
    for d, agent in agents.items():
        agent.send(accept=agent_pb2.Accept(run=refs[d]))
    for ref in refs.values():
        async with asyncio.timeout(5):
            while (await platform.run(ref.run_id)).status != runs_pb2.RUN_STATUS_EXECUTING:
                await asyncio.sleep(0.01)
    store, hub, engine = platform.service.store, platform.service.hub, platform.service.engine
    broken = refs["d2"].run_id  # its job snapshot no longer parses: deciding its retry fails
    await store.db.write(lambda conn: conn.execute(update(RunRow).where(RunRow.id == broken)
                                                   .values(snapshot=b"\xff\xff")))
    calls: list = []
    engine.end_attempts = counted(calls, engine.end_attempts)
    sessions = {s.device_id: s for s in hub.sessions.values()}
    exit_codes = {"d0": 0, "d1": 1, "d2": 1, "d3": 0}
    await hub.handle_batch([(sessions[d], agent_pb2.AgentMessage(finished=agent_pb2.Finished(
        run=refs[d], exit_code=exit_codes[d]))) for d in agents])
    assert [len(endings) for endings, in calls] == [4]  # one engine call (one write) for the drain
    for d in ("d0", "d1", "d3"):
        assert (await agents[d].receive("ack")).ack == agent_pb2.Ack(run=refs[d], finished=True)
    assert await asyncio.wait_for(agents["d2"].call.read(), 5) is grpc.aio.EOF  # it reconnects and resends
    runs = {d: await platform.run(ref.run_id) for d, ref in refs.items()}
    assert [runs[d].status for d in ("d0", "d1", "d2", "d3")] == [
        runs_pb2.RUN_STATUS_COMPLETED, runs_pb2.RUN_STATUS_DELAYED, runs_pb2.RUN_STATUS_EXECUTING,
        runs_pb2.RUN_STATUS_COMPLETED]
    assert runs["d1"].attempt == 2  # retried per the job's policy
    for agent in agents.values():
        agent.close()
