"""Run names, the triggering subject, runs of a job version, command overrides, offset listing and purge,
over real gRPC (jobs and devices services beside the runs service), a scripted agent, time on a fake clock."""

from __future__ import annotations

import re
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, SUBJECT_TYPE_USER, Principal
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2, runs_pb2
from services.common.principal import ADMIN, to_metadata

from .test_runs_service import ADMIN_CALL, Platform, ScriptedAgent, platform  # noqa: F401 - the fixture

Q = runs_pb2
ALICE = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="u-alice", subject_name="alice",
                              subject_type=SUBJECT_TYPE_USER, scopes=[ADMIN]))
OTHER_TENANT = to_metadata(Principal(tenant_id="t2", project_id="default", subject_id="u9", scopes=[ADMIN]))


def struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def error_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code(), error.value.details()


async def endpoint_job(platform: Platform, **fields) -> jobs_pb2.Job:
    slug = f"job-{uuid.uuid4().hex[:8]}"
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name=slug, slug=slug, endpoint_url="http://127.0.0.1:9/none", **fields)),
        metadata=ADMIN_CALL)


async def update_command(platform: Platform, job_id: str, command: str) -> jobs_pb2.Job:
    return await platform.jobs.UpdateJob(jobs_pb2.UpdateJobRequest(
        job_id=job_id, job=jobs_pb2.Job(command=command), update_mask=field_mask_pb2.FieldMask(paths=["command"])),
        metadata=ADMIN_CALL)


async def test_runs_are_named_uniquely_per_job_and_found_by_name(platform: Platform) -> None:
    platform.service.http.concurrency = 0  # the runs stay queued
    job = await endpoint_job(platform)
    generated = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id), metadata=ADMIN_CALL)
    assert re.fullmatch(rf"{job.slug}-[a-z0-9]{{8}}", generated.name), generated.name
    named = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, name="nightly.2026-03_01"),
                                           metadata=ADMIN_CALL)
    assert named.name == "nightly.2026-03_01"
    code, message = await error_of(platform.runs.TriggerJob(
        Q.TriggerJobRequest(job_id=job.id, name="nightly.2026-03_01"), metadata=ADMIN_CALL))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "nightly.2026-03_01" in message
    other = await endpoint_job(platform)  # names are per job
    assert (await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=other.id, name="nightly.2026-03_01"),
                                           metadata=ADMIN_CALL)).name == "nightly.2026-03_01"
    for bad in ("-x", "a/b", "a b", "x" * 129, "é"):
        code, _ = await error_of(platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, name=bad),
                                                          metadata=ADMIN_CALL))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, bad

    found = await platform.runs.GetRun(Q.GetRunRequest(job_id=job.id, name="nightly.2026-03_01"),
                                       metadata=ADMIN_CALL)
    assert found.id == named.id
    for call, request in ((ADMIN_CALL, Q.GetRunRequest(job_id=other.id, name=generated.name)),
                          (OTHER_TENANT, Q.GetRunRequest(job_id=job.id, name="nightly.2026-03_01"))):
        code, _ = await error_of(platform.runs.GetRun(request, metadata=call))
        assert code == grpc.StatusCode.NOT_FOUND
    replayed_from = await platform.runs.CancelRun(Q.CancelRunRequest(job_id=job.id, name=generated.name),
                                                  metadata=ADMIN_CALL)
    assert replayed_from.status == Q.RUN_STATUS_CANCELED
    replay = await platform.runs.ReplayRun(Q.ReplayRunRequest(run_id=generated.id), metadata=ALICE)
    assert replay.name != generated.name and replay.name.startswith(f"{job.slug}-")
    assert replay.triggered_by_subject.name == "alice"


async def test_the_triggering_subject_comes_from_the_principal(platform: Platform) -> None:
    platform.service.http.concurrency = 0
    job = await endpoint_job(platform)
    run = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, metadata={"triggered_by": "mallory"}),
                                         metadata=ALICE)
    assert run.triggered_by_subject == Q.RunSubject(id="u-alice", type=SUBJECT_TYPE_USER, name="alice")
    robot = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="sa-1", subject_name="deployer",
                                  subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, scopes=[ADMIN]))
    run = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id), metadata=robot)
    stored = await platform.run(run.id)
    assert stored.triggered_by_subject == Q.RunSubject(id="sa-1", type=SUBJECT_TYPE_SERVICE_ACCOUNT, name="deployer")


