"""Job invocations in the runs service over real gRPC, with the real jobs and devices services beside it, on
SQLite and PostgreSQL: state and counts from the runs, the Foreman-dialect search, order and counts, outputs with
`since`, cancel, rerun, an occurrence's idempotency key, and concurrency_level as the engine's flow control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest

from agent.fleet import Fleet
from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from jobline.runs.v1 import agent_pb2, runs_pb2, runs_pb2_grpc
from services.common import server
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.principal import ADMIN, READ, to_metadata
from services.devices.app import build as build_devices
from services.jobs.app import build as build_jobs
from services.runs import domain
from services.runs.app import build as build_runs
from services.runs.invocations import JobInvocationRow, describe, default_description_format

ALICE = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="u1", subject_name="alice",
                              scopes=[ADMIN]))
BOB = to_metadata(Principal(tenant_id="t2", project_id="default", subject_id="u2", scopes=[ADMIN]))
State = runs_pb2.JobInvocationState


class Services:
    def __init__(self, ports: dict[str, int], runs_service, clock: FakeClock) -> None:
        self.channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{port}") for name, port in ports.items()}
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channels["jobs"])
        self.devices = devices_pb2_grpc.DeviceServiceStub(self.channels["devices"])
        self.runs = runs_pb2_grpc.RunServiceStub(self.channels["runs"])
        self.service = runs_service
        self.clock = clock
        self.runs_addr = f"127.0.0.1:{ports['runs']}"

    async def template(self, command: str = "echo <%= input('msg') %>", **spec) -> jobs_pb2.Job:
        job = jobs_pb2.Job(project_id="default", name=spec.pop("name", "Echo"), command=command,
                           job_template=jobs_pb2.JobTemplateSpec(job_category="Commands", inputs=[
                               jobs_pb2.JobTemplateInput(name="msg", required=True)], **spec))
        return await self.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=job), metadata=ALICE)

    async def device(self, device_id: str, group: str) -> str:
        device = await self.devices.CreateDevice(devices_pb2.CreateDeviceRequest(device=devices_pb2.Device(
            id=device_id, name=device_id, groups=[group])), metadata=ALICE)
        return device.credential

    async def create(self, job: jobs_pb2.Job, query: str, **spec) -> runs_pb2.JobInvocation:
        inputs = spec.pop("inputs", {"msg": "hi"})
        return await self.runs.CreateJobInvocation(runs_pb2.CreateJobInvocationRequest(
            job_id=job.id, spec=runs_pb2.JobInvocationSpec(targeting_type=spec.pop("targeting_type", "static_query"),
                                                            search_query=query, inputs=inputs, **spec)),
            metadata=ALICE)

    async def get(self, number: int, **fields) -> runs_pb2.JobInvocation:
        return await self.runs.GetJobInvocation(runs_pb2.GetJobInvocationRequest(number=number, **fields),
                                                metadata=ALICE)

    async def settle(self, number: int) -> runs_pb2.JobInvocation:
        async with asyncio.timeout(10):
            while (invocation := await self.get(number)).state in (State.JOB_INVOCATION_STATE_RUNNING,
                                                                   State.JOB_INVOCATION_STATE_SCHEDULED):
                await asyncio.sleep(0.05)
        return invocation

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[Services]:
    clock = FakeClock()
    ports: dict[str, int] = {}
    running = []
    for name, build in (("jobs", build_jobs), ("devices", build_devices)):
        settings = Settings(service=name, listen_addr="", database_url=database_url)
        extra = {"ticking": False} if name == "jobs" else {}
        running.append(await server.start(await build(settings, clock=clock, **extra), "127.0.0.1:0"))
        ports[name] = running[-1].port
    settings = Settings(service="runs", listen_addr="", database_url=database_url,
                        peers={n: f"127.0.0.1:{p}" for n, p in ports.items()})
    registration = await build_runs(settings, clock=clock, ticking=False)
    running.append(await server.start(registration, "127.0.0.1:0"))
    ports["runs"] = running[-1].port
    found = Services(ports, registration.handle, clock)
    yield found
    await found.close()
    for item in reversed(running):
        await item.stop(0)


async def connected(services: Services, credentials: list[tuple[str, str]], exit_code=None) -> tuple[Fleet, asyncio.Task]:
    fleet = Fleet(services.runs_addr, credentials, capacity=2, **({"exit_code": exit_code} if exit_code else {}))
    task = asyncio.create_task(fleet.run())
    async with asyncio.timeout(10):
        while fleet.connected < len(credentials):
            await asyncio.sleep(0.02)
    return fleet, task


async def test_state_counts_search_order_outputs_and_tenancy(services: Services) -> None:
    credentials = [(d, await services.device(d, g)) for d, g in (("web01", "web"), ("web02", "web"), ("db01", "db"))]

    def fail_on_db(assign: agent_pb2.Assign) -> int:
        return 3 if "db" in assign.inputs.get("msg", "") else 0

    fleet, task = await connected(services, credentials, fail_on_db)
    try:
        job = await services.template(description_format="Say %{msg}")
        web = await services.create(job, "hostgroup = web", inputs={"msg": "web"})
        assert web.number > 0 and web.description == "Say web" and web.host_count == 2 and web.targeting_resolved
        assert [h.device_id for h in web.hosts] == ["web01", "web02"] and web.effective_user == "root"
        everyone = await services.create(job, "name ~ 0", inputs={"msg": "db too"})
        web, everyone = await services.settle(web.number), await services.settle(everyone.number)
        assert web.state == State.JOB_INVOCATION_STATE_SUCCEEDED and dict(web.runs_by_status) == {"completed": 2}
        assert everyone.state == State.JOB_INVOCATION_STATE_FAILED
        assert dict(everyone.runs_by_status) == {"completed": 0, "failed": 3} or \
            sum(everyone.runs_by_status.values()) == 3

        async def numbers(search: str = "", order: str = "") -> list[int]:
            reply = await services.runs.ListJobInvocations(runs_pb2.ListJobInvocationsRequest(
                search=search, order_by=order), metadata=ALICE)
            return [i.number for i in reply.invocations]

        assert await numbers() == [everyone.number, web.number]  # id DESC
        assert await numbers(order="id ASC") == [web.number, everyone.number]
        assert await numbers("status = failed") == [everyone.number]
        assert await numbers("status ^ (succeeded, running)") == [web.number]
        assert await numbers("status != failed") == [web.number]
        assert await numbers('description ~ "Say w"') == [web.number]
        assert await numbers("db") == [everyone.number]  # a bare word searches descriptions
        assert await numbers(f"id > {web.number}") == [everyone.number]
        assert await numbers("recurring = false and pattern_template_name = Echo") == [everyone.number, web.number]
        assert await numbers("user = alice and job_category = Commands") == [everyone.number, web.number]
        counted = await services.runs.ListJobInvocations(runs_pb2.ListJobInvocationsRequest(
            search="status = failed", limit=1), metadata=ALICE)
        assert (counted.total_count, counted.matched_count) == (2, 1)
        for bad in ("status = sideways", "colour = red", "id ~ 1", "name = ("):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await numbers(bad)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.value.details().startswith("invalid query"), error.value.details()
        with pytest.raises(grpc.aio.AioRpcError):
            await numbers(order="colour")

        outputs = await services.runs.ListJobInvocationOutputs(runs_pb2.ListJobInvocationOutputsRequest(
            number=web.number), metadata=ALICE)
        assert [(o.device_id, [c.data for c in o.chunks]) for o in outputs.outputs] == [
            ("web01", ["simulated: echo web\n"]), ("web02", ["simulated: echo web\n"])]
        since = outputs.outputs[0].chunks[0].timestamp
        later = await services.runs.ListJobInvocationOutputs(runs_pb2.ListJobInvocationOutputsRequest(
            number=web.number, device_ids=["web02"], since=since), metadata=ALICE)
        assert [(o.device_id, list(o.chunks)) for o in later.outputs] == [("web02", [])]

        rerun = await services.runs.RerunJobInvocation(runs_pb2.RerunJobInvocationRequest(
            number=everyone.number, failed_only=True), metadata=ALICE)
        assert sorted(h.device_id for h in rerun.hosts) == ["db01", "web01", "web02"]  # every host failed ("db too")
        assert rerun.spec.reruns_number == everyone.number

        for call in (services.runs.GetJobInvocation(runs_pb2.GetJobInvocationRequest(number=web.number),
                                                    metadata=BOB),
                     services.runs.CancelJobInvocation(runs_pb2.CancelJobInvocationRequest(number=web.number),
                                                       metadata=BOB)):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await services.runs.ListJobInvocations(runs_pb2.ListJobInvocationsRequest(),
                                                       metadata=BOB)).total_count == 0
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await services.runs.CancelJobInvocation(runs_pb2.CancelJobInvocationRequest(number=web.number),
                                                    metadata=ALICE)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await fleet.stop()
        await task


async def test_concurrency_level_is_the_engines_flow_control(services: Services) -> None:
    for device_id in ("a1", "a2", "a3"):
        await services.device(device_id, "a")
    job = await services.template()
    invocation = await services.create(job, "hostgroup = a", concurrency_level=1, time_to_pickup=120,
                                       execution_timeout_interval=42)
    store = services.service.store
    runs = await store.list("t1", invocation_id=invocation.id, limit=10)
    assert {(r.concurrency_key, r.max_concurrency_per_key, r.limited, r.timeout_secs) for r in runs} == \
        {(f"job-invocation:{invocation.id}", 1, True, 42)}
    assert {r.expires_at.replace(tzinfo=None) for r in runs} == \
        {(services.clock.now() + timedelta(seconds=120)).replace(tzinfo=None)}
    keys = [r.target_key for r in runs]
    assert len(await store.queued_for(keys, 10)) == 3
    now = services.clock.now()
    first = await store.claim([runs[0].id], "replica", now, now + timedelta(seconds=30))
    assert first == {runs[0].id}
    assert await store.queued_for(keys, 10) == []  # the invocation has its one run on a device
    assert await store.claim([runs[1].id], "replica", now, now + timedelta(seconds=30)) == set()
    services.clock.advance(121)  # the others were never picked up: time_to_pickup (the first one's lease ran out:
    await services.service.tick()  # back in the queue, not yet expired)
    shown = await services.get(invocation.number, include_hosts=True)
    assert dict(shown.runs_by_status) == {"queued": 1, "expired": 2}
    await services.service.tick()
    assert dict((await services.get(invocation.number)).runs_by_status) == {"expired": 3}


async def test_an_occurrence_is_made_once_per_idempotency_key(services: Services) -> None:
    await services.device("x1", "x")
    job = await services.template()
    spec = runs_pb2.JobInvocationSpec(targeting_type="dynamic_query", search_query="hostgroup = x",
                                      inputs={"msg": "cron"}, recurrence_id="11111111-2222-3333-4444-555555555555")
    request = runs_pb2.TriggerJobRequest(job_id=job.id, idempotency_key="cron:s:2026-01-01T12:05:00+00:00",
                                         job_invocation=spec)
    cron = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="scheduler", subject_name="cron",
                                 scopes=["TRIGGER"]))
    with pytest.raises(grpc.aio.AioRpcError):  # the schedule does not exist in the jobs service
        await services.runs.TriggerJob(request, metadata=cron)
    schedule = await services.jobs.CreateJobSchedule(jobs_pb2.CreateJobScheduleRequest(schedule=jobs_pb2.JobSchedule(
        id=spec.recurrence_id, job_id=job.id, cron="*/5 * * * *", trigger_request=request.SerializeToString())),
        metadata=ALICE)
    assert schedule.number > 0 and schedule.state == "active"
    first = await services.runs.TriggerJob(request, metadata=cron)
    again = await services.runs.TriggerJob(request, metadata=cron)
    assert first.invocation_id == again.invocation_id and again.idempotency_hit and not first.idempotency_hit
    listed = await services.runs.ListJobInvocations(runs_pb2.ListJobInvocationsRequest(), metadata=ALICE)
    assert [(i.mode, i.host_count, i.spec.recurrence_id) for i in listed.invocations] == \
        [("recurring", 1, spec.recurrence_id)]
    reader = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="u3", scopes=[READ]))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await services.runs.CreateJobInvocation(runs_pb2.CreateJobInvocationRequest(job_id=job.id, spec=spec),
                                                metadata=reader)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_one_renderer_fills_erb_inputs_as_given_and_placeholders_quoted() -> None:
    assert domain.render_command("<%#\nname: x\n%>\nrun <%= input('cmd') %> {{arg}}", {"cmd": "ls -l", "arg": "a b"}) \
        == "run ls -l 'a b'"
    assert domain.render_command('<%= input("{{arg}}") %>', {"{{arg}}": "{{arg}}"}) == "{{arg}}"  # rendered once
    with pytest.raises(Exception, match="missing inputs: x"):
        domain.render_command("<%= input('x') %>", {})


def test_descriptions_follow_foremans_format() -> None:
    job = jobs_pb2.Job(name="Job template 12", job_template=jobs_pb2.JobTemplateSpec(
        job_category="Job name 10", inputs=[jobs_pb2.JobTemplateInput(name="Template input 7"),
                                           jobs_pb2.JobTemplateInput(name="secret", hidden_value=True)]))
    fmt = default_description_format(job)
    assert fmt == '%{template_name} with inputs Template input 7="%{Template input 7}" secret="%{secret}"'
    assert describe(fmt, job, {"secret": "s3"}) == 'Job template 12 with inputs Template input 7="\'\'" secret="***"'
    assert describe("%{job_category}: %{unknown}", job, {}) == "Job name 10: ''"
    assert JobInvocationRow.__tablename__ == "runs_job_invocations"
