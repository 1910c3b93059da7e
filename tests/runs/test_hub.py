"""The agent hub's protocol over real streams: output stored exactly once, capacity under a burst,
batched presence, credential revocation and enrolment (real jobs, devices and runs services)."""

from __future__ import annotations

import asyncio
import time

import grpc

from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2, runs_pb2

from .test_runs_service import ADMIN_CALL, Platform, ScriptedAgent, platform, trigger  # noqa: F401


class Agent(ScriptedAgent):
    """A scripted agent saying its own Hello."""

    def __init__(self, platform: Platform, hello: agent_pb2.Hello) -> None:
        self.outbox = asyncio.Queue()
        self.outbox.put_nowait(agent_pb2.AgentMessage(hello=hello))
        self.call = platform.agents.Connect(self._requests())


async def test_output_is_stored_exactly_once_and_finished_waits_for_every_chunk(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await agent.receive("assign")).assign.run
    agent.send(accept=agent_pb2.Accept(run=ref))
    chunk = lambda n: agent_pb2.OutputChunk(run=ref, sequence=n, stream=1, data=f"{n}\n".encode())  # noqa: E731
    agent.send(output=chunk(1))
    assert (await agent.receive("ack")).ack.sequence == 1
    agent.send(output=chunk(3))  # 2 lost on the way: the ack stays at 1
    assert (await agent.receive("ack")).ack.sequence == 1
    agent.send(finished=agent_pb2.Finished(run=ref, exit_code=0, last_sequence=3))
    assert (await agent.receive("ack")).ack == agent_pb2.Ack(run=ref, sequence=1)  # not finished
    assert await asyncio.wait_for(agent.call.read(), 5) is grpc.aio.EOF  # the hub ends the stream
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_EXECUTING

    again = ScriptedAgent(platform, credential, held=[ref])  # resends everything unacked, 3 twice
    await again.receive("welcome")
    for n in (2, 3, 3):
        again.send(output=agent_pb2.OutputChunk(run=ref, sequence=n, stream=1, data=f"{n}\n".encode()))
    again.send(finished=agent_pb2.Finished(run=ref, exit_code=0, last_sequence=3))
    while not (ack := (await again.receive("ack")).ack).finished:
        pass
    assert ack.sequence == 3
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_COMPLETED
    logs = await platform.runs.ListRunLogs(runs_pb2.ListRunLogsRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert logs.text == "1\n2\n3\n" and [c.sequence for c in logs.chunks] == [1, 2, 3]
    again.close()


async def test_a_burst_never_exceeds_the_agents_capacity(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    agent = Agent(platform, agent_pb2.Hello(device_id="phone-1", credential=credential, capacity=2))
    await agent.receive("welcome")
    await asyncio.gather(*(trigger(platform, job_id) for _ in range(20)))
    inbox: asyncio.Queue = asyncio.Queue()

    async def read() -> None:  # (a read cancelled by a timeout would cancel the call)
        while (message := await agent.call.read()) is not grpc.aio.EOF:
            inbox.put_nowait(message)

    reader = asyncio.create_task(read())
    holding: list[agent_pb2.RunRef] = []
    peak = done = 0
    while done < 20:
        full = len(holding) == 2 or done + len(holding) == 20
        try:  # at capacity: give the hub a moment to over-assign, if it would; else wait for the next run
            message = await asyncio.wait_for(inbox.get(), 0.2 if full else 5)
        except asyncio.TimeoutError:
            assert full, f"the hub went quiet with runs still queued ({done} done, {len(holding)} held)"
            ref = holding.pop(0)  # then finish the oldest run
            agent.send(accept=agent_pb2.Accept(run=ref))
            agent.send(finished=agent_pb2.Finished(run=ref, exit_code=0))
            done += 1
            continue
        if message.WhichOneof("body") == "assign":
            holding.append(message.assign.run)
            peak = max(peak, len(holding))
            assert len(holding) <= 2, "assigned beyond capacity"
    assert peak == 2
    reader.cancel()
    agent.close()


async def test_presence_is_batched_and_visible_within_a_second(platform: Platform) -> None:
    credentials = {}
    for i in range(30):
        device = await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
            device=devices_pb2.Device(id=f"d{i}")), metadata=ADMIN_CALL)
        credentials[device.id] = device.credential
    hub = platform.service.hub
    calls = []
    original = hub.peers.report_presence

    async def counting(changes, **lease):
        calls.append(len(changes))
        return await original(changes, **lease)

    hub.peers.report_presence = counting
    agents = [Agent(platform, agent_pb2.Hello(device_id=d, credential=c, agent_version="v9", facts={"os": "linux"}))
              for d, c in credentials.items()]
    await asyncio.gather(*(agent.receive("welcome") for agent in agents))
    began = time.monotonic()

    async def all_online(expected: bool) -> None:
        async with asyncio.timeout(1.5):
            while True:
                listed = await platform.devices.ListDevices(devices_pb2.ListDevicesRequest(
                    page_size=100, online=expected), metadata=ADMIN_CALL)
                if len(listed.devices) == 30:
                    return
                await asyncio.sleep(0.05)

    await all_online(True)
    assert time.monotonic() - began < 1.5
    assert sum(calls) >= 30 and len(calls) <= 5  # a few calls for 30 connects
    device = await platform.devices.GetDevice(devices_pb2.GetDeviceRequest(device_id="d0"), metadata=ADMIN_CALL)
    assert (device.agent_version, dict(device.facts)) == ("v9", {"os": "linux"})
    for agent in agents:
        agent.close()
    await all_online(False)