async def test_a_version_runs_its_own_snapshot_with_overrides_rendered_by_the_engine(platform: Platform) -> None:
    job_id, credential = await platform.device_job("echo v1 {{who}}", default_inputs={"who": "world"})
    first = await platform.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=ADMIN_CALL)
    await update_command(platform, job_id, "echo v2 {{who}}")
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")

    old = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_version_id=first.version_id,
                                                             payload=struct({"who": "old friend"})),
                                         metadata=ADMIN_CALL)
    assign = (await agent.receive("assign")).assign
    assert (assign.run.run_id, assign.command) == (old.id, "echo v1 'old friend'")
    assert (old.job_id, old.job_version, old.job_version_id, old.command) == \
        (job_id, 1, first.version_id, "echo v1 'old friend'")
    agent.send(accept=agent_pb2.Accept(run=assign.run))
    agent.send(finished=agent_pb2.Finished(run=assign.run, exit_code=0))
    await agent.receive("ack")

    current = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job_id), metadata=ADMIN_CALL)
    assign = (await agent.receive("assign")).assign
    assert (current.job_version, assign.command) == (2, "echo v2 world")
    agent.send(accept=agent_pb2.Accept(run=assign.run))
    agent.send(finished=agent_pb2.Finished(run=assign.run, exit_code=0))
    await agent.receive("ack")

    override = await platform.runs.TriggerJob(Q.TriggerJobRequest(
        job_id=job_id, job_version_id=first.version_id, command="printf '%s' {{who}}",
        payload=struct({"who": "a; rm -rf /"})), metadata=ADMIN_CALL)
    assign = (await agent.receive("assign")).assign
    assert assign.command == override.command == "printf '%s' 'a; rm -rf /'"
    agent.close()

    code, _ = await error_of(platform.runs.TriggerJob(Q.TriggerJobRequest(job_version_id=first.version_id,
                                                                          command="echo {{missing}}"),
                                                      metadata=ADMIN_CALL))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_versions_of_other_jobs_other_tenants_or_disabled_jobs_are_refused(platform: Platform) -> None:
    platform.service.http.concurrency = 0
    job, other = await endpoint_job(platform), await endpoint_job(platform)
    for call, request in ((ADMIN_CALL, Q.TriggerJobRequest(job_id=other.id, job_version_id=job.version_id)),
                          (ADMIN_CALL, Q.TriggerJobRequest(job_version_id="no-such-version")),
                          (OTHER_TENANT, Q.TriggerJobRequest(job_version_id=job.version_id))):
        code, _ = await error_of(platform.runs.TriggerJob(request, metadata=call))
        assert code == grpc.StatusCode.NOT_FOUND, request
    code, _ = await error_of(platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, command="echo hi"),
                                                      metadata=ADMIN_CALL))
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # an endpoint job has no command to override

    await platform.jobs.BatchDisableJobs(jobs_pb2.BatchSetJobsEnabledRequest(job_ids=[job.id]), metadata=ADMIN_CALL)
    platform.clock.advance(5)
    platform.service.peers._job_cache.clear()  # noqa: SLF001 - the 2 s job cache runs on the real clock
    code, _ = await error_of(platform.runs.TriggerJob(Q.TriggerJobRequest(job_version_id=job.version_id),
                                                      metadata=ADMIN_CALL))
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # the version is older than the disabling, the job is off


async def test_a_version_is_found_by_its_id_alone_and_its_snapshot_keeps_secrets(platform: Platform) -> None:
    job = await endpoint_job(platform, webhook_url="http://127.0.0.1:9/wh", webhook_secret="s3cret")
    version = await platform.jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(version_id=job.version_id),
                                                metadata=ADMIN_CALL)
    assert (version.job_id, version.version, version.webhook_secret) == (job.id, 1, "********")
    snapshot = await platform.jobs.GetJobVersionSnapshot(jobs_pb2.GetJobVersionRequest(version_id=job.version_id),
                                                         metadata=ADMIN_CALL)
    assert snapshot.snapshot.webhook_secret == "s3cret" and snapshot.snapshot.id == job.id
    code, _ = await error_of(platform.jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(version_id=job.version_id),
                                                         metadata=OTHER_TENANT))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_fanned_out_runs_get_numbered_names(platform: Platform) -> None:
    for device_id in ("phone-a", "phone-b"):
        await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(device=devices_pb2.Device(id=device_id)),
                                            metadata=ADMIN_CALL)
    job = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="fan", slug="fan", command="true",
        targets=devices_pb2.DeviceTargets(device_ids=["phone-a", "phone-b"]))), metadata=ADMIN_CALL)
    first = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, name="sweep"), metadata=ADMIN_CALL)
    runs = await platform.runs.ListRuns(Q.ListRunsRequest(invocation_id=first.invocation_id), metadata=ADMIN_CALL)
    assert sorted((r.name, r.device_id) for r in runs.runs) == [("sweep", "phone-a"), ("sweep-2", "phone-b")]


