"""Two runs-service replicas sharing one PostgreSQL database: a run queued or canceled on replica 1 is
dispatched / stopped by replica 2, which holds the device's stream, through LISTEN/NOTIFY — with the
hub's periodic rescan pushed out of reach, so only a wake-up can do it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from jobline.runs.v1 import agent_pb2, agent_pb2_grpc, runs_pb2, runs_pb2_grpc
from services.common import server
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.db import Database
from services.devices.app import build as build_devices
from services.jobs.app import build as build_jobs
from services.runs import hub as hub_module
from services.runs.app import RunsService
from services.runs.app import build as build_runs
from services.runs.store import TABLES as RUNS_TABLES
from services.runs.wakeups import PgWakeups, RunHandle

from .test_runs_service import ADMIN_CALL

PROMPT_SECS = 3.0  # far below the rescan we push out (60 s), generous for a loaded machine


@dataclass
class Replicas:
    jobs: jobs_pb2_grpc.JobServiceStub
    devices: devices_pb2_grpc.DeviceServiceStub
    runs: list[runs_pb2_grpc.RunServiceStub]
    agents: list[agent_pb2_grpc.AgentServiceStub]
    services: list[RunsService]


@pytest.fixture
async def replicas(tmp_path, postgres_session_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Replicas]:
    monkeypatch.setattr(hub_module, "RESCAN_SECS", 60.0)
    scratch = Database(postgres_session_url, RUNS_TABLES)
    await scratch.drop_tables()
    await scratch.close()
    clock = FakeClock()
    running, ports = [], {}
    for name, build in (("jobs", build_jobs), ("devices", build_devices)):
        settings = Settings(service=name, listen_addr="", database_url=f"sqlite:///{tmp_path}/{name}.db")
        running.append(await server.start(await build(settings, clock=clock), "127.0.0.1:0"))
        ports[name] = running[-1].port
    peers = {n: f"127.0.0.1:{p}" for n, p in ports.items()}
    services, runs_ports = [], []
    for _ in range(2):
        settings = Settings(service="runs", listen_addr="", database_url=postgres_session_url, peers=peers)
        registration = await build_runs(settings, clock=clock, ticking=False)
        running.append(await server.start(registration, "127.0.0.1:0"))
        services.append(registration.handle)
        runs_ports.append(running[-1].port)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in [*ports.values(), *runs_ports]]
    jobs_channel, devices_channel, *runs_channels = channels
    yield Replicas(jobs_pb2_grpc.JobServiceStub(jobs_channel), devices_pb2_grpc.DeviceServiceStub(devices_channel),
                   [runs_pb2_grpc.RunServiceStub(c) for c in runs_channels],
                   [agent_pb2_grpc.AgentServiceStub(c) for c in runs_channels], services)
    for channel in channels:
        await channel.close()
    for item in reversed(running):
        await item.stop(0)
    scratch = Database(postgres_session_url, RUNS_TABLES)
    await scratch.drop_tables()
    await scratch.close()


class Agent:
    """One scripted agent stream to one replica."""

    def __init__(self, stub: agent_pb2_grpc.AgentServiceStub, device_id: str, credential: str) -> None:
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.outbox.put_nowait(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            device_id=device_id, credential=credential, capacity=1)))
        self.call = stub.Connect(self._requests())

    async def _requests(self):
        while (message := await self.outbox.get()) is not None:
            yield message

    def send(self, **body) -> None:
        self.outbox.put_nowait(agent_pb2.AgentMessage(**body))

    async def receive(self, kind: str, timeout: float = 10.0) -> agent_pb2.ServerMessage:
        while True:
            message = await asyncio.wait_for(self.call.read(), timeout=timeout)
            if message.WhichOneof("body") == kind:
                return message

    def close(self) -> None:
        self.outbox.put_nowait(None)
        self.call.cancel()


@pytest.mark.postgres
async def test_a_run_queued_on_one_replica_is_dispatched_and_stopped_by_the_one_holding_the_stream(
        replicas: Replicas) -> None:
    device = await replicas.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
        device=devices_pb2.Device(id="phone-1")), metadata=ADMIN_CALL)
    job = await replicas.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="probe", slug="probe", command="sleep 60",
        targets=devices_pb2.DeviceTargets(device_ids=["phone-1"]))), metadata=ADMIN_CALL)
    agent = Agent(replicas.agents[1], "phone-1", device.credential)  # the stream is on replica 2
    try:
        await agent.receive("welcome")
        for _ in range(100):  # the stream is dispatchable once reconciled
            if replicas.services[1].hub.sessions:
                break
            await asyncio.sleep(0.02)
        assert not replicas.services[0].hub.sessions

        started = time.monotonic()
        run = await replicas.runs[0].TriggerJob(runs_pb2.TriggerJobRequest(job_id=job.id), metadata=ADMIN_CALL)
        assign = (await agent.receive("assign", timeout=PROMPT_SECS)).assign
        assert assign.run.run_id == run.id and time.monotonic() - started < PROMPT_SECS
        agent.send(accept=agent_pb2.Accept(run=assign.run))
        for _ in range(100):
            current = await replicas.runs[0].GetRun(runs_pb2.GetRunRequest(run_id=run.id), metadata=ADMIN_CALL)
            if current.status == runs_pb2.RUN_STATUS_EXECUTING:
                break
            await asyncio.sleep(0.02)
        assert current.status == runs_pb2.RUN_STATUS_EXECUTING

        started = time.monotonic()
        canceled = await replicas.runs[0].CancelRun(runs_pb2.CancelRunRequest(run_id=run.id), metadata=ADMIN_CALL)
        assert canceled.status == runs_pb2.RUN_STATUS_CANCELED
        cancel = (await agent.receive("cancel", timeout=PROMPT_SECS)).cancel
        assert cancel.run.run_id == run.id and time.monotonic() - started < PROMPT_SECS
        assert replicas.services[0].wakeups.sent >= 2 and replicas.services[1].wakeups.received >= 2
    finally:
        agent.close()


def test_announcements_are_coalesced_and_split_under_the_payload_limit() -> None:
    class Engine:
        dispatchers: list = []

    wakeups = PgWakeups("postgresql://127.0.0.1/none", Engine(), "replica-1")
    wakeups.wake({f"tenant-{'x' * 30}/device-{i:04}" for i in range(300)})
    wakeups.wake({f"tenant-{'x' * 30}/device-0000", ""})
    wakeups.stop_run(RunHandle("run-1", 2, "t1/d1"), force=True)
    raw = list(wakeups._payloads())
    assert len(raw) > 1 and all(len(p.encode()) < 7000 for p in raw)
    payloads = [json.loads(p) for p in raw]
    assert sum(len(p["w"]) for p in payloads) == 301 and [s for p in payloads for s in p["s"]] == [
        ["run-1", 2, "t1/d1", True]]
    assert not list(wakeups._payloads())  # taken
    wakeups.wake({f"t1/many-{i}" for i in range(600)})
    assert list(wakeups._payloads()) == ['{"r":"replica-1","all":true}']
