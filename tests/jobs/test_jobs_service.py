"""The jobs service over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest

from jobline.auth.v1.auth_pb2 import Principal
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.common import server
from services.common.config import Settings
from services.common.principal import ADMIN, to_metadata
from services.jobs.app import build

from .fakes import FakeRuns

ALICE = to_metadata(Principal(tenant_id="t-alice", project_id="default", subject_id="u1", subject_name="alice",
                              scopes=[ADMIN]))
BOB = to_metadata(Principal(tenant_id="t-bob", project_id="default", subject_id="u2", scopes=[ADMIN]))


@pytest.fixture
def runs() -> FakeRuns:
    return FakeRuns()


@pytest.fixture
async def jobs(database_url: str, runs: FakeRuns):
    settings = Settings(service="jobs", listen_addr="", database_url=database_url)
    running = await server.start(await build(settings, runs=runs, ticking=False), "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield jobs_pb2_grpc.JobServiceStub(channel)
    await channel.close()
    await running.stop(0)


def new_job(**fields) -> jobs_pb2.Job:
    base = dict(project_id="default", name="Nightly", slug="nightly", endpoint_url="https://example.test/hook")
    return jobs_pb2.Job(**{**base, **fields})


async def test_create_applies_the_documented_defaults(jobs) -> None:
    job = await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=ALICE)
    assert job.id and job.version == 1 and job.version_id
    assert (job.max_attempts, job.timeout_secs, job.enabled, job.version_policy) == (3, 300, True, "pin")
    assert job.created_by == "alice"


async def test_invalid_jobs_are_refused(jobs) -> None:
    for bad in (new_job(slug=""), new_job(endpoint_url=""), new_job(cron="* * *"), new_job(slug="Bad Slug"),
                new_job(timezone="Mars/Olympus"), new_job(max_attempts=0)):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=bad), metadata=ALICE)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_slugs_are_unique_per_project(jobs) -> None:
    await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=ALICE)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=ALICE)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job(project_id="other")), metadata=ALICE)
    await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=BOB)  # another tenant


async def test_every_update_is_a_new_immutable_version(jobs) -> None:
    job = await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=ALICE)
    updated = await jobs.UpdateJob(jobs_pb2.UpdateJobRequest(
        job_id=job.id, job=jobs_pb2.Job(name="Nightly v2", enabled=False), update_mask={"paths": ["name", "enabled"]},
    ), metadata=ALICE)
    assert (updated.version, updated.name, updated.enabled, updated.slug) == (2, "Nightly v2", False, "nightly")
    versions = (await jobs.ListJobVersions(jobs_pb2.ListJobVersionsRequest(job_id=job.id), metadata=ALICE)).versions
    assert [(v.version, v.name) for v in versions] == [(1, "Nightly"), (2, "Nightly v2")]
    first = await jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(job_id=job.id, version_id=versions[0].id),
                                     metadata=ALICE)
    assert first.snapshot.name == "Nightly" and first.snapshot.enabled


async def test_another_tenants_job_is_answered_as_missing(jobs) -> None:
    job = await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=ALICE)
    for call in (
        jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=BOB),
        jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=BOB),
        jobs.GetJob(jobs_pb2.GetJobRequest(job_id="no-such-job"), metadata=ALICE),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert not (await jobs.ListJobs(jobs_pb2.ListJobsRequest(project_id="default"), metadata=BOB)).jobs
    assert (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=ALICE)).name == "Nightly"


async def test_calls_without_a_principal_are_refused(jobs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await jobs.ListJobs(jobs_pb2.ListJobsRequest(project_id="default"))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_delete_removes_the_job(jobs) -> None:
    job = await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=ALICE)
    await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=ALICE)
    listed = await jobs.ListJobs(jobs_pb2.ListJobsRequest(project_id="default"), metadata=ALICE)
    assert not listed.jobs


async def test_a_version_is_found_by_its_id_alone_while_its_job_exists(jobs) -> None:
    job = await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=ALICE)
    await jobs.UpdateJob(jobs_pb2.UpdateJobRequest(job_id=job.id, job=jobs_pb2.Job(name="Nightly v2"),
                                                   update_mask={"paths": ["name"]}), metadata=ALICE)
    first = await jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(version_id=job.version_id), metadata=ALICE)
    assert (first.job_id, first.version, first.snapshot.name) == (job.id, 1, "Nightly")
    snapshot = await jobs.GetJobVersionSnapshot(jobs_pb2.GetJobVersionRequest(version_id=job.version_id),
                                                metadata=ALICE)
    assert snapshot.snapshot == first.snapshot
    await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=ALICE)
    for call in (jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(version_id=job.version_id), metadata=ALICE),
                 jobs.GetJobVersionSnapshot(jobs_pb2.GetJobVersionRequest(version_id=job.version_id), metadata=ALICE),
                 jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(version_id=""), metadata=ALICE)):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    theirs = await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job()), metadata=BOB)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(version_id=theirs.version_id), metadata=ALICE)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