async def test_a_revoked_credential_ends_the_stream_and_is_refused(platform: Platform) -> None:
    _, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    began = time.monotonic()
    await platform.devices.RevokeCredential(devices_pb2.RevokeCredentialRequest(device_id="phone-1"),
                                            metadata=ADMIN_CALL)
    try:
        while await asyncio.wait_for(agent.call.read(), 5) is not grpc.aio.EOF:
            pass
        raise AssertionError("the stream ended without a status")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert time.monotonic() - began < 2.5
    again = ScriptedAgent(platform, credential)
    try:
        await again.receive("welcome")
        raise AssertionError("a revoked credential connected")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_agent_enrols_with_a_token_on_its_stream(platform: Platform) -> None:
    token = await platform.devices.CreateEnrollmentToken(devices_pb2.CreateEnrollmentTokenRequest(
        token=devices_pb2.EnrollmentToken(group="lab", max_uses=1)), metadata=ADMIN_CALL)
    agent = Agent(platform, agent_pb2.Hello(device_id="new-1", enrollment_token=token.token, device_name="New",
                                            facts={"os": "android"}))
    welcome = (await agent.receive("welcome")).welcome
    assert welcome.credential.startswith("jld_")
    job = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="p", slug="p", command="echo hi",
        targets=devices_pb2.DeviceTargets(group="lab", any_available=True))), metadata=ADMIN_CALL)
    await asyncio.sleep(0.5)  # presence (online) flushed
    run = await trigger(platform, job.id)
    assert run.device_id == ""  # any available device of "lab": it waits in the group's pool
    assert (await agent.receive("assign")).assign.run.run_id == run.id
    assert (await platform.run(run.id)).device_id == "new-1"
    agent.close()
    used = Agent(platform, agent_pb2.Hello(device_id="new-2", enrollment_token=token.token))
    try:
        await used.receive("welcome")
        raise AssertionError("a used-up token enrolled")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    reconnect = ScriptedAgent(platform, welcome.credential)  # ScriptedAgent says device phone-1: refused
    try:
        await reconnect.receive("welcome")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    by_credential = Agent(platform, agent_pb2.Hello(device_id="new-1", credential=welcome.credential))
    await by_credential.receive("welcome")
    by_credential.close()
