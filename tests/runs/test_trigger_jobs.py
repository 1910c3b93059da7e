"""TriggerJobs (the cron scheduler's tick) over real gRPC, with the real jobs and devices services: every
request answered on its own, the runs of all of them stored in one insert, a retried call exactly once;
and BatchGetJobSnapshots, the jobs service's answer it is built on. Time moves only through a FakeClock."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.principal import TRIGGER, to_metadata

from .test_runs_service import ADMIN_CALL, Platform, platform  # noqa: F401

CRON = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="scheduler",
                             subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, subject_name="cron", scopes=[TRIGGER]))
OTHER_TENANT = to_metadata(Principal(tenant_id="t2", project_id="default", subject_id="scheduler",
                                     subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, subject_name="cron", scopes=[TRIGGER]))


async def endpoint_job(platform: Platform, slug: str, **fields) -> jobs_pb2.Job:
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name=slug, slug=slug, endpoint_url="https://example.test/hook", **fields)),
        metadata=ADMIN_CALL)


def request(job_id: str, key: str, **fields) -> runs_pb2.TriggerJobRequest:
    return runs_pb2.TriggerJobRequest(job_id=job_id, idempotency_key=key, **fields)


async def inserts_counted(platform: Platform) -> list[int]:
    """Counts the runs of every insert_runs call of the runs service from now on."""
    store = platform.service.engine.store
    counts: list[int] = []
    original = store.insert_runs

    async def counting(runs, also=None):
        counts.append(len(runs))
        return await original(runs, also)

    store.insert_runs = counting
    return counts


async def test_each_request_is_answered_on_its_own_and_the_runs_go_in_one_insert(platform: Platform) -> None:
    plain = [await endpoint_job(platform, f"plain-{i}") for i in range(5)]
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}})
    strict = await endpoint_job(platform, "strict", payload_schema=schema)
    disabled = await endpoint_job(platform, "disabled", enabled=False)
    after = await endpoint_job(platform, "after")
    await platform.jobs.CreateJobDependency(jobs_pb2.CreateJobDependencyRequest(
        job_id=after.id, depends_on_job_id=plain[0].id), metadata=ADMIN_CALL)
    deduped = await endpoint_job(platform, "deduped", dedup_window_secs=60)
    await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
        device=devices_pb2.Device(id="phone-1")), metadata=ADMIN_CALL)
    device = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="probe", slug="probe", command="echo hi",
        targets=devices_pb2.DeviceTargets(device_ids=["phone-1"]))), metadata=ADMIN_CALL)
    await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
        device=devices_pb2.Device(id="phone-2", groups=["lab"])), metadata=ADMIN_CALL)
    pooled = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="pooled", slug="pooled", command="echo hi",
        targets=devices_pb2.DeviceTargets(group="lab", any_available=True))), metadata=ADMIN_CALL)
    counts = await inserts_counted(platform)

    requests = [*(request(job.id, f"cron:{job.id}:t1") for job in plain),
                request(strict.id, "cron:strict:t1"), request(disabled.id, "cron:disabled:t1"),
                request("no-such-job", "cron:missing:t1"), request(after.id, "cron:after:t1"),
                request(deduped.id, "cron:deduped:t1"), request(device.id, "cron:device:t1"),
                request(pooled.id, "cron:pooled:t1")]
    reply = await platform.runs.TriggerJobs(runs_pb2.TriggerJobsRequest(requests=requests), metadata=CRON)

    results = list(reply.results)
    assert len(results) == len(requests)
    codes = [result.error_code for result in results]
    assert codes == [0] * 5 + [grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0],
                               grpc.StatusCode.NOT_FOUND.value[0], 0, 0, 0, 0]
    assert "disabled" in results[6].error_message and "no-such-job" in results[7].error_message
    for req, result in zip(requests, results, strict=True):
        if not result.error_code:
            assert result.run.job_id == req.job_id and result.run.idempotency_key == req.idempotency_key
            stored = await platform.run(result.run.id)
            assert stored.triggered_by == "cron" and stored.idempotency_key == req.idempotency_key
    assert (await platform.run(results[8].run.id)).status == runs_pb2.RUN_STATUS_WAITING  # on its dependency
    assert (await platform.run(results[10].run.id)).device_id == "phone-1"
    assert (await platform.run(results[11].run.id)).device_id == ""  # waits in its group's pool, as TriggerJob's
    assert sorted(counts) == [1, 8]  # the dedup-window job on its own path; every other run in one insert


async def test_a_retried_call_answers_the_runs_it_made_and_makes_only_the_new_ones(platform: Platform) -> None:
    jobs = [await endpoint_job(platform, f"job-{i}") for i in range(3)]
    first = await platform.runs.TriggerJobs(runs_pb2.TriggerJobsRequest(
        requests=[request(job.id, f"cron:{job.id}:t1") for job in jobs[:2]]), metadata=CRON)
    again = await platform.runs.TriggerJobs(runs_pb2.TriggerJobsRequest(
        requests=[request(job.id, f"cron:{job.id}:t1") for job in jobs]), metadata=CRON)
    assert [r.error_code for r in again.results] == [0, 0, 0]
    assert [r.run.id for r in again.results[:2]] == [r.run.id for r in first.results]
    assert [r.run.idempotency_hit for r in again.results] == [True, True, False]
    listed = await platform.runs.ListRuns(runs_pb2.ListRunsRequest(project_id="default", limit=100),
                                          metadata=ADMIN_CALL)
    assert sorted(run.idempotency_key for run in listed.runs) == sorted(f"cron:{job.id}:t1" for job in jobs)


async def test_another_tenants_jobs_are_not_found(platform: Platform) -> None:
    job = await endpoint_job(platform, "mine")
    reply = await platform.runs.TriggerJobs(runs_pb2.TriggerJobsRequest(
        requests=[request(job.id, "cron:mine:t1")]), metadata=OTHER_TENANT)
    assert reply.results[0].error_code == grpc.StatusCode.NOT_FOUND.value[0]
    snapshots = await platform.jobs.BatchGetJobSnapshots(jobs_pb2.BatchGetJobSnapshotsRequest(job_ids=[job.id]),
                                                        metadata=OTHER_TENANT)
    assert not snapshots.jobs and not snapshots.dependencies


async def test_batch_job_snapshots_carry_secrets_and_each_jobs_dependencies(platform: Platform) -> None:
    first, second = await endpoint_job(platform, "first"), await endpoint_job(platform, "second")
    third = await endpoint_job(platform, "third", webhook_url="https://example.test/hook", webhook_secret="s3cret")
    for depends_on in (first, second):
        await platform.jobs.CreateJobDependency(jobs_pb2.CreateJobDependencyRequest(
            job_id=third.id, depends_on_job_id=depends_on.id), metadata=ADMIN_CALL)
    await platform.jobs.CreateJobDependency(jobs_pb2.CreateJobDependencyRequest(
        job_id=second.id, depends_on_job_id=first.id, condition="on_completion"), metadata=ADMIN_CALL)
    reply = await platform.jobs.BatchGetJobSnapshots(jobs_pb2.BatchGetJobSnapshotsRequest(
        job_ids=[third.id, second.id, "no-such-job", third.id]), metadata=CRON)
    assert sorted(job.id for job in reply.jobs) == sorted([third.id, second.id])
    assert next(job for job in reply.jobs if job.id == third.id).webhook_secret == "s3cret"
    one_by_one = {job.id: (await platform.jobs.ListJobDependencies(jobs_pb2.ListJobDependenciesRequest(
        job_id=job.id), metadata=ADMIN_CALL)).dependencies for job in (second, third)}
    for job_id, expected in one_by_one.items():
        assert [d for d in reply.dependencies if d.job_id == job_id] == list(expected)
    assert len(reply.dependencies) == 3


async def test_an_empty_call_answers_nothing(platform: Platform) -> None:
    reply = await platform.runs.TriggerJobs(runs_pb2.TriggerJobsRequest(), metadata=CRON)
    assert not reply.results
