"""Surface C's job rules in the jobs service over real gRPC: batches, clone, filters, validation,
delete with active runs, dependencies (SQLite and PostgreSQL)."""

from __future__ import annotations

import grpc
import pytest

from jobline.jobs.v1 import jobs_pb2

from .test_jobs_service import ALICE, BOB, jobs, new_job, runs  # noqa: F401 - fixtures


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code()


async def create(jobs, metadata=ALICE, **fields) -> jobs_pb2.Job:
    return await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=new_job(**fields)), metadata=metadata)


async def listed(jobs, metadata=ALICE, **query) -> list[jobs_pb2.Job]:
    return list((await jobs.ListJobs(jobs_pb2.ListJobsRequest(project_id="default", **query),
                                     metadata=metadata)).jobs)


# -- batch create ---------------------------------------------------------------------------


async def test_batch_create_makes_every_job(jobs) -> None:
    reply = await jobs.BatchCreateJobs(jobs_pb2.BatchCreateJobsRequest(
        jobs=[new_job(slug="a", name="A"), new_job(slug="b", name="B", max_attempts=5)]), metadata=ALICE)
    assert [(j.slug, j.version, j.max_attempts, j.enabled) for j in reply.jobs] == [("a", 1, 3, True),
                                                                                    ("b", 1, 5, True)]
    assert all(j.id and j.version_id for j in reply.jobs)
    assert {j.slug for j in await listed(jobs)} == {"a", "b"}


@pytest.mark.parametrize("bad, code", [
    (new_job(slug="b", cron="not a cron"), grpc.StatusCode.INVALID_ARGUMENT),
    (new_job(slug="a"), grpc.StatusCode.ALREADY_EXISTS),  # twice in the batch
    (new_job(slug="taken"), grpc.StatusCode.ALREADY_EXISTS),  # already stored
])
async def test_batch_create_is_all_or_nothing(jobs, bad, code) -> None:
    await create(jobs, slug="taken")
    assert await code_of(jobs.BatchCreateJobs(jobs_pb2.BatchCreateJobsRequest(jobs=[new_job(slug="a"), bad]),
                                              metadata=ALICE)) == code
    assert [j.slug for j in await listed(jobs)] == ["taken"]


async def test_an_empty_batch_is_refused(jobs) -> None:
    assert await code_of(jobs.BatchCreateJobs(jobs_pb2.BatchCreateJobsRequest(), metadata=ALICE)) \
        == grpc.StatusCode.INVALID_ARGUMENT


# -- batch enable / disable -----------------------------------------------------------------


async def test_batch_disable_and_enable_make_new_versions_of_the_jobs_that_change(jobs) -> None:
    a, b = await create(jobs, slug="a"), await create(jobs, slug="b", enabled=False)
    reply = await jobs.BatchDisableJobs(jobs_pb2.BatchSetJobsEnabledRequest(job_ids=[a.id, b.id]), metadata=ALICE)
    assert (reply.updated, list(reply.job_ids)) == (1, [a.id])
    got = await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=a.id), metadata=ALICE)
    assert (got.enabled, got.version) == (False, 2)
    reply = await jobs.BatchEnableJobs(jobs_pb2.BatchSetJobsEnabledRequest(job_ids=[a.id, b.id]), metadata=ALICE)
    assert reply.updated == 2
    assert {(j.slug, j.enabled, j.version) for j in await listed(jobs)} == {("a", True, 3), ("b", True, 2)}


async def test_batch_enable_with_an_unknown_or_foreign_job_changes_nothing(jobs) -> None:
    a = await create(jobs, slug="a", enabled=False)
    foreign = await create(jobs, metadata=BOB, slug="a", enabled=False)
    for ids in ([a.id, "no-such-job"], [a.id, foreign.id]):
        assert await code_of(jobs.BatchEnableJobs(jobs_pb2.BatchSetJobsEnabledRequest(job_ids=ids),
                                                  metadata=ALICE)) == grpc.StatusCode.NOT_FOUND
    assert not (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=a.id), metadata=ALICE)).enabled
    assert await code_of(jobs.BatchEnableJobs(jobs_pb2.BatchSetJobsEnabledRequest(), metadata=ALICE)) \
        == grpc.StatusCode.INVALID_ARGUMENT


# -- clone ----------------------------------------------------------------------------------