async def test_runs_are_listed_with_offset_total_sort_and_filters(platform: Platform) -> None:
    platform.service.http.concurrency = 0
    job = await endpoint_job(platform)
    bob = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="u-bob", subject_name="bob",
                                scopes=[ADMIN]))
    for i in range(5):
        await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, name=f"train-{i}"),
                                       metadata=ALICE if i < 3 else bob)
        platform.clock.advance(1)
    await platform.runs.CancelRun(Q.CancelRunRequest(job_id=job.id, name="train-1"), metadata=ADMIN_CALL)

    async def names(**fields) -> tuple[list[str], int, str]:
        reply = await platform.runs.ListRuns(Q.ListRunsRequest(job_id=job.id, include_total_count=True, **fields),
                                             metadata=ADMIN_CALL)
        return [r.name for r in reply.runs], reply.total_count, reply.next_cursor

    assert await names(limit=2, offset=1) == (["train-3", "train-2"], 5, "")
    assert (await names(limit=2, ascending=True))[:2] == (["train-0", "train-1"], 5)
    assert (await names(order_by=Q.RUN_SORT_FIELD_NAME))[0] == [f"train-{i}" for i in (4, 3, 2, 1, 0)]
    assert (await names(statuses=[Q.RUN_STATUS_CANCELED, Q.RUN_STATUS_COMPLETED]))[:2] == (["train-1"], 1)
    assert (await names(triggered_by_subject_names=["bob"]))[:2] == (["train-4", "train-3"], 2)
    assert (await names(name_prefix="train-4", job_versions=[1]))[:2] == (["train-4"], 1)
    assert (await names(job_versions=[2]))[:2] == ([], 0)
    assert (await names(limit=2))[2]  # the default order still pages by cursor
    for bad in (dict(offset=-1), dict(offset=1, cursor="2026-01-01T00:00:00Z"),
                dict(ascending=True, cursor="2026-01-01T00:00:00Z"), dict(statuses=[Q.RUN_STATUS_UNSPECIFIED])):
        code, _ = await error_of(platform.runs.ListRuns(Q.ListRunsRequest(job_id=job.id, **bad),
                                                        metadata=ADMIN_CALL))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, bad


async def test_a_finished_run_is_purged_an_active_one_is_refused(platform: Platform) -> None:
    platform.service.http.concurrency = 0
    job = await endpoint_job(platform)
    run = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, name="once"), metadata=ADMIN_CALL)
    code, _ = await error_of(platform.runs.PurgeRun(Q.PurgeRunRequest(job_id=job.id, name="once"),
                                                    metadata=ADMIN_CALL))
    assert code == grpc.StatusCode.ABORTED
    await platform.runs.CancelRun(Q.CancelRunRequest(run_id=run.id), metadata=ADMIN_CALL)
    code, _ = await error_of(platform.runs.PurgeRun(Q.PurgeRunRequest(run_id=run.id), metadata=OTHER_TENANT))
    assert code == grpc.StatusCode.NOT_FOUND
    await platform.runs.PurgeRun(Q.PurgeRunRequest(job_id=job.id, name="once"), metadata=ADMIN_CALL)
    code, _ = await error_of(platform.runs.GetRun(Q.GetRunRequest(run_id=run.id), metadata=ADMIN_CALL))
    assert code == grpc.StatusCode.NOT_FOUND
    events = await platform.service.store.events("t1", run.id)
    assert events == []
    again = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, name="once"), metadata=ADMIN_CALL)
    assert again.name == "once" and again.id != run.id  # the name is free again


async def test_dedup_tells_apart_triggers_asking_for_another_name_or_version(platform: Platform) -> None:
    platform.service.http.concurrency = 0
    job = await endpoint_job(platform, dedup_window_secs=60)
    first = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id), metadata=ADMIN_CALL)
    repeat = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id), metadata=ADMIN_CALL)
    assert repeat.idempotency_hit and repeat.id == first.id
    named = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, name="mine"), metadata=ADMIN_CALL)
    versioned = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_version_id=job.version_id),
                                               metadata=ADMIN_CALL)
    assert not named.idempotency_hit and named.name == "mine"
    assert not versioned.idempotency_hit and len({first.id, named.id, versioned.id}) == 3
    again = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_version_id=job.version_id), metadata=ADMIN_CALL)
    assert again.idempotency_hit and again.id == versioned.id
