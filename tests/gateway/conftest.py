"""Fake JobService, RunService, DeviceService and AuthService on real gRPC servers, and the gateway on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from gateway.app import create_app
from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from jobline.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common import server
from services.common.channels import Channels
from services.common.config import Settings
from services.common.principal import ADMIN, METADATA_KEY, READ, TRIGGER, WRITE

ADMIN_KEY = "jl_admin_key"
KEYS = {
    ADMIN_KEY: Principal(tenant_id="t1", project_id="p1", subject_id="u1", subject_name="alice", scopes=[ADMIN]),
    "jl_read_key": Principal(tenant_id="t1", project_id="p1", subject_id="u2", scopes=[READ]),
    "jl_trigger_key": Principal(tenant_id="t1", project_id="p1", subject_id="u3", scopes=[READ, TRIGGER]),
    "jl_write_key": Principal(tenant_id="t1", project_id="p1", subject_id="u4", scopes=[READ, WRITE]),
}


@dataclass
class Call:
    method: str
    request: Message
    metadata: dict[str, Any]

    @property
    def principal(self) -> Principal:
        return Principal.FromString(self.metadata[METADATA_KEY])


@dataclass
class Recorder:
    """What the fake services received; `fail_with` makes the next call fail with that status."""

    calls: list[Call] = field(default_factory=list)
    fail_with: grpc.StatusCode | None = None

    async def record(self, name: str, request: Message, context: grpc.aio.ServicerContext) -> None:
        self.calls.append(Call(name, request, dict(context.invocation_metadata() or ())))
        if self.fail_with is not None:
            code, self.fail_with = self.fail_with, None
            await context.abort(code, f"refused with {code.name}")

    @property
    def last(self) -> Call:
        return self.calls[-1]


def sample_job(**fields: Any) -> jobs_pb2.Job:
    return jobs_pb2.Job(**{"id": "job-1", "project_id": "p1", "name": "Nightly", "slug": "nightly",
                           "endpoint_url": "https://example.test/hook", "max_attempts": 3, **fields})


def sample_run(**fields: Any) -> runs_pb2.Run:
    return runs_pb2.Run(**{"id": "run-1", "job_id": "job-1", "project_id": "p1",
                           "status": runs_pb2.RUN_STATUS_TIMED_OUT, "attempt": 1, **fields})


class FakeJobs(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder

    async def CreateJob(self, request, context):
        await self.r.record("CreateJob", request, context)
        created = jobs_pb2.Job()
        created.CopyFrom(request.job)
        created.id = "job-1"
        return created

    async def GetJob(self, request, context):
        await self.r.record("GetJob", request, context)
        return sample_job(id=request.job_id)

    async def ListJobs(self, request, context):
        await self.r.record("ListJobs", request, context)
        return jobs_pb2.ListJobsResponse(jobs=[sample_job(), sample_job(id="job-2")], next_page_token="next")

    async def UpdateJob(self, request, context):
        await self.r.record("UpdateJob", request, context)
        return sample_job(id=request.job_id)

    async def DeleteJob(self, request, context):
        await self.r.record("DeleteJob", request, context)
        return empty_pb2.Empty()

    async def ListJobVersions(self, request, context):
        await self.r.record("ListJobVersions", request, context)
        return jobs_pb2.ListJobVersionsResponse(versions=[jobs_pb2.JobVersion(id="v1", job_id=request.job_id,
                                                                              version=1)])

    async def GetJobVersion(self, request, context):
        await self.r.record("GetJobVersion", request, context)
        return jobs_pb2.JobVersion(id=request.version_id, job_id=request.job_id, version=1)


class FakeRuns(runs_pb2_grpc.RunServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder

    async def TriggerJob(self, request, context):
        await self.r.record("TriggerJob", request, context)
        return sample_run(job_id=request.job_id, status=runs_pb2.RUN_STATUS_QUEUED,
                          idempotency_key=request.idempotency_key)

    async def BulkTriggerJob(self, request, context):
        await self.r.record("BulkTriggerJob", request, context)
        results = [runs_pb2.BulkTriggerResult(id=f"run-{i}", status="queued") for i in range(len(request.items))]
        return runs_pb2.BulkTriggerJobResponse(results=results, total=len(results), created=len(results))

    async def GetRun(self, request, context):
        await self.r.record("GetRun", request, context)
        return sample_run(id=request.run_id)

    async def ListRuns(self, request, context):
        await self.r.record("ListRuns", request, context)
        return runs_pb2.ListRunsResponse(runs=[sample_run(), sample_run(id="run-2")], next_cursor="c")

    async def CancelRun(self, request, context):
        await self.r.record("CancelRun", request, context)
        return sample_run(id=request.run_id, status=runs_pb2.RUN_STATUS_CANCELED)

    async def DeleteRun(self, request, context):
        await self.r.record("DeleteRun", request, context)
        return empty_pb2.Empty()

    async def ListRunLogs(self, request, context):
        await self.r.record("ListRunLogs", request, context)
        return runs_pb2.ListRunLogsResponse(text="hi\noops\n", chunks=[
            runs_pb2.LogChunk(attempt=1, sequence=1, stream=runs_pb2.OUTPUT_STREAM_STDOUT, data="hi\n"),
            runs_pb2.LogChunk(attempt=1, sequence=2, stream=runs_pb2.OUTPUT_STREAM_STDERR, data="oops\n"),
        ])


    async def GetStats(self, request, context):
        await self.r.record("GetStats", request, context)
        triggered = sum(1 for call in self.r.calls if call.method == "TriggerJob")
        return runs_pb2.GetStatsResponse(
            runs_by_status={"queued": triggered, "completed": 4}, agent_streams_connected=2,
            dispatch_latency_bucket_bounds_secs=[0.1, 1.0], dispatch_latency_bucket_counts=[1, 3],
            dispatch_latency_count=4, dispatch_latency_sum_secs=5.5)


class FakeDevices(devices_pb2_grpc.DeviceServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder

    async def CreateDevice(self, request, context):
        await self.r.record("CreateDevice", request, context)
        return devices_pb2.Device(id=request.device.id, name=request.device.name, credential="secret")

    async def GetDevice(self, request, context):
        await self.r.record("GetDevice", request, context)
        return devices_pb2.Device(id=request.device_id, online=True)

    async def ListDevices(self, request, context):
        await self.r.record("ListDevices", request, context)
        return devices_pb2.ListDevicesResponse(devices=[devices_pb2.Device(id="d1")])

    async def UpdateDevice(self, request, context):
        await self.r.record("UpdateDevice", request, context)
        return devices_pb2.Device(id=request.device_id)

    async def DeleteDevice(self, request, context):
        await self.r.record("DeleteDevice", request, context)
        return empty_pb2.Empty()


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.unavailable = False

    async def Authenticate(self, request, context):
        self.asked.append(request.api_key)
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "auth database down")
        principal = KEYS.get(request.api_key)
        if principal is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        return auth_pb2.AuthenticateResponse(principal=principal)


@dataclass
class Fakes:
    recorder: Recorder
    auth: FakeAuth
    servers: dict[str, server.RunningServer]
    settings: Settings

    async def stop(self) -> None:
        for running in self.servers.values():
            await running.stop(0)


async def start_fakes(auth_cache_secs: float = 5.0) -> Fakes:
    recorder, auth = Recorder(), FakeAuth()
    servicers = {
        "jobs": (jobs_pb2_grpc.add_JobServiceServicer_to_server, FakeJobs(recorder), "jobline.jobs.v1.JobService"),
        "runs": (runs_pb2_grpc.add_RunServiceServicer_to_server, FakeRuns(recorder), "jobline.runs.v1.RunService"),
        "devices": (devices_pb2_grpc.add_DeviceServiceServicer_to_server, FakeDevices(recorder),
                    "jobline.devices.v1.DeviceService"),
        "auth": (auth_pb2_grpc.add_AuthServiceServicer_to_server, auth, "jobline.auth.v1.AuthService"),
    }
    servers = {}
    for name, (add, servicer, full_name) in servicers.items():
        registration = server.Registration(add_to_server=[lambda s, add=add, servicer=servicer: add(servicer, s)],
                                           service_names=[full_name])
        servers[name] = await server.start(registration, "127.0.0.1:0")
    # Surface C's per-caller trigger limits are off here (tests/gateway/test_rate_limit.py turns them on).
    settings = Settings(service="gateway", listen_addr="", database_url="", auth_cache_secs=auth_cache_secs,
                        peers={name: f"127.0.0.1:{running.port}" for name, running in servers.items()},
                        trigger_rate_limit_per_min=0, bulk_trigger_rate_limit_per_min=0)
    return Fakes(recorder, auth, servers, settings)


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    started = await start_fakes()
    yield started
    await started.stop()


@pytest.fixture
async def client(fakes: Fakes) -> AsyncIterator[httpx.AsyncClient]:
    channels = Channels()
    app = create_app(fakes.settings, channels)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        yield http
    await channels.close()