async def test_clone_copies_the_definition_as_a_new_job(jobs) -> None:
    source = await create(jobs, tags={"team": "qa"}, cron="0 * * * *", max_attempts=7)
    await jobs.UpdateJob(jobs_pb2.UpdateJobRequest(job_id=source.id, job=jobs_pb2.Job(description="v2"),
                                                   update_mask={"paths": ["description"]}), metadata=ALICE)
    first = await jobs.CloneJob(jobs_pb2.CloneJobRequest(job_id=source.id), metadata=ALICE)
    assert (first.name, first.slug, first.version, first.description) == ("Nightly (copy)", "nightly-copy", 1, "v2")
    assert (dict(first.tags), first.cron, first.max_attempts) == ({"team": "qa"}, "0 * * * *", 7)
    assert first.id != source.id and first.version_id != source.version_id
    second = await jobs.CloneJob(jobs_pb2.CloneJobRequest(job_id=source.id), metadata=ALICE)
    assert second.slug == "nightly-copy-2"
    named = await jobs.CloneJob(jobs_pb2.CloneJobRequest(job_id=source.id, name="Weekly", slug="weekly"),
                                metadata=ALICE)
    assert (named.name, named.slug) == ("Weekly", "weekly")


async def test_clone_refuses_a_taken_or_bad_slug_and_a_foreign_job(jobs) -> None:
    source = await create(jobs)
    assert await code_of(jobs.CloneJob(jobs_pb2.CloneJobRequest(job_id=source.id, slug="nightly"),
                                       metadata=ALICE)) == grpc.StatusCode.ALREADY_EXISTS
    assert await code_of(jobs.CloneJob(jobs_pb2.CloneJobRequest(job_id=source.id, slug="Bad Slug"),
                                       metadata=ALICE)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(jobs.CloneJob(jobs_pb2.CloneJobRequest(job_id=source.id), metadata=BOB)) \
        == grpc.StatusCode.NOT_FOUND


# -- list filters ---------------------------------------------------------------------------


async def test_list_filters_by_tag_and_exact_name(jobs) -> None:
    await create(jobs, slug="a", name="Alpha", tags={"team": "qa", "env": "prod"})
    await create(jobs, slug="b", name="Beta", tags={"team": "ops"})
    await create(jobs, slug="c", name="Alpha ", project_id="other")
    assert {j.slug for j in await listed(jobs, tag_key="team")} == {"a", "b"}
    assert [j.slug for j in await listed(jobs, tag_key="team", tag_value="ops")] == ["b"]
    assert [j.slug for j in await listed(jobs, tag_key="env")] == ["a"]
    assert [j.slug for j in await listed(jobs, name="Alpha")] == ["a"]
    assert await listed(jobs, name="alpha") == []
    assert await listed(jobs, metadata=BOB, name="Alpha") == []


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"cron": "61 * * * *"}, {"cron": "*/5 * * * * *"}, {"cron": "@daily"}, {"cron": "0 0 30 2 mon-"},
    {"execution_window_cron": "* * * *"}, {"execution_window_cron": "0 25 * * *"},
    {"timezone": "Europe/Nowhere"}, {"version_policy": "major"}, {"tags": {"": "x"}},
    {"tags": {f"k{i}": "v" for i in range(51)}}, {"tags": {"k": "v" * 257}}, {"slug": "-lead"},
])
async def test_invalid_fields_are_refused_with_a_clear_message(jobs, fields) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await create(jobs, **fields)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert next(iter(fields)).split("_")[0] in error.value.details()


async def test_valid_cron_timezone_and_policy_are_kept(jobs) -> None:
    job = await create(jobs, cron="30 9 * * mon-fri", execution_window_cron="* 8-18 * * *",
                       timezone="Europe/Paris", version_policy="latest")
    assert (job.cron, job.timezone, job.version_policy) == ("30 9 * * mon-fri", "Europe/Paris", "latest")


async def test_an_update_to_a_taken_slug_conflicts(jobs) -> None:
    await create(jobs, slug="a")
    b = await create(jobs, slug="b")
    assert await code_of(jobs.UpdateJob(jobs_pb2.UpdateJobRequest(
        job_id=b.id, job=jobs_pb2.Job(slug="a"), update_mask={"paths": ["slug"]}), metadata=ALICE)) \
        == grpc.StatusCode.ALREADY_EXISTS


# -- delete ---------------------------------------------------------------------------------


