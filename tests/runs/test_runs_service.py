"""The runs service over real gRPC, with the real jobs and devices services beside it and a
scripted agent on a real AgentService stream; time moves only through a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from jobline.runs.v1 import agent_pb2, agent_pb2_grpc, runs_pb2, runs_pb2_grpc
from services.common import server
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.principal import ADMIN, to_metadata
from services.devices.app import build as build_devices
from services.jobs.app import build as build_jobs
from services.runs.app import RunsService
from services.runs.app import build as build_runs

ADMIN_CALL = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="u1", scopes=[ADMIN]))


class Platform:
    def __init__(self, channel: grpc.aio.Channel, service: RunsService, clock: FakeClock) -> None:
        self.jobs = jobs_pb2_grpc.JobServiceStub(channel["jobs"])
        self.devices = devices_pb2_grpc.DeviceServiceStub(channel["devices"])
        self.runs = runs_pb2_grpc.RunServiceStub(channel["runs"])
        self.agents = agent_pb2_grpc.AgentServiceStub(channel["runs"])
        self.service = service
        self.clock = clock

    async def device_job(self, command: str = "echo hi", **fields) -> tuple[str, str]:
        device = await self.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
            device=devices_pb2.Device(id="phone-1")), metadata=ADMIN_CALL)
        job = await self.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
            project_id="default", name="probe", slug="probe", command=command,
            targets=devices_pb2.DeviceTargets(device_ids=["phone-1"]), **fields)), metadata=ADMIN_CALL)
        return job.id, device.credential

    async def run(self, run_id: str) -> runs_pb2.Run:
        return await self.runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id), metadata=ADMIN_CALL)


@pytest.fixture
async def platform(tmp_path) -> AsyncIterator[Platform]:
    clock = FakeClock()
    ports: dict[str, int] = {}
    running = []
    for name, build in (("jobs", build_jobs), ("devices", build_devices)):
        settings = Settings(service=name, listen_addr="", database_url=f"sqlite:///{tmp_path}/{name}.db")
        running.append(await server.start(await build(settings, clock=clock), "127.0.0.1:0"))
        ports[name] = running[-1].port
    settings = Settings(service="runs", listen_addr="", database_url=f"sqlite:///{tmp_path}/runs.db",
                        peers={n: f"127.0.0.1:{p}" for n, p in ports.items()}, heartbeat_timeout_secs=30)
    registration = await build_runs(settings, clock=clock, ticking=False)
    running.append(await server.start(registration, "127.0.0.1:0"))
    channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{port}") for name, port in
                {**ports, "runs": running[-1].port}.items()}
    yield Platform(channels, registration.handle, clock)
    for channel in channels.values():
        await channel.close()
    for item in reversed(running):
        await item.stop(0)


class ScriptedAgent:
    """One real agent stream, driven step by step by the test."""

    def __init__(self, platform: Platform, credential: str, held: list[agent_pb2.RunRef] = (),
                 device_id: str = "phone-1", capacity: int = 1) -> None:
        self.outbox: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        self.outbox.put_nowait(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            device_id=device_id, credential=credential, capacity=capacity, held_runs=held)))
        self.call = platform.agents.Connect(self._requests())

    async def _requests(self):
        while (message := await self.outbox.get()) is not None:
            yield message

    def send(self, **body) -> None:
        self.outbox.put_nowait(agent_pb2.AgentMessage(**body))

    async def receive(self, kind: str) -> agent_pb2.ServerMessage:
        while True:
            message = await asyncio.wait_for(self.call.read(), timeout=5)
            if message.WhichOneof("body") == kind:
                return message

    def close(self) -> None:
        self.outbox.put_nowait(None)
        self.call.cancel()


async def trigger(platform: Platform, job_id: str) -> runs_pb2.Run:
    return await platform.runs.TriggerJob(runs_pb2.TriggerJobRequest(job_id=job_id), metadata=ADMIN_CALL)


async def test_a_run_is_assigned_executed_and_its_output_acked(platform: Platform) -> None:
    job_id, credential = await platform.device_job("echo {{greeting}}", default_inputs={"greeting": "hi"})
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    run = await trigger(platform, job_id)
    assign = (await agent.receive("assign")).assign
    assert (assign.run.run_id, assign.command, assign.inputs["greeting"]) == (run.id, "echo hi", "hi")
    ref = assign.run
    agent.send(accept=agent_pb2.Accept(run=ref))
    for sequence in (1, 2, 2):  # a resent chunk is stored once
        agent.send(output=agent_pb2.OutputChunk(run=ref, sequence=sequence, stream=1, data=b"hi\n"))
        assert (await agent.receive("ack")).ack.sequence == sequence
    agent.send(finished=agent_pb2.Finished(run=ref, exit_code=0, last_sequence=2))
    assert (await agent.receive("ack")).ack.finished
    done = await platform.run(run.id)
    assert done.status == runs_pb2.RUN_STATUS_COMPLETED and done.exit_code == 0
    logs = await platform.runs.ListRunLogs(runs_pb2.ListRunLogsRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert logs.text == "hi\nhi\n"
    agent.close()


async def test_a_silent_device_crashes_the_run_which_is_retried(platform: Platform) -> None:
    job_id, credential = await platform.device_job(max_attempts=2)
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await agent.receive("assign")).assign.run
    agent.send(accept=agent_pb2.Accept(run=ref))
    await asyncio.sleep(0.2)
    platform.clock.advance(31)  # past the heartbeat deadline
    await platform.service.tick()
    retried = await platform.run(run.id)
    assert retried.status == runs_pb2.RUN_STATUS_DELAYED and retried.attempt == 2
    assert retried.error == "heartbeat lost"
    assert (await agent.receive("cancel")).cancel.run == ref  # the device is told to stop the lost attempt
    agent.send(finished=agent_pb2.Finished(run=ref, exit_code=-9, canceled=True))  # which frees its slot
    assert (await agent.receive("ack")).ack.finished

    platform.clock.advance(5)  # past the backoff
    await platform.service.tick()
    second = (await agent.receive("assign")).assign.run
    assert (second.run_id, second.attempt) == (run.id, 2)
    agent.close()


async def test_heartbeats_keep_a_long_run_alive(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await agent.receive("assign")).assign.run
    agent.send(accept=agent_pb2.Accept(run=ref))
    for _ in range(4):
        platform.clock.advance(20)
        agent.send(heartbeat=agent_pb2.Heartbeat(runs=[ref]))
        await asyncio.sleep(0.1)
        await platform.service.tick()
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_EXECUTING
    agent.close()


async def test_a_reconnecting_agent_keeps_the_runs_it_holds(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    first = ScriptedAgent(platform, credential)
    await first.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await first.receive("assign")).assign.run
    first.send(accept=agent_pb2.Accept(run=ref))
    await asyncio.sleep(0.2)
    first.close()

    second = ScriptedAgent(platform, credential, held=[ref])
    await second.receive("welcome")
    second.send(finished=agent_pb2.Finished(run=ref, exit_code=0))
    assert (await second.receive("ack")).ack.finished
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_COMPLETED
    second.close()


async def test_an_agent_that_lost_its_run_gets_it_retried(platform: Platform) -> None:
    job_id, credential = await platform.device_job(max_attempts=3)
    first = ScriptedAgent(platform, credential)
    await first.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await first.receive("assign")).assign.run
    first.send(accept=agent_pb2.Accept(run=ref))
    await asyncio.sleep(0.2)
    first.close()

    restarted = ScriptedAgent(platform, credential)  # holds nothing: the process died
    await restarted.receive("welcome")
    crashed = await platform.run(run.id)
    assert (crashed.status, crashed.attempt, crashed.error) == (runs_pb2.RUN_STATUS_DELAYED, 2,
                                                                "the agent lost the run")
    restarted.close()


async def test_a_second_stream_with_the_same_credential_replaces_the_first(platform: Platform) -> None:
    job_id, credential = await platform.device_job()
    first = ScriptedAgent(platform, credential)
    await first.receive("welcome")
    second = ScriptedAgent(platform, credential)
    await second.receive("welcome")
    with pytest.raises((grpc.aio.AioRpcError, asyncio.TimeoutError, StopAsyncIteration)):
        while True:  # the first stream ends
            if await asyncio.wait_for(first.call.read(), timeout=2) is grpc.aio.EOF:
                raise StopAsyncIteration
    await trigger(platform, job_id)
    assert (await second.receive("assign")).assign.command == "echo hi"
    first.close()
    second.close()


async def test_a_wrong_credential_is_refused(platform: Platform) -> None:
    await platform.device_job()
    agent = ScriptedAgent(platform, "jld_wrong")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await agent.receive("welcome")
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