async def test_delete_with_active_runs_conflicts_and_asks_as_the_caller(jobs, runs) -> None:
    job = await create(jobs)
    runs.active[job.id] = 2
    assert await code_of(jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=ALICE)) \
        == grpc.StatusCode.ABORTED
    principal, job_id = runs.count_calls[-1]
    assert (principal.tenant_id, principal.subject_name, job_id) == ("t-alice", "alice", job.id)
    runs.active[job.id] = 0
    await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=ALICE)
    assert await code_of(jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=ALICE)) \
        == grpc.StatusCode.NOT_FOUND


# -- dependencies ---------------------------------------------------------------------------


async def add(jobs, job_id: str, depends_on: str, condition: str = "", metadata=ALICE) -> jobs_pb2.JobDependency:
    return await jobs.CreateJobDependency(jobs_pb2.CreateJobDependencyRequest(
        job_id=job_id, depends_on_job_id=depends_on, condition=condition), metadata=metadata)


async def deps(jobs, job_id: str) -> list[jobs_pb2.JobDependency]:
    reply = await jobs.ListJobDependencies(jobs_pb2.ListJobDependenciesRequest(job_id=job_id), metadata=ALICE)
    return list(reply.dependencies)


async def test_dependencies_are_created_listed_and_deleted(jobs) -> None:
    a, b, c = await create(jobs, slug="a"), await create(jobs, slug="b"), await create(jobs, slug="c")
    on_b = await add(jobs, a.id, b.id)
    on_c = await add(jobs, a.id, c.id, "on_completion")
    assert (on_b.job_id, on_b.depends_on_job_id, on_b.condition) == (a.id, b.id, "on_success")
    assert on_b.id and on_b.created_at.seconds
    assert [(d.depends_on_job_id, d.condition) for d in await deps(jobs, a.id)] == [(b.id, "on_success"),
                                                                                     (c.id, "on_completion")]
    assert await deps(jobs, b.id) == []
    await jobs.DeleteJobDependency(jobs_pb2.DeleteJobDependencyRequest(job_id=a.id, dep_id=on_b.id), metadata=ALICE)
    assert [d.id for d in await deps(jobs, a.id)] == [on_c.id]
    assert await code_of(jobs.DeleteJobDependency(jobs_pb2.DeleteJobDependencyRequest(job_id=a.id, dep_id=on_b.id),
                                                  metadata=ALICE)) == grpc.StatusCode.NOT_FOUND
    assert await code_of(jobs.DeleteJobDependency(jobs_pb2.DeleteJobDependencyRequest(job_id=b.id, dep_id=on_c.id),
                                                  metadata=ALICE)) == grpc.StatusCode.NOT_FOUND


async def test_self_dependencies_and_cycles_are_refused(jobs) -> None:
    a, b, c = await create(jobs, slug="a"), await create(jobs, slug="b"), await create(jobs, slug="c")
    await add(jobs, a.id, b.id)
    await add(jobs, b.id, c.id)
    for job_id, depends_on in ((a.id, a.id), (c.id, a.id), (b.id, a.id)):
        assert await code_of(add(jobs, job_id, depends_on)) == grpc.StatusCode.INVALID_ARGUMENT
    await add(jobs, a.id, c.id)  # a diamond is no cycle
    assert await code_of(add(jobs, a.id, b.id)) == grpc.StatusCode.ALREADY_EXISTS


async def test_dependency_targets_must_exist_in_the_tenant(jobs) -> None:
    a = await create(jobs, slug="a")
    foreign = await create(jobs, metadata=BOB, slug="x")
    assert await code_of(add(jobs, a.id, "no-such-job")) == grpc.StatusCode.NOT_FOUND
    assert await code_of(add(jobs, a.id, foreign.id)) == grpc.StatusCode.NOT_FOUND
    assert await code_of(add(jobs, foreign.id, a.id)) == grpc.StatusCode.NOT_FOUND
    assert await code_of(add(jobs, a.id, "")) == grpc.StatusCode.INVALID_ARGUMENT
    b = await create(jobs, slug="b")
    assert await code_of(add(jobs, a.id, b.id, "always")) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(jobs.ListJobDependencies(jobs_pb2.ListJobDependenciesRequest(job_id=a.id),
                                                  metadata=BOB)) == grpc.StatusCode.NOT_FOUND


async def test_deleting_a_job_drops_the_dependencies_on_it(jobs) -> None:
    a, b = await create(jobs, slug="a"), await create(jobs, slug="b")
    await add(jobs, a.id, b.id, "on_failure")
    await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=b.id), metadata=ALICE)
    assert await deps(jobs, a.id) == []
